"""A TSN dataset: segment-sampled snippets read from a frame source (a tsn-prep store, images in
memory, or video files: ``tsn_train.video_source``), decoded and transformed."""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional, Protocol, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tsn_core import modalities
from tsn_core.codec import decode_image
from tsn_core.store import Store

from tsn_core.lists import Record
from .sampling import center_starts, sample_indices, train_starts
from .videos import Videos

# PyTorch warns when a DataLoader has more workers than the cores it counts; our defaults never do
# (tsn_train.config.default_workers), and fit says it in its own words when --workers asks for
# more (tsn_train.fit.advice).
warnings.filterwarnings("ignore", message=r"This DataLoader will create \d+ worker processes",
                        category=UserWarning)


def decode(data: bytes, color: bool, where: str) -> np.ndarray:
    image = decode_image(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{where}: stored image is not a decodable JPEG/PNG")
    return image


class FrameSource(Protocol):
    """Where a dataset gets its pictures: ``frames(video_id, modality, indices)`` is ``(T, H, W,
    C)`` uint8, the images ``modality`` reads at each of ``indices`` (BGR frames; flow's x and y
    as two channels), as a store holds them decoded. ``fresh_workers``: loader workers reading it
    are started anew every epoch (its reads leave memory behind, so a worker's memory is bounded
    by one epoch), rather than kept for the run."""

    fresh_workers: bool

    def frames(self, video_id: str, modality: str, indices: list[int]) -> np.ndarray: ...


class ImageSource(FrameSource, Protocol):
    """A frame source of encoded images: the stored JPEG/PNG bytes of ``video_id``'s ``channel``
    (e.g. ``img``, ``flow_x``) at image ``indices`` (what ``--decode-on device`` decodes)."""

    def read(self, video_id: str, channel: str, indices: list[int]) -> list[bytes]: ...


class EncodedImages(ABC):
    """What every source of stored images does with its ``read``: decode each distinct image once."""

    fresh_workers = False  # reading a store leaves nothing behind: workers are kept for the run

    @abstractmethod
    def read(self, video_id: str, channel: str, indices: list[int]) -> list[bytes]: ...

    def frames(self, video_id: str, modality: str, indices: list[int]) -> np.ndarray:
        unique = sorted(set(indices))
        spec = modalities.get(modality)
        channels = []
        for channel in spec.channels:
            blobs = self.read(video_id, channel, unique)
            decoded = {i: decode(b, not spec.is_flow, f"{video_id} {channel} {i}") for i, b in zip(unique, blobs)}
            channels.append(np.stack([decoded[i] for i in indices]))
        if len(channels) == 1:
            return channels[0]
        return np.stack(channels, axis=-1)


class StoreImages(EncodedImages):
    """The images of a tsn-prep store. The LMDB handle is opened on first read in each process
    (each loader worker opens its own) and is never pickled."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._store: Optional[Store] = None

    def read(self, video_id: str, channel: str, indices: list[int]) -> list[bytes]:
        if self._store is None:
            self._store = Store(self.root)
        return self._store.read(video_id, channel, indices)

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _store=None)


class MemoryImages(EncodedImages):
    """Images held in memory, ``{channel: [bytes per image index]}`` of one video (what predict
    has just extracted)."""

    def __init__(self, images: dict[str, list[bytes]]):
        self.images = images

    def read(self, video_id: str, channel: str, indices: list[int]) -> list[bytes]:
        return [self.images[channel][i] for i in indices]


class VideoDataset(Dataset):
    """One sample per listed video: K snippets of ``modality``, read from ``source``.

    ``train=True`` draws one random snippet per segment and applies ``transform(frames, rng)``
    (augmentation); otherwise snippets sit at segment centres and ``transform`` is an EvalCrops.
    The random draws of item ``i`` in epoch ``e`` depend only on ``(seed, e, i)``, so any number
    of loader workers, ranks, or a resumed run see the same samples. An item is indexed by ``i``
    (in the epoch last given to ``set_epoch``) or by ``(e, i)``, which persistent loader workers
    need: their copy of the dataset never sees ``set_epoch``.

    Items are uint8 images, ``(K, L, S, S, C)`` in training and ``(crops, K, L, S, S, C)``
    otherwise, with the label: :func:`~tsn_train.transforms.to_input` turns them into the
    network's input on the device.

    The videos are ``records`` with their image ``counts`` (``{video_id: count}``), or a
    :class:`~tsn_train.videos.Videos` (``counts`` None), which is what the dataset keeps either
    way: a few numpy arrays, so that forked loader workers, which only read them, share their
    pages with the parent for a whole epoch (a list of Python objects would be copied into each
    worker as it touched them). ``self.videos[i]`` is item ``i``'s Record.
    """

    def __init__(self, source: FrameSource, records: Union[Sequence[Record], Videos],
                 counts: Optional[Mapping[str, int]], modality: str, segments: int, train: bool,
                 transform: Callable[[np.ndarray, Optional[np.random.Generator]], np.ndarray],
                 seed: int = 0):
        self.source = source
        if isinstance(records, Videos):
            if counts is not None:
                raise ValueError("VideoDataset: Videos carry their counts; pass counts=None")
            self.videos = records
        else:
            self.videos = Videos.of(records, counts)
        self.modality, self.segments, self.train = modality, segments, train
        self.transform, self.seed = transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, i: int, rng: Optional[np.random.Generator]) -> list[list[int]]:
        """Image indices per snippet for item ``i``."""
        count = self.videos.count(i)
        length = modalities.get(self.modality).snippet_length
        starts = (train_starts(count, length, self.segments, rng) if self.train
                  else center_starts(count, length, self.segments))
        return sample_indices(starts, length, count)

    def load(self, video_id: str, indices: list[int]) -> np.ndarray:
        """Decoded images ``(T, H, W, C)`` at ``indices`` (each distinct image decoded once)."""
        return self.source.frames(video_id, self.modality, indices)

    def sample(self, key) -> tuple[Record, Optional[np.random.Generator], list[list[int]]]:
        """An item's record, its generator (training; None otherwise) after drawing the snippets,
        and the snippets' image indices. ``key`` is ``i`` or ``(epoch, i)``."""
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, i]) if self.train else None
        return self.videos[i], rng, self.indices(i, rng)

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        record, rng, snippets = self.sample(key)
        frames = self.load(record.video_id, [j for s in snippets for j in s])
        frames = self.transform(frames, rng)
        k, length = len(snippets), len(snippets[0])
        frames = frames.reshape(*frames.shape[:-4], k, length, *frames.shape[-3:])
        return torch.from_numpy(np.ascontiguousarray(frames)), record.label


