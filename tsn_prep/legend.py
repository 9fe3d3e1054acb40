"""The words around a `tsn-prep show` picture, so that it reads without the docs: a title over
each column (frame / TV-L1 flow / warped flow) and, when flow is drawn, a key: the colour wheel
with the bound in px at its rim and one line each on hue, saturation and what a row holds.

Pure functions: text and flow bounds in, RGB uint8 bands out (``show`` stacks them).
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from tsn_core import modalities
from tsn_core.drawing import fit_scale, line_height, put_text, text_box, wrap

from tsn_core.flowcolor import flow_colors

BACKGROUND = (0, 0, 0)      # RGB; black like the sheet's blank places, so bands and sheet are one
INK = (255, 255, 255)
RIM = (128, 128, 128)
PAD = 4
# Names of the recorded flow algorithms (tsn_prep.extraction.backends.ALGORITHMS) as a title says them.
ALGORITHM_NAMES = {"tvl1": "TV-L1", "farneback": "Farneback", "dis": "DIS"}


def column_title(modality: str, algorithm: Optional[str] = None) -> str:
    """What a column of ``modality`` is called: "frame", "TV-L1 flow" (the recorded algorithm;
    plain "flow" for imported flow, which records none), "warped flow"."""
    spec = modalities.get(modality)
    if not spec.is_flow:
        return "frame"
    if spec.camera_compensated:
        return "warped flow"
    name = ALGORITHM_NAMES.get(algorithm or "")
    return f"{name} flow" if name else "flow"


def text_scale(cell_height: int) -> float:
    """Font scale of titles and key for cells ``cell_height`` px tall: readable on small cells,
    not shouting on large ones."""
    return min(0.7, max(0.4, cell_height / 400))


def _even(n: int) -> int:
    # MP4 (yuv420) needs even frame sizes; the cells are even, so the bands are too.
    return n + n % 2


def title_bar(titles: Sequence[str], cell_width: int, cell_height: int) -> np.ndarray:
    """One band naming each column, each title centred over its ``cell_width`` px column (shrunk
    to fit it)."""
    scale = text_scale(cell_height)
    height = _even(line_height(scale) + 2 * PAD)
    bar = np.full((height, cell_width * len(titles), 3), BACKGROUND, np.uint8)
    for i, title in enumerate(titles):
        s = fit_scale(title, cell_width - 2 * PAD, scale)
        w = text_box(title, s)[0]
        put_text(bar, title, (i * cell_width + max(0, (cell_width - w) // 2), (height - line_height(s)) // 2),
                 s, INK)
    return bar


def wheel(diameter: int) -> np.ndarray:
    """The key's colour wheel, ``diameter`` px, RGB on the background: each point has the colour
    of a motion from the centre to it, the rim at the bound (full colour), the centre white."""
    r = diameter / 2
    yy, xx = np.mgrid[0:diameter, 0:diameter].astype(np.float32) + 0.5 - r
    out = flow_colors(xx, yy, r)  # the bound is the radius: position = motion on the same scale
    out[xx * xx + yy * yy > r * r] = BACKGROUND
    out = np.ascontiguousarray(out)
    cv2.circle(out, (diameter // 2, diameter // 2), diameter // 2, RIM, 1, cv2.LINE_AA)
    return out


def key_lines(bounds: Sequence[tuple[str, float]]) -> list[str]:
    """The key's sentences for flow columns ``(title, bound px)``: one bound, or each column's."""
    values = {b for _, b in bounds}
    if len(values) == 1:
        full = f"{bounds[0][1]:g} px or more"
    else:
        full = ", ".join(f"{b:g} px ({title})" for title, b in bounds)
    return ["hue = direction of motion (wheel: centre to edge)",
            f"saturation = speed: white = still, full colour = {full}",
            "row i: frame i, flow from frame i to i+1"]


def key(width: int, bounds: Sequence[tuple[str, float]], cell_height: int) -> np.ndarray:
    """The colour key, one band ``width`` px wide: the wheel and, beside it, :func:`key_lines`
    wrapped to the room left."""
    scale = text_scale(cell_height)
    lh = line_height(scale) + 2
    diameter = _even(int(3.5 * lh))
    x0 = 2 * PAD + diameter + 2 * PAD
    indent = text_box("  ", scale)[0]  # a sentence's wrapped lines indented: where one begins shows
    lines = [(indent * (j > 0), part) for sentence in key_lines(bounds)
             for j, part in enumerate(wrap(sentence, width - x0 - PAD - indent, scale))]
    height = _even(max(diameter, len(lines) * lh) + 2 * PAD)
    band = np.full((height, width, 3), BACKGROUND, np.uint8)
    y = (height - diameter) // 2
    room = max(0, min(diameter, width - 2 * PAD))  # a sheet narrower than the wheel crops it
    band[y:y + diameter, 2 * PAD:2 * PAD + room] = wheel(diameter)[:, :room]
    top = (height - len(lines) * lh) // 2
    for i, (dx, line) in enumerate(lines):
        put_text(band, line, (x0 + dx, top + i * lh), scale, INK)
    return band
