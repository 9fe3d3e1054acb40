"""Checkpoints and weights files from elsewhere cannot run code: they are refused, not loaded."""
import os

import torch

from .conftest import VIDEOS, train_cli


class RunsCode:
    """Unpickling this calls os.system, which here creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_unpickler_would_run_it(tmp_path):
    """The attack is real: a plain torch.load of the same file executes the command."""
    marker = tmp_path / "ran"
    torch.save({"x": RunsCode(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_test_predict_and_resume_refuse_a_checkpoint_that_runs_code(train_store, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    # shaped like a tsn-train checkpoint, with the payload inside its config
    torch.save({"format": "tsn-train-checkpoint", "version": 2, "model": {},
                "config": {"modality": "rgb", "hook": RunsCode(marker)}}, evil)
    refused = f"{evil}: refused: it holds Python objects other than tensors and plain data"
    lst = train_store.parent / "train.txt"
    r = train_cli("test", "--checkpoint", evil, "--store", train_store, "--list", lst,
                  "--out", tmp_path / "scores", expect=1)
    assert refused in r.output and "posix.system" in r.output and "Traceback" not in r.output
    r = train_cli("predict", "--checkpoint", evil, VIDEOS / "carphone.mp4", expect=1)
    assert refused in r.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(evil.read_bytes())
    r = train_cli("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst,
                  "--out", run, "--resume", expect=1)
    assert f"{run / 'last.pt'}: refused" in r.output
    assert not marker.exists()


def test_fit_refuses_pretrained_weights_that_run_code(train_store, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(1), "hook": RunsCode(marker)}, evil)
    r = train_cli("fit", "--modality", "rgb", "--store", train_store, "--train-list",
                  train_store.parent / "train.txt", "--arch", "resnet18", "--pretrained", evil,
                  "--out", tmp_path / "run", expect=1)
    assert f"{evil}: refused: it holds Python objects other than tensors and plain data" in r.output
    assert "Traceback" not in r.output and not marker.exists()
