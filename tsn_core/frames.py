"""How tsn-prep turns a video's pictures into stored frames, for every reader of videos to repeat:
the decoders tried, in order, and the stored frame size (``tsn_prep.video`` decodes whole videos,
``tsn_train.video_frames`` the sampled frames of one)."""
from __future__ import annotations

import functools
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np


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


def resized(frame: np.ndarray, size: Optional[tuple[int, int]], short_side: Optional[int]) -> np.ndarray:
    """``frame`` at its stored size (``target_size``), resized as extract-frames resizes
    (OpenCV, bilinear); the frame itself when it already has that size."""
    out = target_size(frame.shape[1::-1], size, short_side)
    return frame if frame.shape[1::-1] == out else cv2.resize(frame, out, interpolation=cv2.INTER_LINEAR)


# Decoders in the order they are tried: OpenCV's FFmpeg first (fast, and what the reference tools
# use), PyAV's FFmpeg for what it cannot open or decodes nothing of. Which codecs a wheel's FFmpeg
# decodes changes between releases, so the order is a setting (``--decoders``, $TSN_DECODERS).
DECODERS = ("opencv", "pyav")
# Decoders used only when named: torchcodec (``pip install 'tsn[torchcodec]'``; its wheel needs the
# system's FFmpeg libraries, 4 to 7). It numbers frames by their times, so it takes only
# containers that store them (``TIMED_CONTAINERS``): in an AVI with packed B-frames it gave frame
# 1's picture as frame 2 (docs/training.md, "Frames or videos").
OPTIONAL_DECODERS = ("torchcodec",)
DECODERS_ENV = "TSN_DECODERS"
# Containers that store each frame's presentation time (FFmpeg's names; AVI does not, FFmpeg
# makes its times up)
TIMED_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm"})


def parse_decoders(value: str | Sequence[str]) -> tuple[str, ...]:
    """'pyav', 'pyav,opencv' or a sequence of names -> the decoders to try, in that order;
    ValueError naming what is wrong."""
    parts = value.split(",") if isinstance(value, str) else value
    names = tuple(dict.fromkeys(n.strip().lower() for n in parts if n.strip()))
    known = DECODERS + OPTIONAL_DECODERS
    if not names or any(n not in known for n in names):
        raise ValueError(f"decoders must be one or more of {', '.join(known)} separated by commas, "
                         f"got {value if isinstance(value, str) else ','.join(value)!r}")
    return names


def torchcodec_decoder(path, threads: int):
    """torchcodec's CPU ``VideoDecoder`` of ``path`` (frames ``(N, H, W, 3)`` RGB, numbered by an
    exact scan of the file), or ValueError saying why it is not used for this file."""
    import av

    try:
        with av.open(str(path)) as container:
            timed = bool(TIMED_CONTAINERS & set(container.format.name.split(",")))
    except Exception:  # PyAV's FFmpeg errors: nothing FFmpeg can open
        raise ValueError("not a readable video (FFmpeg cannot open it)") from None
    if not timed:
        raise ValueError("torchcodec is used for MP4, MOV, MKV and WebM files only (it numbers "
                         "frames by their times, which this container does not store)")
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError:
        raise ValueError("torchcodec is not installed (pip install 'tsn[torchcodec]')") from None
    except Exception as exc:  # its core library loads the system's FFmpeg (OSError, RuntimeError)
        raise ValueError(f"torchcodec cannot load FFmpeg's libraries (install FFmpeg 4-7): "
                         f"{str(exc).splitlines()[0]}") from None
    try:
        return VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=threads, seek_mode="exact")
    except Exception as exc:
        raise ValueError(f"torchcodec cannot open it ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def bgr(frame) -> np.ndarray:
    """A PyAV video frame as BGR pixels, converted in the calling thread only. From PyAV 17 a
    conversion runs on a pool of swscale threads by default, and a process forked while such a
    pool exists (a DataLoader worker, a decoding worker) hangs for ever when it frees the pool:
    found as a loader worker stuck in ``avpriv_slicethread_free`` under ``to_ndarray``. One thread
    converts the same pixels."""
    return frame.to_ndarray(format="bgr24", **_one_thread())


def demuxed(container, stream) -> Iterator:
    """PyAV's ``container.demux(stream)``, closed whenever this iterator is (or is collected).
    PyAV 18's demuxer frees its packet buffer only when closed or run to its end: dropped
    unfinished, as ``container.decode`` drops its own, it keeps about 160 bytes of native memory
    for good (glibc's mallinfo2), so a loader worker reading the sampled frames of 100k videos
    crept up by megabytes an epoch (docs/performance.md)."""
    packets = container.demux(stream)
    try:
        yield from packets
    finally:
        packets.close()


def decoded(container, stream) -> Iterator:
    """The frames of ``stream`` as ``container.decode(stream)`` gives them, demuxed by ``demuxed``."""
    for packet in demuxed(container, stream):
        yield from packet.decode()  # the empty packets at the end flush the decoder


@functools.cache
def _one_thread() -> dict:
    import av  # imported where a frame is converted; PyAV before 17 had one thread, no argument

    return {"threads": 1} if int(str(av.__version__).split(".")[0]) >= 17 else {}
