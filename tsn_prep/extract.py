"""What an extraction stores and the pieces of one video's work: the content parameters
(``ExtractParams``), the result of a video, flow encoding, frame-count and truncation checks.

Pure of any store I/O: the process that runs the engine writes what comes back, so there is exactly
one writer per shard and a killed worker leaves nothing half-written. How videos are scheduled over
processes, threads and devices is ``tsn_prep.engine``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from . import __version__
from .flow import algorithm_parameters
from tsn_core.quantize import quantize
from tsn_core import modalities
from tsn_core.codec import encode_jpeg
from tsn_core.meta import EntryMeta
from .tvl1_params import TVL1Params
from .video import VideoError, VideoInfo, VideoItem, VideoReader
from .warp import WarpParams

MIN_FRAMES = 2  # fewer is not a video we can use: no flow, and nothing to sample segments from


@dataclass(frozen=True)
class ExtractParams:
    """Everything that decides the bytes we store, recorded in each video's metadata
    (``parameters``); how a run is carried out (devices, processes, batches) is its ``RunPlan``."""

    modalities: tuple[str, ...] = ("rgb",)
    size: Optional[tuple[int, int]] = (340, 256)
    short_side: Optional[int] = None
    max_frames: Optional[int] = None
    bound: float = 20.0
    jpeg_quality: int = 95
    tvl1: TVL1Params = TVL1Params()
    warp: WarpParams = WarpParams()
    algorithm: str = "tvl1"        # see tsn_prep.flow.ALGORITHMS

    @property
    def frame_modalities(self) -> tuple[str, ...]:
        """The requested modalities stored as frames (encoded where the video is decoded)."""
        return tuple(m for m in self.modalities if not modalities.get(m).is_flow)

    @property
    def flow_modalities(self) -> tuple[str, ...]:
        """The requested modalities computed from frame pairs by a flow solver."""
        return tuple(m for m in self.modalities if modalities.get(m).is_flow)

    def parameters(self, modality: str, flow_backend: str = "opencv") -> dict:
        """What an entry of ``modality`` records; ``flow_backend``: the TV-L1 implementation
        that ran (``RunPlan.flow_backend``), recorded for flow but not compared on a re-run."""
        p = {"size": list(self.size) if self.size else None, "short_side": self.short_side,
             "max_frames": self.max_frames, "jpeg_quality": self.jpeg_quality,
             "tsn_prep_version": __version__}
        if modalities.get(modality).is_flow:
            p.update(bound=self.bound, algorithm=self.algorithm)
            if self.algorithm == "tvl1":
                p.update(tvl1=self.tvl1.as_dict(), flow_backend=flow_backend)
            else:
                p.update({self.algorithm: algorithm_parameters(self.algorithm), "flow_backend": "opencv"})
        if modalities.get(modality).camera_compensated:
            p["warp"] = self.warp.as_dict()
        return p

    @classmethod
    def from_parameters(cls, parameters: dict, modality: str) -> "ExtractParams":
        """The settings that wrote an entry with these recorded ``parameters`` (the inverse of
        ``parameters``), to extract ``modality``'s source the same way; what an older entry did
        not record takes today's default."""
        default = cls()
        return cls(
            modalities=(modalities.get(modality).source,),
            size=tuple(parameters["size"]) if parameters.get("size") else None,
            short_side=parameters.get("short_side"), bound=parameters.get("bound", default.bound),
            jpeg_quality=parameters.get("jpeg_quality", default.jpeg_quality),
            algorithm=parameters.get("algorithm", default.algorithm),
            tvl1=TVL1Params.from_dict(parameters.get("tvl1") or {}),
            warp=WarpParams(**(parameters.get("warp") or {})))


# Recorded in each entry's parameters, but not what a re-run must match: the version that wrote it
# and which TV-L1 implementation ran (they agree to within 0.01 px; docs/flow-algorithms.md).
NOT_COMPARED = ("tsn_prep_version", "flow_backend")


def parameter_differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """How an entry's recorded parameters differ from the ones asked for now, one
    ``name: stored X, asked Y`` per difference. Only names both record are compared: an entry
    written before a parameter existed is not a conflict."""
    out = []
    for name in sorted(set(stored) & set(wanted)):
        if name in NOT_COMPARED:
            continue
        a, b = stored[name], wanted[name]
        if isinstance(a, dict) and isinstance(b, dict):
            out += parameter_differences(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}: stored {json.dumps(a)}, asked {json.dumps(b)}")
    return out


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
