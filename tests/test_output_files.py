"""tsn-train's own files: a damaged score file or checkpoint is one line naming it (never a
traceback, never PyTorch's advice about weights_only), and every output is checked for
writability before the work that makes it starts."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TRAIN, VIDEOS, cli_subprocess, train_cli, unprivileged
from tsn_train import checkpoint
from tsn_train.config import FitConfig
from tsn_train.outputs import PROBE_PREFIX, OutputError, writable_file, writable_folder
from tsn_train.scores import Scores
from tsn_train.transforms import NORMS

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def one_error(r, message: str) -> None:
    """``r`` failed with exit 1 and printed exactly ``Error: message`` (one line) and nothing else."""
    assert r.exit_code == 1, r.output
    assert r.stderr == f"Error: {message}\n", r.output
    assert r.stdout == ""
    assert "Traceback" not in r.output and "weights_only" not in r.output


def score_file(path: Path) -> Path:
    Scores(["a", "b", "c"], np.array([0, 1, 2]), np.eye(3, dtype=np.float32) * 2, ["x", "y", "z"],
           {"source": "t"}).save(path)
    return path


def truncated(src: Path, dest: Path) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[:len(data) // 2])
    return dest


def random_bytes(path: Path) -> Path:
    # a first byte that is neither a zip's "P" nor a pickle's 0x80, then random bytes
    path.write_bytes(b"\x01" + os.urandom(4095))
    return path


def small_checkpoint(path: Path) -> Path:
    """A real tsn-train checkpoint file (a tiny model state; only the format matters here)."""
    cfg = FitConfig(modality="rgb", store="s", train_list="t", out="o", arch="resnet18")
    checkpoint.save(checkpoint.Checkpoint(
        model={"w": torch.arange(1000.0)}, config=cfg, classes=["a", "b"],
        preprocessing=checkpoint.Preprocessing("rgb", 64, 73, NORMS["imagenet"]),
        extraction={}, epoch=1), path)
    return path


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file where an output's folder would have to be."""
    f = tmp_path / "afile"
    f.write_text("x")
    return f


# --- score files -----------------------------------------------------------------------------

def test_a_truncated_or_junk_score_file_is_one_line_in_fuse_and_evaluate(tmp_path):
    good = score_file(tmp_path / "good.npz")
    labels = tmp_path / "labels.txt"
    labels.write_text("a 0\nb 1\nc 2\n")
    half = truncated(good, tmp_path / "half.npz")
    junk = random_bytes(tmp_path / "junk.npz")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    cases = [(half, "truncated or damaged zip archive"), (junk, "not a zip archive"),
             (empty, "empty file"), (other, "no video_ids, labels, scores, classes, settings in it")]
    for bad, why in cases:
        message = f"{bad}: not a tsn-train score file ({why})"
        one_error(train_cli("fuse", good, bad, expect=None), message)
        one_error(train_cli("evaluate", bad, "--labels", labels, "--metric", "accuracy", expect=None),
                  message)
        one_error(train_cli("evaluate", bad, "--labels", labels, "--metric", "thumos14",
                            "--out", tmp_path / "ev", expect=None), message)
    assert not (tmp_path / "ev").exists()  # the writability check left nothing behind
    r = train_cli("fuse", good, good)  # the good one still reads
    assert "fused: top-1 100.00%" in r.output


# --- checkpoints and weights -----------------------------------------------------------------

