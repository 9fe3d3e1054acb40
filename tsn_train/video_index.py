"""What training needs to know of each video file before decoding any of it: its frame count and
where its keyframes are, from one pass over the file's packets (no decoding), cached beside the
list in a small index file so the next run reads it back in a moment.

A video's frames are its pictures in presentation order, numbered from 0 as tsn-prep stores
them; a keyframe is a frame decoding can start at. The index is a few numpy arrays (as
``tsn_train.videos.Videos`` keeps a list), so forked loader workers share its pages with the
parent for a whole epoch rather than each copying a dict of Python objects.
"""
from __future__ import annotations

import bisect
import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tsn_core.frames import TIMED_CONTAINERS, bgr, decoded, demuxed
from tsn_core.video_files import VideoItem

INDEX_VERSION = 1
SUFFIX = ".videoindex.npz"


@dataclass(frozen=True)
class Scan:
    """One video's scan: ``frames`` pictures; ``keyframes``, the frame numbers decoding can start
    at, and their presentation times ``keyframe_pts`` (in the stream's time base); ``uniform``:
    every frame is one frame duration after the last (a constant frame rate, which OpenCV's
    frame seeking assumes), each ``step`` after the one before; ``fps``, the frame rate the
    container gives; ``pyav_is_opencv``: PyAV's first frame is OpenCV's, bit for bit (then PyAV,
    which can skip the frames nothing refers to, may stand in for OpenCV: ``video_frames``). ``error`` says why a video could not be scanned (then no frames)."""
    frames: int
    keyframes: tuple[int, ...] = ()
    keyframe_pts: tuple[int, ...] = ()
    uniform: bool = False
    fps: float = 0.0  # the stream's average frame rate, where it says (M-TWI places snippets by it)
    error: str = ""
    step: int = 0     # with ``uniform``, in a container of frame times (TIMED_CONTAINERS): frame n is at first + n step
    pyav_is_opencv: bool = False  # PyAV decodes the first frame to OpenCV's pixels, bit for bit


