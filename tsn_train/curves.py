"""``curves.png``: loss and accuracy per epoch, train and val, for people without TensorBoard.

Drawn with OpenCV (already a dependency), so no plotting library is needed. One loss far above
the others (a validation spike of 36 among losses near 1) would flatten every other point against
the bottom, so such outliers are clipped: the loss axis ends just above the rest, each clipped
point is drawn at the top edge as a triangle, and a note under the plot says how many and above
what.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from tsn_core.drawing import line_height, put_text, text_box, triangle

# BGR colours of the series; train solid, val the same colour thinner with dots.
COLORS = {"train": (200, 90, 20), "val": (30, 120, 230)}
PANEL = (360, 240)   # width, height of one plot area
PAD = 44
MARK = 9             # size of the triangle marking a clipped point, px
NICE = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


def nice_ceil(x: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is >= ``x`` > 0
    (an axis end a reader takes in at a glance)."""
    power = 10.0 ** np.floor(np.log10(x))
    return float(next(n for n in NICE if n * power >= x * (1 - 1e-9)) * power)


def clip_limit(values: Sequence[float]) -> Optional[float]:
    """Where the loss axis should end when a few ``values`` lie far above the rest: the nice
    number just above every value inside Tukey's far-out fence (third quartile + 3 x the
    interquartile range); None when no value is beyond it (the axis then shows them all)."""
    v = np.asarray([x for x in values if not np.isnan(x)], np.float64)
    finite = v[np.isfinite(v)]
    if not len(finite):
        return None
    q1, q3 = np.percentile(finite, [25, 75])
    fence = q3 + 3 * (q3 - q1)
    inside = finite[finite <= fence]
    if len(inside) == len(v) or not len(inside) or inside.max() <= 0:
        return None
    return nice_ceil(float(inside.max()))


def points(values: Sequence[Optional[float]], x0: int, y0: int, width: int, height: int,
           lo: float, hi: float, epochs: int) -> list[tuple[int, int]]:
    """Pixel positions of ``values`` (one per epoch from 1; None is skipped) in the box at
    ``(x0, y0)`` of ``width`` x ``height``: epoch 1..``epochs`` left to right, ``lo``..``hi``
    bottom to top."""
    span = hi - lo or 1.0
    out = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = x0 + (round(i * (width - 1) / (epochs - 1)) if epochs > 1 else width // 2)
        y = y0 + height - 1 - round((min(max(v, lo), hi) - lo) / span * (height - 1))
        out.append((x, y))
    return out


def _values(canvas: np.ndarray, xs: list[int], values: list[float], right: int, y0: int,
            colour: tuple[int, int, int]) -> None:
    """Write each clipped value right of its mark at ``xs``: on the marks' line where it covers no
    mark and no other value, else on the line below, else not at all."""
    lh = line_height(0.35, outline=True) + 1
    used: list[list[tuple[int, int]]] = [[(x - MARK // 2, x + MARK // 2) for x in xs], []]
    for x, v in zip(xs, values):
        text = f"{v:.3g}"
        tx = min(x + MARK // 2 + 2, right - 30)
        tw = text_box(text, 0.35, outline=True)[0]
        for row, spans in enumerate(used):
            if all(tx + tw < a or tx > b for a, b in spans):
                put_text(canvas, text, (tx, y0 + 2 + row * lh), 0.35, colour, outline=(255, 255, 255))
                spans.append((tx, tx + tw))
                break


def _panel(canvas: np.ndarray, x0: int, title: str, series: dict[str, list[Optional[float]]],
           lo: float, hi: float, epochs: int, fmt: str) -> None:
    w, h = PANEL
    y0 = PAD
    cv2.rectangle(canvas, (x0 - 1, y0 - 1), (x0 + w, y0 + h), (0, 0, 0), 1)
    cv2.putText(canvas, title, (x0, y0 - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for value in (lo, hi):
        y = points([value], x0, y0, w, h, lo, hi, 1)[0][1]
        cv2.putText(canvas, fmt.format(value), (x0 - PAD + 2, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"epoch 1..{epochs}", (x0 + w // 2 - 30, y0 + h + 18), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for name, values in series.items():
        pts = points(values, x0, y0, w, h, lo, hi, epochs)
        if len(pts) > 1:
            cv2.polylines(canvas, [np.array(pts, np.int32)], False, COLORS[name], 2 if name == "train" else 1,
                          cv2.LINE_AA)
        for p in pts:
            cv2.circle(canvas, p, 2, COLORS[name], -1, cv2.LINE_AA)
        above = [v if v is not None and v > hi else None for v in values]
        marked = points(above, x0, y0, w, h, lo, hi, epochs)
        for x, _ in marked:
            triangle(canvas, (x, y0 + MARK // 2 + 1), MARK, COLORS[name])
        if len(marked) <= 3:  # a few spikes: their values too, beside their marks
            _values(canvas, [x for x, _ in marked], [v for v in above if v is not None], x0 + w, y0, COLORS[name])


def write_curves(records: Sequence[dict], path: Path) -> None:
    """Draw the epoch records of ``metrics.jsonl`` (``train_loss``, ``train_acc`` and, when
    validated, ``val_loss``, ``val_acc``) as two panels, loss and accuracy, and write ``path``
    atomically."""
    epochs = max(len(records), 1)
    losses = {k: [r.get(f"{k}_loss") for r in records] for k in ("train", "val")}
    accs = {k: [r.get(f"{k}_acc") for r in records] for k in ("train", "val")}
    losses, accs = ({k: [None if x is None or np.isnan(x) else x for x in v] for k, v in d.items()
                     if any(x is not None for x in v)} for d in (losses, accs))
    every = [x for v in losses.values() for x in v if x is not None]
    limit = clip_limit(every)
    finite = [x for x in every if np.isfinite(x)]
    hi = limit if limit is not None else (max(finite) if finite else 1.0)
    w, h = PANEL
    canvas = np.full((h + 2 * PAD + 10, 2 * (w + PAD) + PAD, 3), 255, np.uint8)
    _panel(canvas, PAD, "loss", losses, 0.0, hi, epochs, "{:.2f}")
    _panel(canvas, 2 * PAD + w, "accuracy", accs, 0.0, 1.0, epochs, "{:.0%}")
    for i, name in enumerate(("train", "val")):
        cv2.putText(canvas, name, (2 * PAD + w + 10 + 60 * i, canvas.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, COLORS[name], 1, cv2.LINE_AA)
    clipped = sum(x > hi for x in every)
    if clipped:
        note = f"{clipped} loss{'es' if clipped > 1 else ''} above {hi:g} clipped, marked"
        top = canvas.shape[0] - line_height(0.4) - 4
        tw, th = put_text(canvas, note, (PAD - 4, top), 0.4, (0, 0, 0))
        triangle(canvas, (PAD - 4 + tw + MARK // 2 + 2, top + th // 2), MARK, (0, 0, 0))
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    if not cv2.imwrite(str(tmp), canvas):
        raise OSError(f"{path}: could not write the training curves")
    tmp.replace(path)