def test_a_junk_or_truncated_checkpoint_is_one_line_in_every_command(tmp_path):
    junk = random_bytes(tmp_path / "junk.pt")
    cut = truncated(small_checkpoint(tmp_path / "real.pt"), tmp_path / "cut.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_text("a 0\n")
    store = tmp_path / "store"
    store.mkdir()
    expected = {  # the whole line; the truncated file's ends with PyTorch's words about the zip
        junk: f"Error: {junk}: unreadable checkpoint (not a PyTorch file: neither a zip archive nor "
              "a pickle)\n",
        empty: f"Error: {empty}: unreadable checkpoint (empty file)\n",
        cut: f"Error: {cut}: unreadable checkpoint (truncated or damaged PyTorch file: ",
    }
    for bad in (junk, cut, empty):
        commands = [
            ("test", "--checkpoint", bad, "--store", store, "--list", lst, "--workers", "0",
             "--out", tmp_path / "s.npz"),
            ("predict", "--checkpoint", bad, VIDEOS / "carphone.mp4"),
            ("stream", "--checkpoint", bad, "--threads", "1", VIDEOS / "carphone.mp4"),
            ("visualize", "--checkpoint", bad, "--out", tmp_path / "v"),
            ("export", "--checkpoint", bad, "--format", "torchscript", tmp_path / "m.ts"),
        ]
        for args in commands:
            r = train_cli(*args, expect=None)
            assert r.exit_code == 1 and r.stdout == "", (args, r.output)
            if bad == cut:
                assert r.stderr.startswith(expected[cut]), (args, r.output)
            else:
                assert r.stderr == expected[bad], (args, r.output)
            assert r.stderr.count("\n") == 1 and r.stderr.endswith(")\n"), (args, r.output)
            assert "Traceback" not in r.output and "weights_only" not in r.output, (args, r.output)
    assert not any(tmp_path.glob("s*.npz")) and not (tmp_path / "v").exists()
    assert not (tmp_path / "m.ts").exists()


def test_fit_resume_and_pretrained_name_a_junk_or_truncated_file(train_store, tmp_path):
    lst = train_store.parent / "train.txt"
    fit = ("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst, "--arch",
           "resnet18", "--workers", "0")
    run = tmp_path / "run"
    run.mkdir()
    random_bytes(run / "last.pt")
    one_error(train_cli(*fit, "--out", run, "--resume", expect=None),
              f"{run / 'last.pt'}: unreadable checkpoint (not a PyTorch file: neither a zip archive "
              "nor a pickle)")
    junk = random_bytes(tmp_path / "junk.pth")
    one_error(train_cli(*fit, "--out", tmp_path / "run2", "--pretrained", junk, expect=None),
              f"{junk}: not a PyTorch weights file (neither a zip archive nor a pickle)")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "w.pth")
    cut = truncated(tmp_path / "w.pth", tmp_path / "cut.pth")
    r = train_cli(*fit, "--out", tmp_path / "run3", "--pretrained", cut, expect=1)
    assert r.stderr.startswith(f"Error: {cut}: not a PyTorch weights file (truncated or damaged "
                               "PyTorch file: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output and "weights_only" not in r.output
    assert not (tmp_path / "run2" / "metrics.jsonl").exists()


# --- outputs are checked before the work -----------------------------------------------------

def test_the_output_check_names_the_path_and_why_and_leaves_nothing(tmp_path, blocker):
    cases = [(writable_file, blocker / "scores.npz", f"{blocker} is a file, not a folder"),
             (writable_file, blocker / "deeper" / "scores.npz", f"{blocker} is a file, not a folder"),
             (writable_folder, blocker / "run", f"{blocker} is a file, not a folder"),
             (writable_folder, blocker, "it is a file, not a folder"),
             (writable_file, tmp_path, "it is a folder")]
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    cases.append((writable_file, tmp_path / "link" / "x.npz", f"{tmp_path / 'link'} is a broken link, "
                                                            "not a folder"))
    for check, path, why in cases:
        with pytest.raises(OutputError) as info:
            check(path)
        assert str(info.value) == f"{path}: cannot write here ({why})"
    assert writable_file(tmp_path / "new" / "deep" / "scores.npz") == tmp_path / "new" / "deep" / "scores.npz"
    assert writable_folder(tmp_path / "run" / "a") == tmp_path / "run" / "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "link"]  # probes and folders gone
    (tmp_path / "kept").mkdir()
    writable_folder(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").glob(PROBE_PREFIX + "*"))


def test_a_read_only_folder_is_permission_denied(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    scores = score_file(tmp_path / "a.npz")
    ro.chmod(0o555)
    try:
        r = cli_subprocess("fuse", scores, "--out", ro / "f.npz", module=TRAIN, prefix=unprivileged())
    finally:
        ro.chmod(0o755)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == f"Error: {ro / 'f.npz'}: cannot write here (Permission denied)\n"
    assert r.stdout == "" and list(ro.iterdir()) == []


def test_test_stops_before_scoring_when_an_output_cannot_be_written(tmp_path, blocker, monkeypatch):
    import tsn_train.protocol
    scored = []
    monkeypatch.setattr(tsn_train.protocol, "run_test", lambda *a, **k: scored.append(a))
    ckpt = small_checkpoint(tmp_path / "real.pt")
    lst = tmp_path / "list.txt"
    lst.write_text("a 0\n")
    test = ("test", "--checkpoint", ckpt, "--store", tmp_path, "--list", lst, "--workers", "0")
    out = blocker / "scores.npz"
    one_error(train_cli(*test, "--out", out, expect=None),
              f"{out}: cannot write here ({blocker} is a file, not a folder)")
    # the picture and the table beside the score file are checked too
    (tmp_path / "s_confusion.png").mkdir()
    one_error(train_cli(*test, "--out", tmp_path / "s.npz", expect=None),
              f"{tmp_path / 's_confusion.png'}: cannot write here (it is a folder)")
    assert scored == [] and not (tmp_path / "s.npz").exists()


def test_fit_stops_before_the_data_and_the_first_epoch(tmp_path, blocker, monkeypatch):
    import tsn_train.fit
    loaded = []
    monkeypatch.setattr(tsn_train.fit, "load_data", lambda *a, **k: loaded.append(a))
    lst = tmp_path / "list.txt"
    lst.write_text("a 0\n")
    run = blocker / "run"
    one_error(train_cli("fit", "--modality", "rgb", "--store", tmp_path, "--train-list", lst,
                        "--out", run, expect=None),
              f"{run}: cannot write here ({blocker} is a file, not a folder)")
    assert loaded == [] and not list(tmp_path.rglob("metrics.jsonl"))


def test_fuse_evaluate_export_and_visualize_stop_before_the_work(tmp_path, blocker):
    good = score_file(tmp_path / "good.npz")
    labels = tmp_path / "labels.txt"
    labels.write_text("a 0\nb 1\nc 2\n")
    why = f"cannot write here ({blocker} is a file, not a folder)"
    out = blocker / "fused.npz"
    one_error(train_cli("fuse", good, good, "--out", out, expect=None), f"{out}: {why}")  # no accuracy lines
    out = blocker / "ev"
    one_error(train_cli("evaluate", good, "--labels", labels, "--metric", "activitynet", "--out", out,
                        expect=None), f"{out}: {why}")
    # the default folder (beside the score file) is checked too
    (tmp_path / "good-thumos14").write_text("a file where the folder would go")
    one_error(train_cli("evaluate", good, "--labels", labels, "--metric", "thumos14", expect=None),
              f"{tmp_path / 'good-thumos14'}: cannot write here (it is a file, not a folder)")
    ckpt = small_checkpoint(tmp_path / "real.pt")  # its tiny model could not be exported: not reached
    out = blocker / "m.ts"
    one_error(train_cli("export", "--checkpoint", ckpt, "--format", "torchscript", out, expect=None),
              f"{out}: {why}")
    out = blocker / "pictures"
    one_error(train_cli("visualize", "--checkpoint", ckpt, "--out", out, expect=None), f"{out}: {why}")
    out = blocker / "live.mp4"  # before the checkpoint is even loaded
    one_error(train_cli("stream", str(VIDEOS / "tree.avi"), "--checkpoint", ckpt, "--out", out,
                        expect=None), f"{out}: {why}")
