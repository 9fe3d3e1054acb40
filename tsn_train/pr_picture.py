"""``pr_curve.png`` of `tsn-train evaluate`: precision against recall of every evaluated class and
their mean, drawn with OpenCV (no plotting dependency), every line named in a legend beside the
plot, both axes titled.

Up to ``COLOURED`` classes each get a colour and a legend line with their AP; more are drawn thin
and grey under one legend line. The thick black line is the mean over the classes of their
interpolated precision (the best precision at that recall or beyond) on a common recall grid.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from tsn_core.drawing import line_height, put_text, text_box, vertical_text

from .metrics import APResult

INK = (0, 0, 0)
PAPER = (255, 255, 255)
GRID = (225, 225, 225)
GREY = (170, 170, 170)
# Tableau 10 (BGR) without its grey: distinct on white, and for most colour-blind readers
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (34, 189, 188), (207, 190, 23)]
COLOURED = len(PALETTE)
SCALE = 0.4
SWATCH = 24


def thickness(i: int, n: int) -> int:
    """Line width of the ``i``-th of ``n`` coloured classes: the first drawn widest, so a class
    whose curve another one covers (few videos make equal curves common) still shows along its
    edges."""
    return min(8, 2 + (2 if n <= 4 else 1) * (n - 1 - i))


def mean_interpolated_precision(result: APResult, grid: np.ndarray) -> np.ndarray:
    """The mean over the evaluated classes of their interpolated precision (the best precision
    at a recall of at least g) at each recall ``g`` of ``grid``; zeros when none is evaluated."""
    mean = np.zeros(len(grid))
    for c in result.evaluated:
        r, p = result.recall[c], result.precision[c]
        best = np.maximum.accumulate(p[::-1])[::-1] if len(p) else np.zeros(0)
        mean += np.array([best[r >= g].max() if (r >= g).any() else 0.0 for g in grid])
    return mean / max(len(result.evaluated), 1)


def legend_entries(result: APResult, classes: Optional[Sequence[str]]) -> list[tuple[str, tuple, int]]:
    """(text, BGR colour, line thickness) of each legend line: the mean, then each class with its
    AP (or one line for all classes when there are more than ``COLOURED``)."""
    evaluated = list(result.evaluated)
    entries = [(f"mean of the {len(evaluated)} classes (interpolated)", INK, 3)]
    if len(evaluated) > COLOURED:
        return entries + [("one class each", GREY, 1)]
    for i, c in enumerate(evaluated):
        name = classes[c] if classes is not None else f"class {c}"
        entries.append((f"{name}: AP {result.ap[c]:.3f}", PALETTE[i], thickness(i, len(evaluated))))
    return entries


def pr_picture(result: APResult, title: str = "", classes: Optional[Sequence[str]] = None,
               size: int = 480) -> np.ndarray:
    """The BGR picture: the plot (``size`` px square), its axis titles, the title with the mAP
    above, the legend at the right."""
    lh = line_height(SCALE)
    entries = legend_entries(result, classes)
    legend_w = SWATCH + 8 + max(text_box(t, SCALE)[0] for t, _, _ in entries)
    left, top, bottom = 16 + lh + 36, 16 + 2 * lh, 24 + 2 * lh
    width = left + size + 24 + legend_w + 12
    canvas = np.full((top + size + bottom, width, 3), PAPER, np.uint8)

    def xy(r: float, p: float) -> tuple[int, int]:
        return left + int(round(r * size)), top + size - int(round(p * size))

    for t in (0.25, 0.5, 0.75):  # light grid, under the curves
        cv2.line(canvas, xy(t, 0), xy(t, 1), GRID, 1)
        cv2.line(canvas, xy(0, t), xy(1, t), GRID, 1)
    evaluated = list(result.evaluated)
    for i, c in enumerate(evaluated):
        r, p = result.recall[c], result.precision[c]
        pts = np.array([xy(0, p[0] if len(p) else 0)] + [xy(a, b) for a, b in zip(r, p)], np.int32)
        coloured = len(evaluated) <= COLOURED
        cv2.polylines(canvas, [pts], False, PALETTE[i] if coloured else GREY,
                      thickness(i, len(evaluated)) if coloured else 1, cv2.LINE_AA)
    if evaluated:
        grid = np.linspace(0, 1, 101)
        pts = np.array([xy(g, m) for g, m in zip(grid, mean_interpolated_precision(result, grid))], np.int32)
        cv2.polylines(canvas, [pts], False, INK, 3, cv2.LINE_AA)
    cv2.rectangle(canvas, xy(0, 1), xy(1, 0), INK, 1)
    for t in (0, 0.25, 0.5, 0.75, 1):
        text = f"{t:g}"
        tw = text_box(text, SCALE)[0]
        put_text(canvas, text, (xy(t, 0)[0] - tw // 2, top + size + 4), SCALE, INK)
        put_text(canvas, text, (left - 6 - tw, xy(0, t)[1] - lh // 2), SCALE, INK)
    put_text(canvas, "recall", (left + size // 2 - text_box("recall", SCALE)[0] // 2, top + size + 8 + lh),
             SCALE, INK)
    axis = vertical_text("precision", SCALE, INK, PAPER)
    y = top + (size - axis.shape[0]) // 2
    canvas[y:y + axis.shape[0], 8:8 + axis.shape[1]] = axis
    put_text(canvas, f"{title}   mAP {result.mean_ap:.4f}".strip(), (left, 8), 0.45, INK)
    x0, y0 = left + size + 24, top
    for i, (text, colour, thick) in enumerate(entries):
        y = y0 + i * (lh + 8)
        cv2.line(canvas, (x0, y + lh // 2), (x0 + SWATCH, y + lh // 2), colour, thick, cv2.LINE_AA)
        put_text(canvas, text, (x0 + SWATCH + 8, y), SCALE, INK)
    return canvas


def write_pr_png(result: APResult, path, title: str = "", classes: Optional[Sequence[str]] = None,
                 size: int = 480) -> None:
    """Write :func:`pr_picture` to ``path``; OSError when it cannot be written."""
    if not cv2.imwrite(str(path), pr_picture(result, title, classes, size)):
        raise OSError(f"{path}: could not write the PR-curve picture")
