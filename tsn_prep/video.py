"""Finding videos, naming them, and decoding them into resized frames."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .avi .mkv .webm .mov .m4v .mpg .mpeg .flv .wmv .3gp .ogv .ts .mts .m2ts".split()
)


class VideoError(Exception):
    """A video that cannot be used; the message names the problem, the caller adds the file."""


@dataclass(frozen=True)
class VideoItem:
    """One input video: its store id and where it is."""

    id: str
    path: Path


@dataclass
class Listing:
    """What VIDEOS expanded to: usable items plus inputs rejected before decoding."""

    items: list[VideoItem] = field(default_factory=list)
    rejected: list[tuple[VideoItem, str]] = field(default_factory=list)


def _id_for(path: Path, root: Optional[Path]) -> str:
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return rel.with_suffix("").as_posix()


def check_id(video_id: str) -> Optional[str]:
    """Why ``video_id`` cannot be a store key, or None. '|' separates key fields in the store."""
    if not video_id:
        return "empty video id"
    if "|" in video_id or "\n" in video_id:
        return f"video id {video_id!r} contains '|' or a newline, which the store reserves"
    return None


def list_videos(source: Path) -> Listing:
    """Expand VIDEOS: a directory searched recursively, or a text file with one path per line.

    Ids are paths relative to the directory without the extension; for a list file, relative to the
    list's directory when the path lies under it, else the file name without extension. Files that
    map to the same id are all rejected: picking one silently would mislabel data.
    """
    source = Path(source)
    if source.is_dir():
        root = source
        paths = sorted(
            p for p in source.rglob("*")
            if p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir()
        )
        candidates = [VideoItem(_id_for(p, root), p) for p in paths]
    elif source.is_file():
        root = source.parent.resolve()
        candidates = []
        for raw in source.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line)
            if not p.is_absolute():
                p = source.parent / p
            try:
                vid = _id_for(p.resolve(), root)
            except ValueError:
                vid = _id_for(p, None)
            candidates.append(VideoItem(vid, p))
    else:
        raise FileNotFoundError(f"{source}: no such directory or list file")

    # The same path listed twice is one video, not a duplicate id. Symlinks stay distinct videos:
    # datasets are often built from links to shared files.
    unique: dict[str, VideoItem] = {}
    for c in candidates:
        unique.setdefault(os.path.abspath(c.path), c)
    candidates = list(unique.values())
    by_id: dict[str, list[VideoItem]] = {}
    for item in candidates:
        by_id.setdefault(item.id, []).append(item)
    listing = Listing()
    for item in candidates:
        same = by_id[item.id]
        problem = check_id(item.id)
        if problem:
            listing.rejected.append((item, problem))
        elif len(same) > 1:
            names = ", ".join(str(o.path) for o in same)
            listing.rejected.append((item, f"duplicate video id {item.id!r} shared by {names}; rename all but one"))
        else:
            listing.items.append(item)
    return listing


def parse_size(text: str) -> tuple[int, int]:
    """'340x256' -> (340, 256): width then height, as the paper writes it."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 340x256, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return w, h


def target_size(src_wh: tuple[int, int], size: Optional[tuple[int, int]], short_side: Optional[int]) -> tuple[int, int]:
    """Stored (width, height): a fixed size, the short side scaled to N (aspect kept), or unchanged."""
    w, h = src_wh
    if size is not None:
        return size
    if short_side is not None:
        if w <= h:
            return short_side, max(1, round(h * short_side / w))
        return max(1, round(w * short_side / h)), short_side
    return w, h


@dataclass
class VideoInfo:
    fps: float
    source_size: tuple[int, int]
    declared_frames: int
    backend: str


# Decoders in the order they are tried: OpenCV's FFmpeg first (fast, and what the reference tools
# use), PyAV's FFmpeg for what it cannot open or decodes nothing of. Which codecs a wheel's FFmpeg
# decodes changes between releases, so the order is a setting (``--decoders``, $TSN_DECODERS).
DECODERS = ("opencv", "pyav")
DECODERS_ENV = "TSN_DECODERS"


def parse_decoders(value: str | Sequence[str]) -> tuple[str, ...]:
    """'pyav', 'pyav,opencv' or a sequence of names -> the decoders to try, in that order;
    ValueError naming what is wrong."""
    parts = value.split(",") if isinstance(value, str) else value
    names = tuple(dict.fromkeys(n.strip().lower() for n in parts if n.strip()))
    if not names or any(n not in DECODERS for n in names):
        raise ValueError(f"decoders must be one or more of {', '.join(DECODERS)} separated by commas, "
                         f"got {value if isinstance(value, str) else ','.join(value)!r}")
    return names