def scan_video(path: Path) -> Scan:
    """Read ``path``'s video packets (PyAV: demuxing only, no decoding) into a ``Scan``. Packets
    are the pictures in decoding order; sorted by presentation time they are the frames."""
    import av  # the FFmpeg that tsn-prep's second decoder uses; imported where it is needed

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return Scan(0, error="has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            declared = int(stream.frames or 0)  # what the header says, where it says
            # with packed B-frames in an AVI a decoded frame's time is not its packet's
            timed = bool(TIMED_CONTAINERS & set(container.format.name.split(",")))
            pts: list[int] = []
            keys: list[int] = []
            stamped = True  # every packet has a time (else frames are numbered in packet order)
            for packet in demuxed(container, stream):
                if not packet.size:  # the flush packet at the end, or an empty (dropped) frame
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                stamped = stamped and stamp is not None
                pts.append(len(pts) if stamp is None else int(stamp))
                if packet.is_keyframe:
                    keys.append(len(pts) - 1)
    except Exception as exc:  # PyAV raises a family of FFmpeg errors
        return Scan(0, error=f"not a readable video (FFmpeg: {getattr(exc, 'strerror', None) or exc})")
    if not pts:
        return Scan(0, error="no video frames")
    rank = np.argsort(np.asarray(pts, np.int64), kind="stable")
    frame_of = np.empty(len(pts), np.int64)
    frame_of[rank] = np.arange(len(pts))
    ordered = np.asarray(pts, np.int64)[rank]
    steps = np.diff(ordered)
    uniform = stamped and bool(len(steps) == 0 or (steps[0] > 0 and np.all(steps == steps[0])))
    kf = sorted((int(frame_of[k]), pts[k]) for k in keys) or [(0, int(ordered[0]))]
    if kf[0][0] != 0:  # decoding starts at the first frame whatever it is flagged
        kf.insert(0, (0, int(ordered[0])))
    scan = Scan(len(pts), tuple(k for k, _ in kf), tuple(p for _, p in kf), uniform, fps,
                step=int(steps[0]) if uniform and timed and len(steps) else 0,
                pyav_is_opencv=_same_first_frame(path))
    if declared and declared != len(pts):
        # The header promised other than the packets found: a cut-off file, whose last packets
        # may not decode. Count what decodes after the last keyframe, as tsn-prep would store it.
        scan = replace(scan, frames=_decodable(path, scan))
        if not scan.frames:
            return Scan(0, error="no frame decodes (corrupt or truncated)")
    return scan


def _same_first_frame(path: Path) -> bool:
    """Whether PyAV's first frame of ``path`` is OpenCV's, pixel for pixel (both decoders are
    FFmpeg; each Python wheel bundles its own build)."""
    import av
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        ok, theirs = cap.read()
    finally:
        cap.release()
    if not ok or theirs is None:
        return False
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            ours = bgr(next(decoded(container, stream)))
    except Exception:  # PyAV's FFmpeg errors, or no frame
        return False
    return ours.shape == theirs.shape and bool(np.array_equal(ours, theirs))


def _decodable(path: Path, scan: Scan) -> int:
    """The frames of ``path`` that decode: those before its last keyframe (where decoding can
    start) and the ones decoding from there gives until FFmpeg fails (as tsn-prep decodes a
    cut-off video: what decoded is kept)."""
    import av

    start = len(scan.keyframes) - 1 if scan.uniform else 0
    first, count = scan.keyframes[start], 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if start:
            container.seek(int(scan.keyframe_pts[start]), stream=stream, backward=True)
        try:
            for frame in decoded(container, stream):
                if not start or (frame.pts is not None and frame.pts >= scan.keyframe_pts[start]):
                    count += 1
        except av.error.FFmpegError:
            pass
    return min(first + count, scan.frames)


class VideoIndex:
    """The scans of a list's video files, found by video id: ``find(id)`` is a row, and
    ``path(row)``, ``frames(row)`` (-1 when the video could not be scanned: ``error(row)``),
    ``keyframes(row)``, ``keyframe_pts(row)``, ``uniform(row)``, ``fps(row)``. Rows are sorted by id."""

    FIELDS = ("ids", "id_offsets", "paths", "path_offsets", "sizes", "mtimes", "counts",
              "key_offsets", "keys", "key_pts", "uniform", "fps", "steps", "pyav_is_opencv",
              "errors", "error_offsets")

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        for name in self.FIELDS:
            setattr(self, "_" + name, arrays[name])
        self._ids_view = _Strings(self._ids, self._id_offsets)

    @classmethod
    def of(cls, entries: Sequence[tuple[str, Path, int, int, Scan]]) -> "VideoIndex":
        """From ``(video id, path, size, mtime_ns, scan)`` in any order."""
        entries = sorted(entries, key=lambda e: e[0])
        ids, id_off = _pack(e[0] for e in entries)
        paths, path_off = _pack(str(e[1]) for e in entries)
        errors, err_off = _pack(e[4].error for e in entries)
        scans = [e[4] for e in entries]
        key_off = np.zeros(len(scans) + 1, np.int64)
        np.cumsum([len(s.keyframes) for s in scans], out=key_off[1:])
        return cls({
            "ids": ids, "id_offsets": id_off, "paths": paths, "path_offsets": path_off,
            "sizes": np.array([e[2] for e in entries], np.int64),
            "mtimes": np.array([e[3] for e in entries], np.int64),
            "counts": np.array([s.frames if not s.error else -1 for s in scans], np.int64),
            "key_offsets": key_off,
            "keys": np.array([k for s in scans for k in s.keyframes], np.int64),
            "key_pts": np.array([p for s in scans for p in s.keyframe_pts], np.int64),
            "uniform": np.array([s.uniform for s in scans], bool),
            "fps": np.array([s.fps for s in scans], np.float64),
            "steps": np.array([s.step for s in scans], np.int64),
            "pyav_is_opencv": np.array([s.pyav_is_opencv for s in scans], bool),
            "errors": errors, "error_offsets": err_off})

    def __len__(self) -> int:
        return len(self._counts)

    def find(self, video_id: str) -> Optional[int]:
        row = bisect.bisect_left(self._ids_view, video_id)
        return row if row < len(self) and self._ids_view[row] == video_id else None

    def video_id(self, row: int) -> str:
        return self._ids_view[row]

    def path(self, row: int) -> Path:
        return Path(_Strings(self._paths, self._path_offsets)[row])

    def frames(self, row: int) -> int:
        return int(self._counts[row])

    def error(self, row: int) -> str:
        return _Strings(self._errors, self._error_offsets)[row]

    def keyframes(self, row: int) -> np.ndarray:
        return self._keys[self._key_offsets[row]:self._key_offsets[row + 1]]

    def keyframe_pts(self, row: int) -> np.ndarray:
        return self._key_pts[self._key_offsets[row]:self._key_offsets[row + 1]]

    def uniform(self, row: int) -> bool:
        return bool(self._uniform[row])

    def fps(self, row: int) -> float:
        return float(self._fps[row])

    def stamp(self, row: int) -> tuple[int, int]:
        """The file's size and modification time (ns) when it was scanned."""
        return int(self._sizes[row]), int(self._mtimes[row])

    def scan(self, row: int) -> Scan:
        return Scan(max(self.frames(row), 0), tuple(self.keyframes(row).tolist()),
                    tuple(self.keyframe_pts(row).tolist()), self.uniform(row), self.fps(row),
                    self.error(row), int(self._steps[row]), bool(self._pyav_is_opencv[row]))

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed), so a kill never leaves half an index."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, version=np.int64(INDEX_VERSION), **self.arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> Optional["VideoIndex"]:
        """The index saved at ``path``, or None when there is none, or it is damaged or of another
        version (it is then made again: it is only a cache)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != INDEX_VERSION:
                    return None
                return cls({name: z[name] for name in cls.FIELDS})
        except (OSError, ValueError, KeyError, EOFError):
            return None
        except Exception:  # zipfile's BadZipFile and the like: a damaged cache is made again
            return None


def _pack(texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8", "surrogateescape") for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets


class _Strings(Sequence):
    """The strings packed by ``_pack``, indexed (and bisected) without unpacking them all."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8", "surrogateescape")


