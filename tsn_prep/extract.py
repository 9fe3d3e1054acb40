"""One video in, encoded JPEGs out: the work a worker process does.

Pure of any store I/O: the parent process writes what comes back, so there is exactly one writer
per shard and a killed worker leaves nothing half-written.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from . import __version__
from .flow import FlowFn, algorithm_parameters, make_flow_fn, resolve_backend
from .quantize import quantize
from tsn_core import modalities
from tsn_core.codec import encode_jpeg
from tsn_core.meta import EntryMeta
from .tvl1_params import TVL1Params
from .video import DECODERS, VideoError, VideoInfo, VideoItem, VideoReader
from .warp import WarpedFlow, WarpParams

MIN_FRAMES = 2  # fewer is not a video we can use: no flow, and nothing to sample segments from


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that decides the bytes we store; recorded in each video's metadata."""

    modalities: tuple[str, ...] = ("rgb",)
    size: Optional[tuple[int, int]] = (340, 256)
    short_side: Optional[int] = None
    max_frames: Optional[int] = None
    bound: float = 20.0
    jpeg_quality: int = 95
    tvl1: TVL1Params = TVL1Params()
    warp: WarpParams = WarpParams()
    algorithm: str = "tvl1"        # see tsn_prep.flow.ALGORITHMS
    gpu: Optional[int] = None      # this video's device; run_extraction deals out ``gpus``
    gpus: tuple[int, ...] = ()
    backend: str = "auto"          # see tsn_prep.flow.resolve_backend
    batch_pairs: int = 1           # frame pairs per flow call (backends with ``batch``); 0: auto (engine)
    threads: int = 0  # OpenCV and FFmpeg decoder threads in this process; 0 leaves their defaults
    decoders: tuple[str, ...] = DECODERS  # tried in order; the one used is each video's "decoder"

    def parameters(self, modality: str) -> dict:
        p = {"size": list(self.size) if self.size else None, "short_side": self.short_side,
             "max_frames": self.max_frames, "jpeg_quality": self.jpeg_quality,
             "tsn_prep_version": __version__}
        if modalities.get(modality).is_flow:
            p.update(bound=self.bound, algorithm=self.algorithm)
            if self.algorithm == "tvl1":
                p.update(tvl1=self.tvl1.as_dict(), flow_backend=resolve_backend(self.backend, self.gpu))
            else:
                p.update({self.algorithm: algorithm_parameters(self.algorithm), "flow_backend": "opencv"})
        if modalities.get(modality).camera_compensated:
            p["warp"] = self.warp.as_dict()
        return p

    @classmethod
    def from_parameters(cls, parameters: dict, modality: str,
                        decoders: tuple[str, ...] = DECODERS) -> "ExtractConfig":
        """The settings that wrote an entry with these recorded ``parameters`` (the inverse of
        ``parameters``), to extract ``modality``'s source the same way, decoding with ``decoders``;
        what an older entry did not record takes today's default."""
        default = cls()
        return cls(
            modalities=(modalities.get(modality).source,),
            size=tuple(parameters["size"]) if parameters.get("size") else None,
            short_side=parameters.get("short_side"), bound=parameters.get("bound", default.bound),
            jpeg_quality=parameters.get("jpeg_quality", default.jpeg_quality),
            algorithm=parameters.get("algorithm", default.algorithm),
            tvl1=TVL1Params.from_dict(parameters.get("tvl1") or {}),
            warp=WarpParams(**(parameters.get("warp") or {})), decoders=tuple(decoders))


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


_FLOW_FNS: dict[tuple, FlowFn] = {}


def _flow_fn(cfg: ExtractConfig) -> FlowFn:
    """One TV-L1 object per process and setting: creating the CUDA one is not free."""
    key = (cfg.algorithm, cfg.tvl1, cfg.gpu, cfg.backend)
    if key not in _FLOW_FNS:
        _FLOW_FNS[key] = make_flow_fn(cfg.tvl1, cfg.gpu, cfg.backend, cfg.algorithm)
        if cfg.threads and getattr(_FLOW_FNS[key], "name", "") == "torch":
            import torch  # already loaded by the backend; workers share the cores like OpenCV's
            torch.set_num_threads(cfg.threads)
    return _FLOW_FNS[key]


