"""What one video's work gives back (``VideoResult``) and the pieces of that work: flow encoding,
the frame-count and truncation checks, a failure's words, the video-level metadata.

Pure of any store I/O: the process that runs the scheduler writes what comes back, so there is
exactly one writer per shard and a killed worker leaves nothing half-written."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from tsn_core.codec import encode_jpeg
from tsn_core.meta import EntryMeta

from tsn_core.quantize import quantize
from tsn_core.video_files import VideoItem

from ..video import VideoError, VideoInfo, VideoReader

MIN_FRAMES = 2  # fewer is not a video we can use: no flow, and nothing to sample segments from


@dataclass
class VideoResult:
    """What a worker returns: images per modality and channel, or an error."""

    item: VideoItem
    images: dict[str, dict[str, list[bytes]]] = field(default_factory=dict)
    meta: dict[str, EntryMeta] = field(default_factory=dict)
    error: Optional[str] = None
    pairs: int = 0
    seconds: float = 0.0


def encode_flow(flow: np.ndarray, bound: float, quality: int) -> tuple[bytes, bytes]:
    """A float HxWx2 flow as two one-channel JPEGs (x, y), quantised as TSN does; a uint8 one is
    taken as already quantised (a solver that quantises on its device)."""
    q = flow if flow.dtype == np.uint8 else quantize(flow, bound)
    return encode_jpeg(np.ascontiguousarray(q[..., 0]), quality), encode_jpeg(np.ascontiguousarray(q[..., 1]), quality)


def check_frame_count(n: int) -> None:
    """A VideoError unless ``n`` decoded frames are enough to use."""
    if n < MIN_FRAMES:
        raise VideoError(f"has {n} frame{'' if n == 1 else 's'}; at least {MIN_FRAMES} are needed")


def error_message(exc: BaseException) -> str:
    """A video's failure text: the VideoError's own words, OpenCV's last line, else the type."""
    if isinstance(exc, VideoError):
        return str(exc)
    if isinstance(exc, cv2.error):
        return f"OpenCV failed: {str(exc).strip().splitlines()[-1]}"
    return f"unexpected {type(exc).__name__}: {exc}"


def video_metadata(path: Path, reader: VideoReader, n: int) -> EntryMeta:
    """The video-level fields of every modality's metadata, once ``reader`` decoded ``n`` frames."""
    info = reader.info
    return EntryMeta(
        source=str(path), num_frames=n, fps=info.fps if info else 0.0,
        source_size=tuple(info.source_size) if info else None,
        declared_frames=info.declared_frames if info else 0, decoder=info.backend if info else None,
        stored_size=tuple(reader.out_size),
        warning=incomplete_warning(n, info) if reader.max_frames is None and info else None)


def incomplete_warning(n: int, info: VideoInfo) -> Optional[str]:
    """Why ``n`` decoded frames look like part of the video only, or None.

    Where the container gives a duration and frames carry timestamps, time decides: the decoded
    frames must reach the end, within two frame intervals and 2% of the duration. Frame counts
    cannot decide it: a variable-frame-rate file's count is an estimate (duration x the highest
    rate) and dropped-frame markers are counted as frames, so both would read as truncated. With
    no timestamps, fewer than 1/1.1 of the declared frames (less 2) is the sign."""
    interval = 1.0 / info.fps if info.fps > 0 else 0.0
    if info.duration and info.last_time is not None:
        reached = info.last_time + interval
        if info.duration - reached > max(2 * interval, 0.02 * info.duration):
            return (f"decoded {n} frames, up to {reached:.2f} s of the {info.duration:.2f} s the "
                    "container declares: the file looks truncated")
        return None
    if info.declared_frames > n * 1.1 + 2:
        return (f"decoded {n} of the {info.declared_frames} frames the container declares "
                "(truncated file, or dropped-frame markers)")
    return None
