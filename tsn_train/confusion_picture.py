"""The confusion-matrix picture of `tsn-train test` (``*_confusion.png``), drawn with OpenCV.

True class down, predicted class across, named on both axes (up to 40 classes); each cell's
colour is its share of the true class's videos (a row sums to 100%), read off the colour bar at the
right; each cell holds its number of videos where the number fits the cell.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from tsn_core.drawing import fit_scale, line_height, put_text, text_box, vertical_text

INK = (0, 0, 0)
PAPER = (255, 255, 255)
MAX_NAMED = 40      # more classes than this: no names on the axes (they would overlap)
BAR = 14            # colour bar width, px
GAP = 12
SCALE = 0.35


def cell_size(classes: int) -> int:
    """Side of one cell, px: the matrix at most about 800 px, a cell 4..48 px."""
    return max(4, min(48, 800 // classes))


def heat(shares: np.ndarray) -> np.ndarray:
    """Shares 0..1 -> BGR uint8 colours, shape + (3,) (viridis: dark purple 0, yellow 1)."""
    levels = np.round(np.clip(shares, 0, 1) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_VIRIDIS).reshape(*levels.shape, 3)


def ink_on(colour: np.ndarray) -> tuple[int, int, int]:
    """Black on a light BGR ``colour``, white on a dark one (by luma)."""
    b, g, r = (int(v) for v in colour)
    return INK if 0.299 * r + 0.587 * g + 0.114 * b > 128 else PAPER


def _counts(canvas: np.ndarray, matrix: np.ndarray, colours: np.ndarray, x0: int, y0: int, cell: int) -> bool:
    """Write each cell's number, in ink that reads on its colour; False (nothing written) when the
    cells are too small for the largest number."""
    widest = str(int(matrix.max()))
    scale = fit_scale(widest, cell - 4, 0.5)
    w = text_box(widest, scale)[0]
    lh = line_height(scale)
    if w > cell - 2 or lh > cell - 2:
        return False
    for (i, j), n in np.ndenumerate(matrix):
        text = str(int(n))
        tw = text_box(text, scale)[0]
        put_text(canvas, text, (x0 + j * cell + (cell - tw) // 2, y0 + i * cell + (cell - lh) // 2), scale,
                 ink_on(colours[i, j]))
    return True


def confusion_picture(matrix: np.ndarray, classes: Sequence[str], counts: bool = True) -> np.ndarray:
    """The BGR picture of ``matrix[true, predicted]`` (video counts); ``counts=False`` leaves the
    numbers out of the cells."""
    m = np.asarray(matrix, dtype=np.int64)
    c = len(classes)
    cell = cell_size(c)
    shares = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    colours = heat(shares)
    named = c <= MAX_NAMED
    lh = line_height(SCALE)
    names = max(text_box(n, SCALE)[0] for n in classes) + 8 if named else 0
    left = lh + 8 + names          # axis title (vertical), then the class names
    top = 2 * lh + 12 + names      # picture title and axis title, then the (rotated) class names
    bar_x = left + c * cell + GAP
    ticks = max(text_box(t, SCALE)[0] for t in ("0%", "50%", "100%"))
    caption = vertical_text("share of the true class's videos", SCALE, INK, PAPER)
    width = bar_x + BAR + 4 + ticks + 6 + caption.shape[1] + 6
    height = max(top + c * cell + lh // 2, top + caption.shape[0]) + 8  # room for the 0% tick
    canvas = np.full((height, width, 3), PAPER, np.uint8)
    canvas[top:top + c * cell, left:left + c * cell] = cv2.resize(colours, (c * cell, c * cell),
                                                                  interpolation=cv2.INTER_NEAREST)
    numbered = counts and _counts(canvas, m, colours, left, top, cell)
    put_text(canvas, f"{int(m.sum())} videos" + ("; a cell's number: videos of that true class given that "
                                                "prediction" if numbered else ""), (4, 4), SCALE, INK)
    put_text(canvas, "predicted class", (left, lh + 8), SCALE, INK)
    title = vertical_text("true class", SCALE, INK, PAPER)
    canvas[top:top + title.shape[0], 2:2 + title.shape[1]] = title[:max(0, height - top)]
    if named:
        for i, name in enumerate(classes):
            put_text(canvas, name, (left - names, top + i * cell + (cell - lh) // 2), SCALE, INK)
            label = vertical_text(name, SCALE, INK, PAPER)
            x = left + i * cell + (cell - label.shape[1]) // 2
            canvas[top - 4 - label.shape[0]:top - 4, x:x + label.shape[1]] = label
    # the colour bar: 100% at the top, 0% at the bottom, ticks at both ends and the middle
    ramp = heat(np.linspace(1, 0, c * cell))[:, None]
    canvas[top:top + c * cell, bar_x:bar_x + BAR] = np.repeat(ramp, BAR, axis=1)
    cv2.rectangle(canvas, (bar_x - 1, top - 1), (bar_x + BAR, top + c * cell), INK, 1)
    for share, text in ((1.0, "100%"), (0.5, "50%"), (0.0, "0%")):
        y = top + int(round((1 - share) * (c * cell - 1)))
        put_text(canvas, text, (bar_x + BAR + 4, max(y - lh // 2, 0)), SCALE, INK)
    x = bar_x + BAR + 4 + ticks + 6
    canvas[top:top + caption.shape[0], x:x + caption.shape[1]] = caption
    return canvas

