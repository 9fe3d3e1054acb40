"""The decoding workers: separate processes (started with "spawn") or one thread of the run,
each decoding the videos the run sends it with ``VideoReader``. Frame modalities (rgb) are
JPEG-encoded right here, so no pixels travel; for flow the frames go to the parent in grey. Both
go in chunks of at most ``CHUNK`` frames, so memory does not grow with a video's length. A
decoding error becomes that video's ``Failed``; the worker goes on with the next. No torch here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from tsn_core.codec import encode_jpeg

from ..child import become_child, tasks
from ..video import VideoReader
from .events import Ended, Failed, Frames, Started
from .results import check_frame_count, error_message, video_metadata

CHUNK = 32                 # grey frames per message from a decoding worker


@dataclass(frozen=True)
class Decoding:
    """What every decoding worker of a run needs: how to read and what to encode."""
    size: Optional[tuple[int, int]]
    short_side: Optional[int]
    max_frames: Optional[int]
    threads: int
    decoders: tuple[str, ...]
    jpeg_quality: int
    chunk: int = CHUNK


@dataclass(frozen=True)
class DecodeTask:
    """One video for a decoding worker: ``key`` names it in the events that answer."""
    key: int
    path: str
    frame_modalities: tuple[str, ...]  # encoded here, one JPEG per frame
    grey: bool                         # flow wanted: grey frames go to the parent


class Closed(Exception):
    """The run closed its end of a decoding worker's pipe: it is stopping."""


def post(conn, msg) -> None:
    """Send ``msg`` to the run; ``Closed`` when the run has closed its end."""
    try:
        conn.send(msg)
    except OSError as exc:  # EPIPE, or the descriptor closed under a thread
        raise Closed from exc


def decode_worker(wid: int, parent: Optional[int], conn, how: Decoding) -> None:
    """Decode the videos the run sends over ``conn`` (one ``DecodeTask`` at a time; None, or the run's
    end of the pipe closed: stop), answering each with Started, Frames... and Ended or Failed."""
    if parent is not None:  # a process of its own
        become_child(parent)
    if how.threads:
        cv2.setNumThreads(how.threads)
    try:
        for task in tasks(conn):
            decode_task(wid, conn, task, how)
    except Closed:
        return
    finally:
        conn.close()


def decode_task(wid: int, conn, task: DecodeTask, how: Decoding) -> None:
    """One video: Started, its frames in chunks, then Ended (or Failed)."""
    post(conn, Started(wid, task.key))
    try:
        reader = VideoReader(task.path, how.size, how.short_side, how.max_frames, how.threads,
                             how.decoders)
        n, start = 0, 0
        grey: list[np.ndarray] = []
        images: dict[str, list[bytes]] = {m: [] for m in task.frame_modalities}

        def send() -> None:
            post(conn, Frames(wid, task.key, start, np.stack(grey) if task.grey else None, images))

        for frame in reader.frames():
            for m in task.frame_modalities:
                images[m].append(encode_jpeg(frame, how.jpeg_quality))
            if task.grey:
                grey.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
            n += 1
            if n - start >= how.chunk:
                send()
                start, grey, images = n, [], {m: [] for m in task.frame_modalities}
        check_frame_count(n)
        if n > start:
            send()
        ended = Ended(wid, task.key, n, video_metadata(Path(task.path), reader, n))
    except Closed:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a batch of thousands
        post(conn, Failed(wid, task.key, error_message(exc)))
        return
    post(conn, ended)

