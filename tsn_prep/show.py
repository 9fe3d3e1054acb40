"""Pictures of one stored video: a contact sheet (PNG) or an animation (GIF, MP4) for `tsn-prep show`.

One row per time step i: frame i | flow i | warped flow i (flow i is between frames i and i+1), the
modalities the video lacks left out. Flow is drawn with the Middlebury colour wheel (hue =
direction, saturation = speed) on a FIXED scale: full saturation at the stored bound
(``parameters.bound``), so the same motion has the same colour in every video of a store.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from tsn_core import modalities
from tsn_core.codec import decode_image

from .quantize import dequantize
from .store import Store

SHOWN = modalities.STORED  # the column order
SHEETS = (".png", ".jpg", ".jpeg")  # one picture; JPEG for a page where a PNG would be MBs
FORMATS = (*SHEETS, ".gif", ".mp4")
SHEET_JPEG_QUALITY = 90
DEFAULT_STEPS = 8


def make_colorwheel() -> np.ndarray:
    """The Middlebury flow colour wheel, (55, 3) uint8 RGB: 55 hues, red -> yellow (15), yellow ->
    green (6), green -> cyan (4), cyan -> blue (11), blue -> magenta (13), magenta -> red (6).

    From Baker et al., "A Database and Evaluation Methodology for Optical Flow" (ICCV 2007) and
    its ``flowToColor.m``, as torchvision.utils.flow_to_image draws it (its private
    ``_make_colorwheel``, re-implemented here in NumPy, value for value).
    """
    wheel = []
    for n, start, ramp in ((15, (255, 0, 0), (0, 1, 0)), (6, (255, 255, 0), (-1, 0, 0)),
                           (4, (0, 255, 0), (0, 0, 1)), (11, (0, 255, 255), (0, -1, 0)),
                           (13, (0, 0, 255), (1, 0, 0)), (6, (255, 0, 255), (0, 0, -1))):
        for i in range(n):
            step = np.floor(255 * i / n)
            wheel.append([s + r * step for s, r in zip(start, ramp)])
    return np.array(wheel, dtype=np.uint8)


_WHEEL = make_colorwheel().astype(np.float32) / 255.0


def flow_colors(fx: np.ndarray, fy: np.ndarray, bound: float) -> np.ndarray:
    """Flow (px, any equal shapes) -> uint8 RGB, shape + (3,), on a fixed scale.

    The colour computation is torchvision.utils.flow_to_image's (the Middlebury wheel, see
    :func:`make_colorwheel`; hue from ``atan2(-fy, -fx)``, interpolated between wheel entries,
    then blended towards white), except for the radius: torchvision divides by the largest
    magnitude in the field, here it is ``|v| / bound`` clipped to 1. Zero motion is white, motion
    of ``bound`` px or more fully saturated (``+bound`` along x: the wheel's first colour, red).
    """
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    fx = np.asarray(fx, dtype=np.float32)
    fy = np.asarray(fy, dtype=np.float32)
    radius = np.minimum(np.sqrt(fx * fx + fy * fy) / np.float32(bound), 1.0)
    angle = np.arctan2(-fy, -fx) / np.float32(np.pi)
    fk = (angle + 1) / 2 * (len(_WHEEL) - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = np.where(k0 + 1 == len(_WHEEL), 0, k0 + 1)
    f = (fk - k0)[..., None]
    col = (1 - f) * _WHEEL[k0] + f * _WHEEL[k1]
    col = 1 - radius[..., None] * (1 - col)
    return np.floor(255 * col).astype(np.uint8)


class ShowError(Exception):
    """Nothing to show as asked; the message says why."""


@dataclass
class Video:
    """What of one video is shown: its stored modalities (in column order) and their counts."""

    video_id: str
    modalities: list[str]
    counts: dict[str, int]
    bounds: dict[str, float]

    @property
    def steps(self) -> int:
        """Time steps: frames if RGB is stored, else flow fields."""
        return max(self.counts.values())


def describe(store: Store, video_id: str) -> Video:
    present = [m for m in SHOWN if (video_id, m) in store.index]
    if not present:
        ids = sorted({vid for vid, _ in store.index})
        hint = f" (it holds {len(ids)} videos, e.g. {ids[0]})" if ids else " (it holds no videos)"
        raise ShowError(f"{video_id}: no such video in {store.root}{hint}")
    counts = {m: store.entry(video_id, m).meta.count for m in present}
    bounds = {m: float(store.entry(video_id, m).meta.parameters["bound"])  # recorded with all flow
              for m in present if modalities.get(m).is_flow}
    return Video(video_id, present, counts, bounds)


def pick_steps(steps: int, frames: Optional[tuple[Optional[int], Optional[int]]], every: Optional[int]) -> list[int]:
    """Indices shown: ``frames`` (A, B) is range(A, B) (B excluded, clipped to the video) taken every
    ``every``; with neither, up to 8 evenly spaced across the video (all of a short one)."""
    if frames is None and every is None:
        if steps <= DEFAULT_STEPS:
            return list(range(steps))
        return sorted({int(round(x)) for x in np.linspace(0, steps - 1, DEFAULT_STEPS)})
    a, b = frames if frames is not None else (None, None)
    picked = list(range(steps))[slice(a, b, every or 1)]
    if not picked:
        raise ShowError(f"--frames {a if a is not None else ''}:{b if b is not None else ''} selects "
                        f"nothing: the video has {steps} time steps (0..{steps - 1})")
    return picked


def _decode(data: bytes, flags: int) -> np.ndarray:
    image = decode_image(data, flags)
    if image is None:
        raise ShowError("a stored image does not decode: run `tsn-prep verify` on the store")
    return image


def cells(store: Store, video: Video, index: int) -> list[np.ndarray]:
    """The RGB (uint8, H x W x 3) cells of one row; a flow that does not exist for ``index`` (the
    last frame has none) is a black cell."""
    out, size = [], None
    for m in video.modalities:
        if index >= video.counts[m]:
            out.append(None)
            continue
        if not modalities.get(m).is_flow:
            (data,) = store.read(video.video_id, modalities.get(m).channels[0], [index])
            cell = cv2.cvtColor(_decode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        else:
            qx, qy = (_decode(store.read(video.video_id, f"{m}_{c}", [index])[0], cv2.IMREAD_GRAYSCALE)
                      for c in "xy")
            b = video.bounds[m]
            cell = flow_colors(dequantize(qx, b), dequantize(qy, b), b)
        size = size or cell.shape
        out.append(cell)
    return [np.zeros(size, np.uint8) if c is None else c for c in out]


def label(image: np.ndarray, text: str) -> None:
    """Write ``text`` into the top-left corner, white on a black outline (in place)."""
    scale = max(0.35, image.shape[0] / 240)
    org = (3, 3 + int(round(12 * scale)))
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def rows(store: Store, video: Video, indices: list[int], labels: bool = True) -> list[np.ndarray]:
    """One RGB image per shown index: its cells side by side, labelled with the index."""
    out = []
    for i in indices:
        row = np.ascontiguousarray(np.concatenate(cells(store, video, i), axis=1))
        if labels:
            label(row, str(i))
        out.append(row)
    return out


def sheet(rows_: list[np.ndarray], columns: int = 1) -> np.ndarray:
    """Rows stacked top to bottom, in ``columns`` groups side by side (filled column by column;
    an unfilled place is black)."""
    per = -(-len(rows_) // columns)
    blank = np.zeros_like(rows_[0])
    groups = [np.concatenate(rows_[c * per:(c + 1) * per] + [blank] * (per - len(rows_[c * per:(c + 1) * per])), axis=0)
              for c in range(columns)]
    return np.concatenate(groups, axis=1)


def write(path: Path, rows_: list[np.ndarray], columns: int = 1, fps: float = 4.0) -> None:
    """PNG or JPEG: the contact sheet; GIF / MP4: one animation frame per row."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ShowError(f"{path}: write {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext in SHEETS:
        if not cv2.imwrite(str(path), cv2.cvtColor(sheet(rows_, columns), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, SHEET_JPEG_QUALITY]):
            raise ShowError(f"{path}: cannot write the picture")
    elif ext == ".gif":
        from PIL import Image  # a dependency (torchvision's too); only this format needs it

        images = [Image.fromarray(r) for r in rows_]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)),
                       loop=0, optimize=False, disposal=1)
    else:
        h, w = rows_[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise ShowError(f"{path}: OpenCV cannot write MP4 (mp4v) here; write .gif or .png")
        for r in rows_:
            writer.write(cv2.cvtColor(r, cv2.COLOR_RGB2BGR))
        writer.release()