class ShardSampler(Sampler[tuple[int, int]]):
    """Items of one rank: a seeded permutation per epoch (training) or the plain order, dealt
    round-robin over ``world`` ranks. Without ``pad``, ranks may differ by one item (validation
    and test count every video exactly once); with it, the first items repeat so all ranks step together.

    Iterating yields ``(epoch, item)`` keys, so a dataset in a persistent loader worker draws the
    epoch's augmentation; :meth:`order` gives the items alone."""

    def __init__(self, size: int, rank: int = 0, world: int = 1, shuffle: bool = False,
                 seed: int = 0, pad: bool = False):
        self.size, self.rank, self.world = size, rank, world
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            items = torch.randperm(self.size, generator=g).tolist()
        else:
            items = list(range(self.size))
        if self.pad:  # repeat from the start (cyclically, for fewer items than ranks)
            items += (items * self.world)[: -self.size % self.world]
        return items[self.rank::self.world]

    def __iter__(self):
        return ((self.epoch, i) for i in self.order())

    def __len__(self) -> int:
        total = self.size + (-self.size % self.world if self.pad else 0)
        return len(range(self.rank, total, self.world))


def single_threaded_decoding() -> None:
    """One OpenCV thread per process, inherited by loader workers (they are the parallelism).

    Call it in the parent before workers start: ``cv2.setNumThreads`` inside a forked worker
    deadlocks when the parent's OpenCV thread pool had been running.
    """
    cv2.setNumThreads(1)
