"""The events of a run: what the decoding workers send (across processes), and what the parent's
encoding and homography pool tells the scheduler's main loop; and the frame ``Pair`` that travels
from the main loop to the devices and back. What a device tells the main loop is in ``devices``."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tsn_core.meta import EntryMeta


@dataclass
class Started:
    """A worker took video ``key``."""
    worker: int
    key: int


@dataclass
class Frames:
    """Frames ``start``, ``start + 1``, ... of video ``key``: grey, for flow (else None), and
    the JPEGs of its frame modalities (modality -> one per frame)."""
    worker: int
    key: int
    start: int
    grey: Optional[np.ndarray]
    images: dict[str, list[bytes]]

    @property
    def pairs(self) -> int:
        """Frame pairs these frames complete (the first frame of a video completes none)."""
        if self.grey is None:
            return 0
        return len(self.grey) - (1 if self.start == 0 else 0)


@dataclass
class Ended:
    """Video ``key`` is decoded: ``count`` frames; its video-level metadata."""
    worker: int
    key: int
    count: int
    common: EntryMeta


@dataclass
class Failed:
    """Video ``key`` could not be decoded (or has too few frames)."""
    worker: int
    key: int
    error: str


@dataclass
class WorkerDied:
    """Decoding worker ``worker`` ended unasked (a crash, the OOM killer): ``key``, the video it
    was decoding or about to, fails; a new worker takes its other videos."""
    worker: int
    key: Optional[int]
    exitcode: Optional[int]


@dataclass
class Pair:
    """Two consecutive grey frames of video ``key``: flow ``index`` (``second``: of the warped pass)."""
    key: int
    index: int
    second: bool          # the second pass of warped flow: (prev, cur warped onto prev)
    prev: np.ndarray
    cur: np.ndarray


@dataclass
class Homography:
    """The camera motion of ``pair`` is estimated: ``future`` gives (flow, warped second frame or
    None for the identity)."""
    pair: "Pair"
    future: Future


@dataclass
class Encoded:
    """Flows are encoded: ``future`` gives (key, pair index, modality, JPEGs or an exception)s."""
    future: Future

