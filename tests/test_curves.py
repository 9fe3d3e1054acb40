"""curves.png: loss and accuracy per epoch, drawn where the records say; a loss spike clipped,
marked and said."""
import json
import os

import cv2
import numpy as np
import pytest

from tsn_train.curves import COLORS, MARK, PAD, PANEL, clip_limit, nice_ceil, points, write_curves

from .conftest import TRAIN, cli_subprocess

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
    """The real command in its own process, where OpenCV's warnings (C++, on stderr) would show."""
    run = tmp_path / "run"
    lst = train_store.parent / "train.txt"
    r = cli_subprocess("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst, "--val-list",
                       lst, "--out", run, "--arch", "resnet18", "--input-size", "64", "--workers", "0",
                       "--accumulate", "1", "--batch-size", "5", "--epochs", "2", "--no-partial-bn",
                       module=TRAIN, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "WARN" not in r.stderr, r.stderr
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2]
    img = cv2.imread(str(run / "curves.png"))
    assert img is not None
    x0 = 2 * PAD + PANEL[0]
    last = [r for r in epochs if r["kind"] == "epoch"][-1]
    (x, y), = points([last["val_acc"]], x0 + PANEL[0] - 1, PAD, 1, PANEL[1], 0.0, 1.0, 1)
    patch = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
    assert (np.abs(patch - COLORS["val"]).sum(axis=1) < 60).any()


# --- a loss spike ----------------------------------------------------------------------------------

def _records(val_losses):
    n = len(val_losses)
    return [{"train_loss": 1.5 - 1.3 * i / (n - 1), "train_acc": 0.5, "val_loss": v, "val_acc": 0.5}
            for i, v in enumerate(val_losses)]


def _series_rows(img, name, x0):
    """Rows of the loss panel holding the series' colour."""
    w, h = PANEL
    box = img[PAD:PAD + h, x0:x0 + w].astype(int)
    return np.flatnonzero((np.abs(box - COLORS[name]).sum(axis=2) < 40).any(axis=1))


def test_nice_numbers_and_the_clip_limit():
    assert [nice_ceil(x) for x in (0.7, 1.0, 1.31, 2.2, 36.5, 0.042)] == [0.8, 1.0, 1.5, 2.5, 40.0, 0.05]
    smooth = [1.5 - 0.1 * i for i in range(12)] + [1.4 - 0.08 * i for i in range(12)]
    assert clip_limit(smooth) is None  # nothing far out: the axis shows every loss
    assert clip_limit(smooth + [36.5]) == 1.5  # the spike out; the axis ends just above the rest
    assert clip_limit(smooth + [float("inf"), float("nan")]) == 1.5
    assert clip_limit([2.0, 2.0]) is None


def test_a_spike_keeps_the_other_points_spread_and_is_marked(tmp_path):
    val = [1.4 - 0.05 * i for i in range(12)]
    val[5] = 36.5  # the new user's validation spike
    write_curves(_records(val), tmp_path / "spike.png")
    img = cv2.imread(str(tmp_path / "spike.png"))
    w, h = PANEL
    ys = _series_rows(img, "train", PAD)
    # train loss 1.5 -> 0.2 over an axis ending at 1.5: most of the height (unclipped, 36.5 at
    # the top, it spanned 1.3 / 36.5 of it: 9 px)
    assert ys.max() - ys.min() > 0.8 * h
    (x, _), = points([None] * 5 + [36.5] + [None] * 6, PAD, PAD, w, h, 0.0, 1.5, 12)  # epoch 6
    mark = img[PAD:PAD + MARK + 2, x - MARK // 2:x + MARK // 2 + 1].astype(int)
    assert (np.abs(mark - COLORS["val"]).sum(axis=2) < 40).sum() > MARK  # a filled triangle there
    note = img[PAD + h + 26:, PAD - 4:PAD + w]
    assert (note < 100).all(axis=2).sum() > 100  # "1 loss above 1.5 clipped, marked" and its mark
    write_curves(_records([1.4 - 0.05 * i for i in range(12)]), tmp_path / "plain.png")
    plain = cv2.imread(str(tmp_path / "plain.png"))
    assert (plain[PAD + h + 26:, PAD - 4:PAD + w] == 255).all()  # nothing clipped, nothing said
