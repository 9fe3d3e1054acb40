"""curves.png: loss and accuracy per epoch, drawn where the records say."""
import json

import cv2
import numpy as np
import pytest

from tsn_train.curves import COLORS, PAD, PANEL, points, write_curves

from .conftest import train_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_points_map_epochs_and_values_into_the_box():
    # epochs 1..3 across a 101 x 51 box at (10, 20); values 0..2 bottom to top; None skipped
    assert points([0.0, None, 2.0], 10, 20, 101, 51, 0.0, 2.0, 3) == [(10, 70), (110, 20)]
    assert points([1.0], 10, 20, 101, 51, 0.0, 2.0, 3) == [(10, 45)]
    assert points([5.0, -1.0], 0, 0, 11, 11, 0.0, 1.0, 2) == [(0, 0), (10, 10)]  # clipped
    assert points([0.5], 0, 0, 11, 11, 0.0, 1.0, 1) == [(5, 5)]  # one epoch: the middle


def test_the_drawn_accuracy_sits_where_the_records_say(tmp_path):
    records = [{"train_loss": 1.0, "train_acc": 0.25, "val_loss": 2.0, "val_acc": 0.5},
               {"train_loss": 0.5, "train_acc": 0.75, "val_loss": 1.5, "val_acc": 1.0}]
    write_curves(records, tmp_path / "c.png")
    img = cv2.imread(str(tmp_path / "c.png"))
    w, h = PANEL
    assert img.shape == (h + 2 * PAD + 10, 2 * (w + PAD) + PAD, 3)
    x0 = 2 * PAD + w  # the accuracy panel
    for name, values in (("train", [0.25, 0.75]), ("val", [0.5, 1.0])):
        for x, y in points(values, x0, PAD, w, h, 0.0, 1.0, 2):
            patch = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
            assert (np.abs(patch - COLORS[name]).sum(axis=1) < 60).any(), (name, x, y)


def test_fit_redraws_curves_every_epoch(train_store, tmp_path):
    run = tmp_path / "run"
    lst = train_store.parent / "train.txt"
    train_cli("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst, "--val-list", lst,
              "--out", run, "--arch", "resnet18", "--input-size", "64", "--workers", "0", "--accumulate",
              "1", "--batch-size", "5", "--epochs", "2", "--no-partial-bn")
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2]
    img = cv2.imread(str(run / "curves.png"))
    assert img is not None
    x0 = 2 * PAD + PANEL[0]
    last = [r for r in epochs if r["kind"] == "epoch"][-1]
    (x, y), = points([last["val_acc"]], x0 + PANEL[0] - 1, PAD, 1, PANEL[1], 0.0, 1.0, 1)
    patch = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
    assert (np.abs(patch - COLORS["val"]).sum(axis=1) < 60).any()
