"""pr_curve.png: every line named in the legend beside the plot, both axes titled."""
import numpy as np

from tsn_train.metrics import thumos14_map
from tsn_train.pr_picture import COLOURED, GREY, PALETTE, legend_entries, pr_picture

SIZE = 300
SCORES = np.array([[0.9, 0.05, 0.05], [0.1, 0.45, 0.45], [0.4, 0.1, 0.5], [0.3, 0.6, 0.1]])
LABELS = [(0,), (1, 2), (), (0,)]


def _frame(picture):
    """(left, top, right, bottom) of the plot's black frame: the only long black lines."""
    black = (picture < 40).all(axis=2)
    xs = np.flatnonzero(black.sum(axis=0) > 0.9 * SIZE)
    ys = np.flatnonzero(black.sum(axis=1) > 0.9 * SIZE)
    return xs.min(), ys.min(), xs.max(), ys.max()


def _has(region, colour, tol=30):
    return int((np.abs(region.astype(int) - colour).sum(axis=2) < tol).sum())


def test_every_line_is_in_the_legend_and_the_axes_are_titled():
    result = thumos14_map(SCORES, LABELS)
    picture = pr_picture(result, "thumos14: s.npz", ["left", "right", "up"], size=SIZE)
    left, top, right, bottom = _frame(picture)
    assert right - left == SIZE and bottom - top == SIZE
    plot, legend = picture[top:bottom, left:right], picture[top:bottom, right + 4:]
    entries = legend_entries(result, ["left", "right", "up"])
    assert [t for t, _, _ in entries] == ["mean of the 3 classes (interpolated)", "left: AP 0.833",
                                          "right: AP 0.500", "up: AP 0.500"]
    for text, colour, _ in entries:  # each line's colour both on the plot and in the legend
        assert _has(plot, colour, 100) > 20, text  # (an equal curve drawn over it leaves its edges)
        assert _has(legend, colour) > 20, text
    # axis titles: "recall" under the tick labels, "precision" left of them
    below = picture[bottom + 4:, left:right]
    assert (below < 100).all(axis=2).any(axis=1).sum() >= 2 * 8  # two lines of text: ticks, title
    beside = picture[top:bottom, :left - 4]
    columns_with_ink = (beside < 100).all(axis=2).any(axis=0)
    assert columns_with_ink.sum() >= 8 + 8  # the vertical title and the tick labels
    # the title line holds the mAP
    assert (picture[:top - 2] < 100).all(axis=2).sum() > 100


def test_many_classes_share_one_grey_legend_line():
    rng = np.random.default_rng(0)
    n = COLOURED + 3
    scores = rng.random((40, n))
    labels = [(i % n,) for i in range(40)]
    result = thumos14_map(scores, labels)
    entries = legend_entries(result, [f"c{i}" for i in range(n)])
    assert [(t, c) for t, c, _ in entries] == [(f"mean of the {n} classes (interpolated)", (0, 0, 0)),
                                               ("one class each", GREY)]
    picture = pr_picture(result, "", [f"c{i}" for i in range(n)], size=SIZE)
    left, top, right, bottom = _frame(picture)
    assert _has(picture[top:bottom, left:right], GREY, 10) > 100
    assert not any(_has(picture, colour, 10) for colour in PALETTE)
