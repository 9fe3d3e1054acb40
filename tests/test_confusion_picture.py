"""The confusion-matrix picture: counts in the cells, readable on dark and light cells, a colour
bar of the row shares, class names on the axes."""
import numpy as np

from tsn_core.drawing import line_height
from tsn_train.confusion_picture import SCALE, cell_size, confusion_picture, heat, ink_on

CLASSES = ["move_left", "move_right", "move_up", "move_down"]
M = np.array([[3, 0, 0, 0], [1, 2, 0, 0], [0, 0, 3, 0], [0, 3, 0, 0]])


def _matrix_box(picture):
    """(top, left) of M's matrix: where its dark purple (share 0) begins, in cell (0, 1) for the
    top and cell (2, 0) for the left (the colour bar's purple is further right)."""
    ys, xs = np.nonzero((picture == heat(np.zeros(1))[0]).all(axis=2))
    return ys.min(), xs.min()


def _luma(bgr):
    bgr = np.asarray(bgr, float).reshape(-1, 3)
    return 0.114 * bgr[:, 0] + 0.587 * bgr[:, 1] + 0.299 * bgr[:, 2]


def test_counts_are_drawn_in_the_cells_in_ink_that_reads():
    a, b = confusion_picture(M, CLASSES), confusion_picture(M, CLASSES, counts=False)
    assert a.shape == b.shape
    cell = cell_size(4)
    top, left = _matrix_box(b)
    changed = np.argwhere((a != b).any(axis=2))
    inside = ((changed[:, 0] >= top) & (changed[:, 0] < top + 4 * cell)
              & (changed[:, 1] >= left) & (changed[:, 1] < left + 4 * cell))
    assert inside.sum() > 16 * 10  # sixteen numbers in the cells; elsewhere only the first line,
    assert (changed[~inside, 0] < 4 + line_height(SCALE) + 1).all()  # which says what they are
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # every cell holds a number
        box = (slice(top + i * cell, top + (i + 1) * cell), slice(left + j * cell, left + (j + 1) * cell))
        diff = (a[box] != b[box]).any(axis=2)
        assert diff.sum() > 10, (i, j)
        # contrast in brightness: black on the yellow of 3 of 3, white on the purple of 0 of 3
        ink, background = _luma(a[box][diff]).mean(), _luma(b[box][:1, :1])[0]
        assert abs(ink - background) > 60, (i, j, ink, background)
    assert ink_on(heat(np.ones(1))[0]) == (0, 0, 0) and ink_on(heat(np.zeros(1))[0]) == (255, 255, 255)


def test_colour_bar_runs_from_all_to_none_of_the_row():
    picture = confusion_picture(M, CLASSES)
    cell = cell_size(4)
    top, left = _matrix_box(confusion_picture(M, CLASSES, counts=False))
    right = left + 4 * cell
    # a column right of the matrix whose colours, top to bottom, are the ramp of shares 1 -> 0
    ramp = heat(np.linspace(1, 0, 4 * cell))
    strip = picture[top:top + 4 * cell, right:]
    hits = [x for x in range(strip.shape[1]) if (np.abs(strip[:, x].astype(int) - ramp).sum(axis=1) <= 3).all()]
    assert len(hits) >= 10  # the bar, about 14 px wide
    # tick labels and caption right of the bar: ink on white
    beyond = picture[top:top + 4 * cell, right + hits[-1] + 2:]
    assert (beyond < 100).all(axis=2).sum() > 100


def test_class_names_on_both_axes_and_none_for_many_classes():
    picture = confusion_picture(M, CLASSES)
    cell = cell_size(4)
    top, left = _matrix_box(confusion_picture(M, CLASSES, counts=False))
    assert (picture[top:top + 4 * cell, :left] < 100).all(axis=2).sum() > 200   # names down the left
    assert (picture[:top, left:left + 4 * cell] < 100).all(axis=2).sum() > 200   # names along the top
    many = np.eye(101, dtype=int) * 5
    big = confusion_picture(many, [f"class{i}" for i in range(101)])
    assert big.shape[0] < 101 * cell_size(101) + 80  # no room made for names that would overlap