def extract_frames(frames: Iterable[np.ndarray], cfg: ExtractConfig,
                   flow_fn: Optional[FlowFn] = None) -> tuple[dict[str, dict[str, list[bytes]]], int]:
    """Encode every requested modality from one pass over BGR frames.

    Returns ({modality: {channel: [jpeg bytes]}}, number of frames). Flow i is from frame i to i+1.
    At most ``batch_pairs`` + 1 grey frames are held at a time (2 without batching), so memory is
    bounded by the encoded output.
    """
    wanted = set(cfg.modalities)
    out = {m: {ch: [] for ch in modalities.get(m).channels} for m in cfg.modalities}
    needs_flow = bool(wanted & set(modalities.FLOW))
    frame_modalities = [m for m in cfg.modalities if not modalities.get(m).is_flow]
    if needs_flow and flow_fn is None:
        flow_fn = _flow_fn(cfg)
    plain, warped_name = modalities.PLAIN_FLOW, modalities.WARPED_FLOW
    warper = WarpedFlow(flow_fn, cfg.warp) if warped_name in wanted else None
    batched = cfg.batch_pairs > 1 and hasattr(flow_fn, "batch")
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        if batched:
            flows = flow_fn.batch(np.stack([a for a, _ in pending]), np.stack([b for _, b in pending]))
        else:
            flows = [flow_fn(a, b) for a, b in pending]
        for (a, b), flow in zip(pending, flows):
            if plain in wanted:
                for ch, jpeg in zip(modalities.get(plain).channels, encode_flow(flow, cfg.bound, cfg.jpeg_quality)):
                    out[plain][ch].append(jpeg)
            if warper is not None:
                warped, _ = warper(a, b, flow)
                for ch, jpeg in zip(modalities.get(warped_name).channels,
                                    encode_flow(warped, cfg.bound, cfg.jpeg_quality)):
                    out[warped_name][ch].append(jpeg)
        pending.clear()

    prev = None
    n = 0
    for frame in frames:
        n += 1
        for m in frame_modalities:
            out[m][modalities.get(m).channels[0]].append(encode_jpeg(frame, cfg.jpeg_quality))
        if not needs_flow:
            continue
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if prev is not None:
            pending.append((prev, grey))
            if len(pending) >= (cfg.batch_pairs if batched else 1):
                flush()
        prev = grey
    flush()
    return out, n


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


def extract_video(item: VideoItem, cfg: ExtractConfig) -> VideoResult:
    """Decode one video and encode what ``cfg`` asks for; never raises for a bad video."""
    start = time.perf_counter()
    if cfg.threads:
        cv2.setNumThreads(cfg.threads)
    result = VideoResult(item)
    reader = VideoReader(item.path, cfg.size, cfg.short_side, cfg.max_frames, cfg.threads, cfg.decoders)
    try:
        images, n = extract_frames(reader.frames(), cfg)
        check_frame_count(n)
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a batch of thousands
        result.error = error_message(exc)
        return result
    common = video_metadata(item.path, reader, n)
    for m in cfg.modalities:
        result.meta[m] = replace(common, modality=m, parameters=cfg.parameters(m))
    result.images = images
    result.pairs = (n - 1) if set(cfg.modalities) & set(modalities.FLOW) else 0
    result.seconds = time.perf_counter() - start
    return result


def usable_cores() -> int:
    """Cores this process may run on: SLURM's --cpus-per-task and taskset limit it, os.cpu_count() not."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers: int) -> int:
    """OpenCV and decoder threads per worker so that workers x threads matches the usable cores."""
    if workers <= 1:
        return 0
    return max(1, usable_cores() // workers)
