"""The sampled frames of one video file, decoded straight from it: the frames tsn-prep
extract-frames would store at those numbers, before JPEG.

Only what the snippets need is decoded. Going through the wanted frame numbers in order, the
decoder jumps to the last keyframe before the next wanted frame when one lies ahead of where it
is (fewer frames to decode than going on), and otherwise decodes forward, converting to pixels
only the frames wanted; where frames are known by their times, PyAV also leaves undecoded the
frames no other frame refers to, unless they are wanted (``_skipping``). Jumps are made only in videos with a constant frame rate and presentation
times (``Scan.uniform``), where a frame number and a time are the same thing to every decoder;
any other video is decoded forward from its start, which gives the same frames, more slowly.

The decoders are tsn-prep's, in the same order (``tsn_core.frames.DECODERS``; torchcodec when
named: ``OPTIONAL_DECODERS``): the next takes
over when one cannot open the file or gives no first frame, as in extraction, so a video's
frames come from the decoder that extraction would have used.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from tsn_core.frames import DECODERS, bgr, decoded, demuxed, resized, torchcodec_decoder
from .video_index import Scan


class FrameError(ValueError):
    """A wanted frame that could not be decoded; the message names the file and the frame."""


class _Unopened(Exception):
    """This decoder cannot open the file, or gives no first frame: the next one is tried."""


class _NotSkipping(Exception):
    """The skipping reader did not find every wanted frame by its time: read them plainly."""


OPENCV_SEEK_BACK = 16  # frames before its target OpenCV's FFmpeg reader seeks to (cap_ffmpeg_impl.hpp)

Reader = Callable[[Path, list[int], Scan, int], Iterator[tuple[int, np.ndarray]]]


def _start(scan: Scan, pos: int, target: int) -> Optional[int]:
    """Where to jump to decode frame ``target`` from ``pos`` (the frame decoding gives next): the
    position in ``scan.keyframes`` of the last keyframe at or before ``target`` when it lies
    ahead of ``pos``, else None (decode on)."""
    if not scan.uniform:
        return None
    i = bisect.bisect_right(scan.keyframes, target) - 1
    return i if i >= 0 and scan.keyframes[i] > pos else None


def _opencv(path: Path, targets: list[int], scan: Scan, threads: int) -> Iterator[tuple[int, np.ndarray]]:
    # FFmpeg's decoder threads ignore cv2.setNumThreads: set them, or every loader worker takes all cores
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_ANY, params)
    if not cap.isOpened():
        raise _Unopened("OpenCV cannot open it")
    try:
        pos = 0
        for t in targets:
            # OpenCV's jump to t decodes from the last keyframe before t - 16 (OPENCV_SEEK_BACK),
            # so it saves decoding only when that one lies ahead
            if _start(scan, pos, t - OPENCV_SEEK_BACK) is not None:
                # where OpenCV cannot jump, decode forward anew
                if cap.set(cv2.CAP_PROP_POS_FRAMES, t) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == t:
                    pos = t
                else:
                    cap.release()
                    cap, pos = cv2.VideoCapture(str(path), cv2.CAP_ANY, params), 0
            while pos < t and cap.grab():  # decoded, not converted
                pos += 1
            ok, frame = cap.read() if pos == t else (False, None)
            if not ok or frame is None:
                if pos == 0 and t == targets[0]:
                    raise _Unopened("OpenCV decodes no frame of it")
                raise FrameError(f"frame {t} of {scan.frames} could not be decoded (OpenCV)")
            pos += 1
            yield t, frame
    finally:
        cap.release()


def _pyav(path: Path, targets: list[int], scan: Scan, threads: int) -> Iterator[tuple[int, np.ndarray]]:
    import av  # imported lazily, as tsn-prep does: only needed when OpenCV fails

    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises a family of FFmpeg errors
        raise _Unopened(f"not a readable video (FFmpeg: {getattr(exc, 'strerror', None) or exc})") from None
    with container:
        if not container.streams.video:
            raise _Unopened("has no video stream")
        stream = container.streams.video[0]
        if threads:
            stream.thread_count = threads
        frames = iter(())
        pos, given = 0, False
        try:
            for t in targets:
                jump = _start(scan, pos, t)
                if jump is not None or not given:
                    start = 0 if jump is None else jump
                    if jump is not None:
                        container.seek(int(scan.keyframe_pts[jump]), stream=stream, backward=True)
                    frames = _from(decoded(container, stream), scan.keyframe_pts[start] if jump is not None else None)
                    pos, given = scan.keyframes[start], True
                frame = None
                for frame in frames:
                    if pos == t:
                        break
                    pos += 1
                else:
                    frame = None
                if frame is None:
                    if t == targets[0] and pos == 0:
                        raise _Unopened("FFmpeg decodes no frame of it")
                    raise FrameError(f"frame {t} of {scan.frames} could not be decoded (PyAV)")
                pos += 1
                yield t, bgr(frame)
        except av.error.FFmpegError as exc:
            raise FrameError(f"decoding failed before frame {targets[-1]} of {scan.frames} (FFmpeg: "
                             f"{getattr(exc, 'strerror', None) or exc})") from None


def _skipping(path: Path, targets: list[int], scan: Scan, threads: int) -> Iterator[tuple[int, np.ndarray]]:
    """PyAV, told which packets to decode: a frame nothing refers to (FFmpeg's "non-reference"
    frames, most B-frames) is not decoded unless it is wanted, which in H.264 and MPEG-4 video
    is a third to a half of the decoding saved. Frames are known by their times (``Scan.uniform``:
    frame n is at ``first + n * step``), so none need counting; jumps as ``_start`` says.
    ``_NotSkipping`` when a wanted frame does not come out by its time (the plain readers then
    read them)."""
    import av

    first, step = int(scan.keyframe_pts[0]), scan.step
    want = {first + n * step: n for n in targets}
    try:
        container = av.open(str(path))
    except Exception:
        raise _NotSkipping() from None
    with container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_count = threads
        codec = stream.codec_context
        got: dict[int, np.ndarray] = {}
        pos, pending = -1, list(targets)  # pos: the last frame decoded
        packets = None
        try:
            while pending:
                jump = _start(scan, pos + 1, pending[0])
                if jump is not None or packets is None:
                    if jump is not None:
                        container.seek(int(scan.keyframe_pts[jump]), stream=stream, backward=True)
                    packets = demuxed(container, stream)
                    pos = -1 if jump is None else scan.keyframes[jump] - 1
                target = pending[0]
                for packet in packets:
                    codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in want else "NONREF"
                    for frame in packet.decode():  # the empty packet at the end flushes the decoder
                        if frame.pts is None or (frame.pts - first) % step:
                            raise _NotSkipping()  # a frame off the grid of times: count them instead
                        pos = max(pos, (frame.pts - first) // step)
                        n = want.get(frame.pts)
                        if n is not None and n not in got:
                            got[n] = bgr(frame)
                    if target in got:
                        break
                else:
                    raise _NotSkipping()  # the end, without it
                while pending and pending[0] in got:
                    yield pending[0], got.pop(pending.pop(0))
        except av.error.FFmpegError:
            raise _NotSkipping() from None


def _from(decoded: Iterator, first_pts: Optional[int]) -> Iterator:
    """Decoded frames from the one presented at ``first_pts`` on (None: all): after a jump the
    decoder may give frames of the group before the keyframe first."""
    for frame in decoded:
        if first_pts is None or (frame.pts is not None and frame.pts >= first_pts):
            yield frame


def _torchcodec(path: Path, targets: list[int], scan: Scan, threads: int) -> Iterator[tuple[int, np.ndarray]]:
    # torchcodec seeks and decodes the frames asked for in one call, numbered by its own scan
    try:
        decoder = torchcodec_decoder(path, threads)
    except ValueError as exc:  # not installed, no FFmpeg libraries, or a file it does not take
        raise _Unopened(str(exc)) from None
    if len(decoder) != scan.frames:
        raise FrameError(f"torchcodec finds {len(decoder)} frames where the index has {scan.frames}")
    try:
        batch = decoder.get_frames_at(targets).data.numpy()
    except Exception as exc:
        raise FrameError(f"frames {targets[0]}..{targets[-1]} of {scan.frames} could not be decoded "
                         f"(torchcodec: {str(exc).splitlines()[0]})") from None
    for t, frame in zip(targets, batch):
        yield t, np.ascontiguousarray(frame[..., ::-1])  # RGB -> BGR


READERS: dict[str, Reader] = {"opencv": _opencv, "pyav": _pyav, "torchcodec": _torchcodec}


def _skips(name: str, scan: Scan) -> bool:
    """Whether decoder ``name``'s frames of this video may come from ``_skipping``: frames known
    by their times, and for OpenCV, PyAV's first frame equal to OpenCV's (checked in the index)."""
    return scan.uniform and scan.step > 0 and (name == "pyav" or (name == "opencv" and scan.pyav_is_opencv))


def read_frames(path: Path, numbers: Sequence[int], scan: Scan, size: Optional[tuple[int, int]],
                short_side: Optional[int], decoders: Sequence[str] = DECODERS,
                threads: int = 1) -> dict[int, np.ndarray]:
    """``{frame number: BGR frame}`` of ``path`` at each of ``numbers`` (each decoded once),
    resized as extract-frames does (``size`` or ``short_side``). ``decoders`` are tried in order;
    ``threads``: FFmpeg's decoder threads (0: FFmpeg's choice; 1 suits loader workers, which are
    the parallelism). FrameError names the frame that could not be decoded, or why no decoder
    could open the file."""
    targets = sorted(set(int(n) for n in numbers))
    if targets and not 0 <= targets[0] <= targets[-1] < scan.frames:
        raise FrameError(f"frames {targets[0]}..{targets[-1]} asked of {scan.frames}")
    if decoders and _skips(decoders[0], scan):
        try:
            return {t: resized(frame, size, short_side) for t, frame in _skipping(Path(path), targets, scan, threads)}
        except _NotSkipping:
            pass  # read plainly below
    reason = "no decoder given"
    for name in decoders:
        out: dict[int, np.ndarray] = {}
        try:
            for t, frame in READERS[name](Path(path), targets, scan, threads):
                out[t] = resized(frame, size, short_side)
            return out
        except _Unopened as exc:
            reason = str(exc)
    raise FrameError(reason)
