"""Pictures of one stored video: a contact sheet (PNG) or an animation (GIF, MP4) for `tsn-prep show`.

One row per time step i: frame i | flow i | warped flow i (flow i is between frames i and i+1), the
modalities the video lacks left out. Flow is drawn with the Middlebury colour wheel (hue =
direction, saturation = speed) on a FIXED scale: full saturation at the stored bound
(``parameters.bound``), so the same motion has the same colour in every video of a store
(``flowcolor``). A title band names the columns and, when flow is drawn, a key band explains the
colours (``legend``); each picture of an animation has both too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from tsn_core import modalities
from tsn_core.codec import decode_image
from tsn_core.drawing import label

from tsn_core.flowcolor import flow_colors
from .legend import column_title, key, title_bar
from tsn_core.quantize import dequantize
from tsn_core.store import Store

SHOWN = modalities.STORED  # the column order
SHEETS = (".png", ".jpg", ".jpeg")  # one picture; JPEG for a page where a PNG would be MBs
FORMATS = (*SHEETS, ".gif", ".mp4")
SHEET_JPEG_QUALITY = 90
DEFAULT_STEPS = 8


class ShowError(Exception):
    """Nothing to show as asked; the message says why."""


@dataclass
class Video:
    """What of one video is shown: its stored modalities (in column order) and their counts."""

    video_id: str
    modalities: list[str]
    counts: dict[str, int]
    bounds: dict[str, float]
    algorithms: dict[str, Optional[str]] = field(default_factory=dict)  # flow: the recorded algorithm

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
    flows = [m for m in present if modalities.get(m).is_flow]
    parameters = {m: store.entry(video_id, m).meta.parameters for m in flows}
    bounds = {m: float(parameters[m]["bound"]) for m in flows}  # recorded with all flow
    algorithms = {m: parameters[m].get("algorithm") for m in flows}  # imported flow records none
    return Video(video_id, present, counts, bounds, algorithms)


@dataclass
class Legend:
    """The words of a picture: a title per cell column and the flow columns' ``(title, bound)``
    (none: no colour key)."""

    titles: list[str]
    bounds: list[tuple[str, float]]


def legend_of(video: Video) -> Legend:
    """The column titles and flow bounds of ``video``'s pictures."""
    titles = [column_title(m, video.algorithms.get(m)) for m in video.modalities]
    return Legend(titles, [(t, video.bounds[m]) for t, m in zip(titles, video.modalities) if m in video.bounds])


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


def rows(store: Store, video: Video, indices: list[int], labels: bool = True) -> list[np.ndarray]:
    """One RGB image per shown index: its cells side by side, labelled with the index."""
    out = []
    for i in indices:
        row = np.ascontiguousarray(np.concatenate(cells(store, video, i), axis=1))
        if labels:
            label(row, str(i))
        out.append(row)
    return out


def sheet(rows_: list[np.ndarray], columns: int = 1, words: Optional[Legend] = None) -> np.ndarray:
    """Rows stacked top to bottom, in ``columns`` groups side by side (filled column by column;
    an unfilled place is black); with ``words``, under a title band over every group and above
    the colour key (when flow is drawn)."""
    per = -(-len(rows_) // columns)
    blank = np.zeros_like(rows_[0])
    groups = [np.concatenate(rows_[c * per:(c + 1) * per] + [blank] * (per - len(rows_[c * per:(c + 1) * per])), axis=0)
              for c in range(columns)]
    body = np.concatenate(groups, axis=1)
    if words is None:
        return body
    cell_h, cell_w = rows_[0].shape[0], rows_[0].shape[1] // len(words.titles)
    parts = [np.concatenate([title_bar(words.titles, cell_w, cell_h)] * columns, axis=1), body]
    if words.bounds:
        parts.append(key(body.shape[1], words.bounds, cell_h))
    return np.concatenate(parts, axis=0)


def write(path: Path, rows_: list[np.ndarray], columns: int = 1, fps: float = 4.0,
          words: Optional[Legend] = None) -> None:
    """PNG or JPEG: the contact sheet; GIF / MP4: one animation frame per row (each with the
    title band and the key of ``words``, when given)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ShowError(f"{path}: write {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext in SHEETS:
        # the JPEG quality only for JPEG: OpenCV warns on stderr about a key its PNG writer lacks
        params = [cv2.IMWRITE_JPEG_QUALITY, SHEET_JPEG_QUALITY] if ext != ".png" else []
        if not cv2.imwrite(str(path), cv2.cvtColor(sheet(rows_, columns, words), cv2.COLOR_RGB2BGR), params):
            raise ShowError(f"{path}: cannot write the picture")
        return
    frames = [sheet([r], 1, words) for r in rows_]
    if ext == ".gif":
        from PIL import Image  # a dependency (torchvision's too); only this format needs it

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)),
                       loop=0, optimize=False, disposal=1)
    else:
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise ShowError(f"{path}: OpenCV cannot write MP4 (mp4v) here; write .gif or .png")
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
