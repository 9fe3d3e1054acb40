"""``tsn-train stream``: TSN's real-time pair (RGB + RGB difference, no optical flow) on a live
source: a video file, a camera, or a network stream.

A decoder thread reads the source into a :class:`Ring` holding the last ``window`` seconds of
frames (resized as the training store's frames were). The scorer (the calling thread) takes an
update every ``every`` seconds of source time: K snippets spread over the window (segment centres,
centre crop), each stream scoring its K snippets in one forward pass through the same
:class:`~tsn_train.export.Deployable` that ``tsn-train export`` writes out, the streams' softmax
probabilities fused by weight.

It never falls behind: a live source (or a file played at its frame rate, the default) does not
wait for the scorer, so when scoring is slower than the source the scorer takes the latest window
and counts the update points it passed over (:func:`plan_update`). ``realtime=False`` reads a file
in lockstep instead: the decoder stops at each update point until it is scored, so every update
happens, at exactly the frame it is due (offline analysis, and deterministic tests).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np
import torch

from tsn_core import modalities
from tsn_prep.extraction.params import ExtractParams
from tsn_prep.video import DECODERS, VideoError, VideoReader, target_size

from .export import Deployable
from .predict import Stream
from .sampling import center_starts, sample_indices
from .scores import ranked
from .transforms import EvalCrops

STREAMABLE = tuple(name for name, m in modalities.MODALITIES.items() if not m.is_flow)  # no optical flow
EPS = 1e-9


# --- pure parts: when to update, which frames ---------------------------------------------------

def plan_update(next_k: int, newest: float, every: float) -> tuple[int, int]:
    """Update points are ``k * every`` seconds of source time, ``k = 1, 2, ...``; ``next_k`` is the
    first not yet handled and ``newest`` the source time of the newest frame. Returns the point to
    score now (the latest one the frames have reached) and how many earlier points it skips;
    ``(0, 0)`` when the frames have not reached ``next_k``."""
    reached = math.floor(newest / every + EPS)
    if reached < next_k:
        return 0, 0
    return reached, reached - next_k


def window_snippets(frames: list[np.ndarray], length: int, segments: int,
                    crop: EvalCrops) -> np.ndarray:
    """``(1, K, L, S, S, C)`` uint8: K snippets of ``length`` frames at the centres of K equal
    parts of ``frames`` (the test protocol's sampling), rescaled and centre-cropped by ``crop``."""
    idx = sample_indices(center_starts(len(frames), length, segments), length, len(frames))
    picked = np.stack([frames[i] for snippet in idx for i in snippet])
    out = crop(picked)  # (1, K*L, S, S, C)
    return out.reshape(1, segments, length, *out.shape[2:])


def top_classes(probs: np.ndarray, classes: list[str], n: int) -> list[dict]:
    return [{"class": c, "probability": round(p, 6)} for c, p in ranked(probs, classes, n)]


# --- the frames: a decoder thread filling a ring --------------------------------------------------

@dataclass
class Frame:
    index: int
    time: float               # source seconds: index / fps for a file, since the first frame live
    source_wh: tuple          # (width, height) as decoded
    images: dict              # {stored (width, height): BGR frame resized to it}
    arrived: float            # time.monotonic() when it entered the ring


class Ring:
    """The last ``seconds`` of frames, shared by the decoder (``push``) and the scorer."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.frames: deque[Frame] = deque()
        self.cond = threading.Condition()
        self.done = False
        self.error: Optional[str] = None
        self.decoded = 0
        self.next_due = math.inf  # the scorer's next update time (lockstep reading waits on it)

    def push(self, frame: Frame) -> None:
        with self.cond:
            self.frames.append(frame)
            while self.frames[0].time <= frame.time - self.seconds + EPS:
                self.frames.popleft()  # the window is (newest - seconds, newest]
            self.decoded += 1
            self.cond.notify_all()

    def finish(self, error: Optional[str] = None) -> None:
        with self.cond:
            self.done, self.error = True, error
            self.cond.notify_all()

    def wait_for(self, t: float) -> Optional[Frame]:
        """Block until a frame at or after source time ``t`` is in (returns the newest frame) or
        the source has ended (returns the newest frame, or None if there is none)."""
        with self.cond:
            self.cond.wait_for(lambda: self.done or (self.frames and self.frames[-1].time >= t - EPS))
            return self.frames[-1] if self.frames else None

    def latest(self) -> list[Frame]:
        """The window ending at the newest frame: frames in ``(newest - seconds, newest]``."""
        with self.cond:
            return list(self.frames)

    def set_next_due(self, t: float) -> None:
        with self.cond:
            self.next_due = t
            self.cond.notify_all()


@dataclass
class Source:
    """An opened source: its first frame, the frames after it, and its frame rate (0: unknown)."""

    first: np.ndarray
    rest: Iterator[np.ndarray]
    fps: float
    is_file: bool

    def close(self) -> None:
        self.rest.close()  # releases the capture or container


def _capture_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame
    finally:
        cap.release()


def open_source(source: str, decoders: Sequence[str] = DECODERS) -> Source:
    """A camera index ("0") or a URL through OpenCV; a file through ``VideoReader`` with
    ``decoders`` (OpenCV, then PyAV for what OpenCV cannot decode), frames at their decoded size. Raises ValueError naming
    the source when it cannot be opened or gives no frame."""
    if source.isdigit() or "://" in source:
        cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not cap.isOpened():
            what = "camera" if source.isdigit() else "stream"
            raise ValueError(f"{source}: OpenCV cannot open this {what}")
        frames, fps, is_file = _capture_frames(cap), float(cap.get(cv2.CAP_PROP_FPS) or 0), False
    else:
        reader = VideoReader(Path(source), decoders=decoders)
        frames, is_file = reader.frames(), True
    try:
        first = next(frames)
    except StopIteration:
        raise ValueError(f"{source}: no frames could be decoded") from None
    except VideoError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if is_file:
        fps = reader.info.fps if reader.info else 0.0
    return Source(first, frames, fps if 0 < fps < 1000 else 0.0, is_file)


class Decoder(threading.Thread):
    """Reads ``source`` into ``ring``: each frame resized to every stored size in ``sizes`` (rules
    of the source size), and written to ``writer`` with the latest result drawn on it
    (``label()``) when there is one."""

    def __init__(self, source: Source, ring: Ring, sizes: list[Callable], fps: float,
                 realtime: bool, writer=None, label: Callable[[], list] = list):
        super().__init__(daemon=True, name="tsn-stream-decoder")
        self.source, self.ring, self.sizes, self.fps = source, ring, sizes, fps
        self.paced = source.is_file and realtime       # a file played at its frame rate
        self.lockstep = source.is_file and not realtime
        self.live = not source.is_file
        self.writer, self.label = writer, label
        self.stop = threading.Event()

    def read(self) -> Iterator[np.ndarray]:
        yield self.source.first
        yield from self.source.rest

    def run(self) -> None:
        error = None
        try:
            start = None
            for index, frame in enumerate(self.read()):
                if self.stop.is_set():
                    break
                now = time.monotonic()
                start = now if start is None else start
                t = (now - start) if self.live else index / self.fps
                if self.paced and start + t > now:
                    time.sleep(start + t - now)
                h, w = frame.shape[:2]
                images = {}
                for size_of in self.sizes:
                    wh = size_of((w, h))
                    if wh not in images:
                        images[wh] = frame if wh == (w, h) else cv2.resize(
                            frame, wh, interpolation=cv2.INTER_LINEAR)
                self.ring.push(Frame(index, t, (w, h), images, time.monotonic()))
                if self.writer is not None:
                    self.writer.write(annotate(frame, self.label()))
                if self.lockstep:  # hold here until the scorer has taken this update point
                    with self.ring.cond:
                        self.ring.cond.wait_for(
                            lambda: self.stop.is_set() or t < self.ring.next_due - EPS)
        except Exception as exc:  # noqa: BLE001  reported by the scorer, with the source named
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.source.close()
            self.ring.finish(error)


def annotate(frame: np.ndarray, top: list[dict]) -> np.ndarray:
    """A copy of ``frame`` with ``top`` (class, probability) written on a dark band, top left."""
    out = frame.copy()
    if not top:
        return out
    scale = max(0.4, frame.shape[0] / 640)
    texts = [f"{t['class']} {t['probability']:.2f}" for t in top]
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for t in texts]
    line = max(h for _, h in sizes) + int(10 * scale)
    w = min(frame.shape[1], max(w for w, _ in sizes) + 12)
    h = min(frame.shape[0], line * len(texts) + 8)
    out[:h, :w] = (out[:h, :w] * 0.35).astype(np.uint8)  # darken so white text reads on any scene
    for i, text in enumerate(texts):
        cv2.putText(out, text, (6, 4 + line * (i + 1) - int(4 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def stored_size_rule(stream: Stream) -> Callable[[tuple[int, int]], tuple[int, int]]:
    """Source (width, height) -> the frame size the stream's training store was extracted at."""
    cfg = ExtractParams.from_parameters(stream.checkpoint.extraction, stream.checkpoint.modality)
    return lambda wh: target_size(wh, cfg.size, cfg.short_side)


# --- the scorer -----------------------------------------------------------------------------------

@dataclass
class Scorer:
    """Fused probabilities of a window: each stream scores its K snippets in one batch."""

    streams: list[Stream]
    segments: Optional[int] = None   # K for every stream; None: each stream's training segments
    device: torch.device = torch.device("cpu")
    models: list[Deployable] = field(init=False)

    def __post_init__(self) -> None:
        for s in self.streams:
            if s.checkpoint.modality not in STREAMABLE:
                raise ValueError(f"a {s.checkpoint.modality} stream needs optical flow; stream "
                                 f"runs {' and '.join(STREAMABLE)} streams (the real-time pair)")
            cfg = s.checkpoint.config
            k = self.segments or cfg.segments
            if cfg.consensus == "weighted" and k != cfg.segments:
                raise ValueError(f"a weighted-consensus stream scores exactly its {cfg.segments} "
                                 f"training segments; --segments {k} cannot be used with it")
            if cfg.consensus == "topk" and k < cfg.topk:
                raise ValueError(f"a top-{cfg.topk} consensus stream needs at least {cfg.topk} "
                                 f"segments; got --segments {k}")
        self.shapes = [(modalities.get(s.checkpoint.modality).snippet_length,
                        self.segments or s.checkpoint.config.segments) for s in self.streams]
        self.models = [Deployable(s.model, s.checkpoint.preprocessing) for s in self.streams]
        self.crops = [EvalCrops(s.checkpoint.preprocessing.input_size,
                                s.checkpoint.preprocessing.scale_size, 1, False) for s in self.streams]
        self.sizes = [stored_size_rule(s) for s in self.streams]

    @torch.inference_mode()
    def __call__(self, window: list[Frame]) -> np.ndarray:
        fused, total = 0.0, 0.0
        for s, model, crop, size_of, (length, k) in zip(self.streams, self.models, self.crops,
                                                        self.sizes, self.shapes):
            frames = [f.images[size_of(f.source_wh)] for f in window]
            x = torch.from_numpy(window_snippets(frames, length, k, crop)).to(self.device)
            with torch.autocast(self.device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None):
                scores = model(x).float()
            fused = fused + s.weight * torch.softmax(scores, dim=1)[0].cpu().numpy()
            total += s.weight
        return fused / total


@dataclass
class Summary:
    updates: int = 0
    skipped: int = 0
    frames: int = 0
    latencies: list = field(default_factory=list)
    source_seconds: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False

    def to_dict(self) -> dict:
        lat = np.array(self.latencies) if self.latencies else np.zeros(1)
        return {"updates": self.updates, "skipped": self.skipped, "frames": self.frames,
                "mean_latency_ms": round(float(lat.mean()) * 1000, 1),
                "max_latency_ms": round(float(lat.max()) * 1000, 1),
                "source_seconds": round(self.source_seconds, 3),
                "wall_seconds": round(self.wall_seconds, 3), "interrupted": self.interrupted}


def run_stream(source: str, scorer: Scorer, classes: list[str], window: float, every: float,
               top: int = 5, realtime: bool = True, out: Optional[str] = None,
               emit: Callable[[dict], None] = print, decoders: Sequence[str] = DECODERS) -> Summary:
    """Score ``source`` until it ends or Ctrl-C; ``emit`` receives one dict per update
    (``time``, ``frame``, ``top``, ``latency_ms``, ``skipped``). Returns the summary.
    Raises ValueError naming the source if it cannot be opened or stops with an error."""
    src = open_source(source, decoders)
    fps = src.fps or 25.0  # a source that does not say; only file times and the written video use it
    writer = None
    if out:
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                 src.first.shape[1::-1])
        if not writer.isOpened():
            src.close()
            raise ValueError(f"{out}: OpenCV cannot write a video here (check the folder and the "
                             f".mp4 / .avi extension)")
    ring = Ring(window)
    ring.set_next_due(every)
    current: list = []
    decoder = Decoder(src, ring, scorer.sizes, fps, realtime, writer, label=lambda: current[:3])
    summary = Summary()
    started = time.monotonic()
    decoder.start()
    next_k = 1
    try:
        while True:
            if ring.wait_for(next_k * every) is None:
                break
            frames = ring.latest()
            newest = frames[-1]
            k, skipped = plan_update(next_k, newest.time, every)
            if k == 0:  # the source ended before the next update point
                break
            ring.set_next_due((k + 1) * every)
            probs = scorer(frames)
            latency = time.monotonic() - newest.arrived
            current[:] = top_classes(probs, classes, top)
            summary.updates += 1
            summary.skipped += skipped
            summary.latencies.append(latency)
            emit({"time": round(newest.time, 3), "frame": newest.index, "top": list(current),
                  "latency_ms": round(latency * 1000, 1), "skipped": skipped})
            next_k = k + 1
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        decoder.stop.set()
        ring.set_next_due(math.inf)
        decoder.join()
        if writer is not None:
            writer.release()
    summary.frames = ring.decoded
    summary.source_seconds = ring.frames[-1].time if ring.frames else 0.0
    summary.wall_seconds = time.monotonic() - started
    if ring.error:
        raise ValueError(f"{source}: reading stopped: {ring.error}")
    return summary