def index_path(list_path: Path) -> Path:
    """Where a list's video index is cached: beside it, ``train.txt.videoindex.npz``."""
    list_path = Path(list_path)
    return list_path.with_name(list_path.name + SUFFIX)


def build_index(items: Sequence[VideoItem], cache: Optional[Path] = None, threads: int = 4,
                progress: Callable[[int], None] = lambda n: None) -> VideoIndex:
    """The index of ``items``: what ``cache`` holds of a file with the same path, size and
    modification time is kept; the rest is scanned (``threads`` at a time: demuxing is mostly
    FFmpeg's reading, outside the GIL) and the cache rewritten. ``progress(n)`` hears of each
    scanned video. A cache that cannot be written is left alone (the index is still returned)."""
    old = VideoIndex.load(cache) if cache is not None and Path(cache).is_file() else None
    entries: list[tuple[str, Path, int, int, Scan]] = []
    todo: list[tuple[VideoItem, int, int]] = []
    for item in items:
        try:
            st = item.path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = -1
        row = old.find(item.id) if old is not None else None
        if row is not None and old.path(row) == item.path and old.stamp(row) == (size, mtime) and size >= 0:
            entries.append((item.id, item.path, size, mtime, old.scan(row)))
        else:
            todo.append((item, size, mtime))
    if todo:
        def one(job: tuple[VideoItem, int, int]) -> tuple[str, Path, int, int, Scan]:
            item, size, mtime = job
            scan = scan_video(item.path) if size >= 0 else Scan(0, error="cannot be read (no such file?)")
            return item.id, item.path, size, mtime, scan

        pool = ThreadPoolExecutor(max(1, threads))
        try:
            for entry in pool.map(one, todo):
                entries.append(entry)
                progress(1)
        finally:
            # interrupted: the scans not started are dropped (each running one takes milliseconds),
            # and what was scanned is kept, so the same command scans only the rest
            pool.shutdown(wait=True, cancel_futures=True)
            if cache is not None:
                _save_quietly(VideoIndex.of(entries + _kept(old, entries)), cache)
    return VideoIndex.of(entries)


def _kept(old: Optional[VideoIndex], entries: list) -> list:
    """The cached scans of videos not among ``entries`` (another list's, or a file moved away),
    kept in the cache."""
    if old is None:
        return []
    have = {e[0] for e in entries}
    return [(old.video_id(r), old.path(r), *old.stamp(r), old.scan(r))
            for r in range(len(old)) if old.video_id(r) not in have]


def _save_quietly(index: VideoIndex, cache: Path) -> None:
    try:
        index.save(cache)
    except OSError:
        pass  # a read-only list folder: the index is made again next time
