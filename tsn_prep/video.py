"""Decoding videos into resized frames (finding and naming them: ``tsn_core.video_files``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from tsn_core.frames import DECODERS, DECODERS_ENV, parse_decoders, parse_size, target_size  # noqa: F401 (documented here)
from tsn_core.frames import bgr, decoded, torchcodec_decoder



class VideoError(Exception):
    """A video that cannot be used; the message names the problem, the caller adds the file."""




@dataclass
class VideoInfo:
    fps: float
    source_size: tuple[int, int]
    declared_frames: int  # what the container says (or OpenCV's estimate: duration x frame rate)
    backend: str
    duration: Optional[float] = None   # seconds the container says the video lasts, if it says
    last_time: Optional[float] = None  # when the last decoded frame starts, seconds


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
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            declared = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
            self.info = VideoInfo(
                fps=fps,
                source_size=(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))),
                declared_frames=declared,
                backend="opencv",
                # OpenCV's frame count is the container's, or its duration x frame rate: either
                # way over the frame rate it gives back the duration
                duration=declared / fps if fps > 0 and declared else None,
            )
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                self.info.last_time = msec / 1000.0 if msec and msec > 0 else self.info.last_time
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
            fps, declared = (float(rate) if rate else 0.0), int(stream.frames or 0)
            # The longest the container says: FFmpeg shortens a truncated file's stream duration
            # to what its index still covers, while the header's frame count stays.
            durations = [float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0,
                         container.duration / 1e6 if container.duration else 0,
                         declared / fps if fps > 0 else 0]
            self.info = VideoInfo(
                fps=fps,
                source_size=(stream.codec_context.width, stream.codec_context.height),
                declared_frames=declared,
                backend="pyav",
                duration=max(durations) or None,
            )
            start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
            try:
                for frame in decoded(container, stream):
                    if frame.time is not None:
                        self.info.last_time = float(frame.time) - start
                    yield bgr(frame)
            except av.error.FFmpegError:
                return  # a truncated tail: keep what decoded, the frame count shows the loss

    def _torchcodec_frames(self) -> Iterator[np.ndarray]:
        try:
            decoder = torchcodec_decoder(self.path, self.threads)
        except ValueError as exc:
            raise VideoError(str(exc)) from None
        meta = decoder.metadata
        self.info = VideoInfo(fps=float(meta.average_fps or 0.0), source_size=(meta.width or 0, meta.height or 0),
                              declared_frames=int(meta.num_frames or 0), backend="torchcodec",
                              duration=float(meta.duration_seconds) if meta.duration_seconds else None)
        for i in range(len(decoder)):
            try:
                frame = decoder.get_frame_at(i)
            except Exception:  # a truncated tail: keep what decoded, the frame count shows the loss
                return
            self.info.last_time = float(frame.pts_seconds)
            yield np.ascontiguousarray(frame.data.numpy()[..., ::-1])  # RGB -> BGR

    def frames(self) -> Iterator[np.ndarray]:
        """Yield resized BGR uint8 frames; raise VideoError if no decoder gives any.

        A decoder that fails before its first frame hands over to the next one; once frames came,
        the rest of the file is that decoder's (mixing decoders within a video would mix their
        colour conversions).
        """
        self._check_path()
        produced = 0
        sources = {"opencv": self._opencv_frames, "pyav": self._pyav_frames, "torchcodec": self._torchcodec_frames}
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
