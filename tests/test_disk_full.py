"""A file system that fills up: one clear line, nothing half-written, and the same command
finishes the job once space is freed. Run on a real size-limited tmpfs (needs root)."""
import os
import subprocess

import pytest
import torch

from tsn_train import checkpoint

from tsn_core.store import Store

from .conftest import VIDEOS, cli, cli_subprocess, link_videos, train_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SmallFS:
    """A mounted tmpfs: ``path``, and ``grow(mb)`` to resize it in place (the 'space freed')."""

    def __init__(self, path):
        self.path = path

    def grow(self, mb):
        subprocess.run(["mount", "-o", f"remount,size={mb}m", str(self.path)], check=True)


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of 2 MB at ``tmp_path/fs``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
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


def stored(root):
    s = Store(root)
    return {(v, c, i): d for _, v, c, i, d in s.iter_images()}, {k: e.meta.count for k, e in s.index.items()}


def test_extraction_stops_with_one_line_keeps_a_valid_store_and_finishes_later(small_fs, tmp_path):
    videos = link_videos(tmp_path / "videos", {f"v{k}_{p.stem}{p.suffix}": p.name
                                               for k, p in enumerate(sorted(VIDEOS.iterdir()))})
    args = ["extract-frames", videos, None, "--max-frames", "24", "--workers", "1", "--quiet"]
    ref = tmp_path / "ref"
    cli(*[a if a is not None else ref for a in args])
    want_images, want_counts = stored(ref)
    assert len(want_counts) == 5 and sum(len(d) for d in want_images.values()) > 2 * 2**20  # > the 2 MB

    out = small_fs.path / "out"
    r = cli_subprocess(*[a if a is not None else out for a in args])
    assert r.returncode == 1 and "Traceback" not in r.stderr  # cli_subprocess: no tracker warning
    error = r.stderr.strip().splitlines()
    shard = out / "shard-00000-of-00001"
    assert error[-1].startswith(f"Error: {shard}: no space left on its file system: about ")
    assert error[-1].endswith("free; free some space and run the same command again: the videos stored so far are kept")
    needed, free = (float(error[-1].split(part)[1].split(" MB")[0]) for part in ("about ", "needed, "))
    assert needed > free  # the figure says why it stopped

    # what is there is whole: it verifies, and every stored video equals the same video of the
    # unconstrained run, byte for byte
    assert cli("verify", out, "--quiet").exit_code == 0
    got_images, got_counts = stored(out)
    assert 0 < len(got_counts) < 5
    assert got_counts == {k: want_counts[k] for k in got_counts}
    assert got_images == {k: want_images[k] for k in got_images}

    small_fs.grow(64)
    r = cli_subprocess(*[a if a is not None else out for a in args])
    assert r.returncode == 0, r.stderr
    assert f"{5 - len(got_counts)} extracted, {len(got_counts)} already complete, 0 failed" in r.stderr
    assert stored(out) == (want_images, want_counts)
    assert cli("verify", out, "--quiet").exit_code == 0