class VideoReader:
    """Decodes one file into BGR frames resized to the stored size.

    ``decoders`` are tried in order (default: OpenCV, then PyAV); the next one takes over when one
    cannot open the file or decodes no frame, which happens with some containers and codecs and
    with OpenCV builds lacking video I/O (the silent-empty-output trap of dense_flow).
    ``info.backend`` names the one that decoded.
    """

    def __init__(self, path: Path, size: Optional[tuple[int, int]] = None,
                 short_side: Optional[int] = None, max_frames: Optional[int] = None,
                 threads: int = 0, decoders: Sequence[str] = DECODERS):
        self.path = Path(path)
        self.threads = threads  # FFmpeg decoder threads; 0 lets FFmpeg pick (one per core)
        self.size = size
        self.short_side = short_side
        self.max_frames = max_frames
        self.decoders = parse_decoders(decoders)
        self.info: Optional[VideoInfo] = None
        self.out_size: Optional[tuple[int, int]] = None

    def _check_path(self) -> None:
        if not self.path.exists():
            raise VideoError("no such file")
        if self.path.is_dir():
            raise VideoError("is a directory, not a video file")
        if not os.access(self.path, os.R_OK):
            raise VideoError("permission denied")
        # Only a regular file's size says it is empty: a named pipe (a video streamed in) has none.
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise VideoError("empty file (0 bytes)")

    def _opencv_frames(self) -> Iterator[np.ndarray]:
        # FFmpeg's decoder threads ignore cv2.setNumThreads; cap them so workers do not oversubscribe.
        params = [cv2.CAP_PROP_N_THREADS, self.threads] if self.threads else []
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_ANY, params)
        if not cap.isOpened():
            raise VideoError("OpenCV cannot open it")
        try:
            self.info = VideoInfo(
                fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                source_size=(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))),
                declared_frames=int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0)),
                backend="opencv",
            )
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    def _pyav_frames(self) -> Iterator[np.ndarray]:
        import av  # imported lazily: only needed when OpenCV fails

        try:
            container = av.open(str(self.path))
        except Exception as exc:  # PyAV raises a family of FFmpeg errors
            reason = getattr(exc, "strerror", None) or str(exc)
            raise VideoError(f"not a readable video (FFmpeg: {reason})") from None
        with container:
            if not container.streams.video:
                raise VideoError("has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            self.info = VideoInfo(
                fps=float(rate) if rate else 0.0,
                source_size=(stream.codec_context.width, stream.codec_context.height),
                declared_frames=int(stream.frames or 0),
                backend="pyav",
            )
            try:
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="bgr24")
            except av.error.FFmpegError:
                return  # a truncated tail: keep what decoded, the frame count shows the loss

    def frames(self) -> Iterator[np.ndarray]:
        """Yield resized BGR uint8 frames; raise VideoError if no decoder gives any.

        A decoder that fails before its first frame hands over to the next one; once frames came,
        the rest of the file is that decoder's (mixing decoders within a video would mix their
        colour conversions).
        """
        self._check_path()
        produced = 0
        sources = {"opencv": self._opencv_frames, "pyav": self._pyav_frames}
        for name in self.decoders:
            reason = None  # why this decoder gave nothing, when it says
            try:
                for frame in sources[name]():
                    if frame is None or frame.ndim != 3 or frame.size == 0:
                        continue
                    if self.out_size is None:
                        h, w = frame.shape[:2]
                        if self.info is not None:
                            self.info.source_size = (w, h)
                        self.out_size = target_size((w, h), self.size, self.short_side)
                    if frame.shape[1::-1] != self.out_size:
                        frame = cv2.resize(frame, self.out_size, interpolation=cv2.INTER_LINEAR)
                    yield frame
                    produced += 1
                    if self.max_frames is not None and produced >= self.max_frames:
                        return
            except VideoError as exc:
                if produced:
                    raise
                reason = str(exc)
                continue
            if produced:
                return
        # the last decoder's own words: with the default order, FFmpeg's reason through PyAV
        raise VideoError(reason or "no frames could be decoded (corrupt, truncated, or not a video)")
