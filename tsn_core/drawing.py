"""Text and markers on OpenCV canvases, placed by their boxes: what every picture of the toolkit
(contact sheets, training curves, confusion matrices, PR curves) writes its words with.

OpenCV's ``putText`` places text by its baseline, so text put "at the top" loses its upper half;
here text is placed by the top-left corner of its whole box (outline and descenders included),
which is inside the canvas when that corner is. Hershey fonts draw ASCII only: a marker such as
the triangle of clipped points is drawn as a shape (:func:`triangle`), not as a character.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _stroke(thickness: int, outline: bool) -> int:
    return thickness + 2 if outline else thickness


def text_box(text: str, scale: float, thickness: int = 1, outline: bool = False) -> tuple[int, int, int]:
    """(width, height, baseline) in px of ``text``: ``height`` from the top of the box to the
    baseline, ``baseline`` the descent below it; the whole box is ``height + baseline`` tall."""
    stroke = _stroke(thickness, outline)
    (w, h), base = cv2.getTextSize(text, FONT, scale, stroke)
    pad = (stroke + 1) // 2  # the stroke reaches beyond the glyphs' outlines
    return w + 2 * pad, h + pad, base + pad


def line_height(scale: float, thickness: int = 1, outline: bool = False) -> int:
    """The height of one line of text (capitals and descenders) at ``scale``."""
    _, h, base = text_box("Mg", scale, thickness, outline)
    return h + base


def put_text(canvas: np.ndarray, text: str, top_left: tuple[int, int], scale: float,
             colour: tuple[int, ...], thickness: int = 1,
             outline: Optional[tuple[int, ...]] = None) -> tuple[int, int]:
    """Write ``text`` with the top-left corner of its box at ``top_left`` (in place), over an
    ``outline`` of that colour when given (readable on any background); return the box's
    (width, height)."""
    w, h, base = text_box(text, scale, thickness, outline is not None)
    pad = (_stroke(thickness, outline is not None) + 1) // 2
    org = (int(top_left[0]) + pad, int(top_left[1]) + h)
    if outline is not None:
        cv2.putText(canvas, text, org, FONT, scale, outline, thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)
    return w, h + base


def fit_scale(text: str, width: int, scale: float, smallest: float = 0.3, thickness: int = 1) -> float:
    """``scale``, or the largest smaller one (down to ``smallest``) at which ``text`` is at most
    ``width`` px wide."""
    w = text_box(text, scale, thickness)[0]
    if w <= width:
        return scale
    return max(smallest, scale * width / w)


def wrap(text: str, width: int, scale: float, thickness: int = 1) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` px wide (a single word wider than
    that stays on its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and text_box(f"{lines[-1]} {word}", scale, thickness)[0] <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def vertical_text(text: str, scale: float, colour: tuple[int, ...],
                  background: tuple[int, ...]) -> np.ndarray:
    """``text`` reading bottom to top (an axis title beside a vertical axis), as a BGR image of
    just its box on ``background``."""
    w, h, base = text_box(text, scale)
    image = np.full((h + base, w, 3), background, np.uint8)
    put_text(image, text, (0, 0), scale, colour)
    return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)


def triangle(canvas: np.ndarray, centre: tuple[int, int], size: int, colour: tuple[int, ...]) -> None:
    """A filled upward triangle ``size`` px wide centred on ``centre`` (in place): the marker of
    a value drawn at the top edge because it lies above the axis."""
    x, y = centre
    half = max(2, size // 2)
    pts = np.array([(x - half, y + half), (x + half, y + half), (x, y - half)], np.int32)
    cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)


def label(image: np.ndarray, text: str) -> None:
    """Write ``text`` into the top-left corner, white on a black outline (in place), the whole
    text inside the image."""
    put_text(image, text, (2, 2), max(0.35, image.shape[0] / 240), (255, 255, 255), outline=(0, 0, 0))
