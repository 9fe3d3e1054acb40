"""A file system that fills up: one clear line, nothing half-written, and the same command
finishes the job once space is freed. Run on a real size-limited tmpfs (needs root)."""
import os
import subprocess

import pytest
import torch

from tsn_train import checkpoint

from .conftest import train_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SmallFS:
    """A mounted tmpfs: ``path``, and ``grow(mb)`` to resize it in place (the 'space freed')."""

    def __init__(self, path):
        self.path = path

    def grow(self, mb):
        subprocess.run(["mount", "-o", f"remount,size={mb}m", str(self.path)], check=True)


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of 4 MB at ``tmp_path/fs``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield SmallFS(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_fit_stops_with_one_line_when_the_checkpoint_does_not_fit(train_store, small_fs):
    out = small_fs.path / "run"
    cmd = ["fit", "--modality", "rgb", "--store", train_store, "--train-list", train_store.parent / "train.txt",
           "--out", out, "--epochs", "1", "--segments", "2", "--batch-size", "5", "--arch", "resnet18",
           "--input-size", "64", "--workers", "0", "--accumulate", "1"]
    r = train_cli(*cmd, expect=1)
    error = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "Traceback" not in r.output
    assert error[0].startswith(f"Error: {out / 'last.pt'}: no space left on its file system: about ")
    # the figure is the checkpoint's real size (model + SGD momentum of a resnet18: ~90 MB)
    needed = float(error[0].split("about ")[1].split(" MB")[0])
    assert 60 < needed < 120
    assert not list(out.glob("*.pt")) and not list(out.glob(".*.tmp"))  # nothing half-written

    small_fs.grow(int(needed) + 60)
    train_cli(*cmd)
    ckpt = checkpoint.load(out / "last.pt")
    assert ckpt.epoch == 1 and all(torch.isfinite(v).all() for v in ckpt.model.values() if v.is_floating_point())
    assert abs(os.path.getsize(out / "last.pt") / 2**20 - needed) < 0.5
