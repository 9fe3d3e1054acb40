"""A list's videos as arrays: what a dataset holds per video (its id, label and image count).

A Kinetics-sized list has 650k videos. Held as Python objects (a ``Record`` and a dict entry per
video, about 300 bytes each) they would be copied, page by page, into every forked loader worker
as it touches them: reading an object writes its reference count, so over an epoch each worker
ends up with its own copy of the whole list. Held here in four numpy arrays (the UTF-8 ids
concatenated in one buffer, their offsets, the labels, the counts; about 60 bytes a video for
Kinetics-style ids) nothing a worker reads is ever written, so the pages stay shared with the
parent and a worker's private memory stays flat.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Union, overload

import numpy as np

from tsn_core.lists import Record


class Videos(Sequence):
    """Videos ``0..n-1`` of a list: ``video_id(i)``, ``label(i)``, ``count(i)`` (images per
    channel of the series the modality reads), and ``self[i]``, the ``Record`` it was made of."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray, counts: np.ndarray):
        n = len(labels)
        if len(offsets) != n + 1 or len(counts) != n:
            raise ValueError(f"Videos: {n} labels, {len(counts)} counts, {len(offsets)} offsets "
                             f"(want {n + 1})")
        self.ids, self.offsets, self.labels, self.counts = ids, offsets, labels, counts
        # plain Python ints when indexed, without making a numpy scalar per lookup
        self._offsets = memoryview(offsets).cast("B").cast("q")

    @classmethod
    def of(cls, records: Iterable[Record],
           counts: Union[Mapping[str, int], Sequence[int], np.ndarray]) -> "Videos":
        """From records and their counts: ``{video_id: count}`` (what ``lists.validate`` returns)
        or one count per record, in order."""
        records = records if isinstance(records, Sequence) else list(records)
        encoded = [r.video_id.encode("utf-8") for r in records]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        ids = np.frombuffer(b"".join(encoded), np.uint8)
        labels = np.fromiter((r.label for r in records), np.int64, len(records))
        if isinstance(counts, Mapping):
            counts = np.fromiter((counts[r.video_id] for r in records), np.int64, len(records))
        else:
            counts = np.asarray(counts, np.int64)
        return cls(ids, offsets, labels, counts)

    def __len__(self) -> int:
        return len(self.labels)

    def video_id(self, i: int) -> str:
        i = self._position(i)
        return self.ids[self._offsets[i]:self._offsets[i + 1]].tobytes().decode("utf-8")

    def label(self, i: int) -> int:
        return int(self.labels[i])

    def count(self, i: int) -> int:
        return int(self.counts[i])

    @overload
    def __getitem__(self, i: int) -> Record: ...
    @overload
    def __getitem__(self, i: slice) -> list[Record]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Record(self.video_id(i), self.label(i))

    @property
    def nbytes(self) -> int:
        """Bytes of the four arrays: all the memory the videos take."""
        return self.ids.nbytes + self.offsets.nbytes + self.labels.nbytes + self.counts.nbytes

    def _position(self, i: int) -> int:
        n = len(self)
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"video {i} of {n}")
        return j
