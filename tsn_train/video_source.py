"""Video files as a source of RGB frames for ``fit``, ``test`` and ``predict`` (``--videos``):
the frames a snippet needs are decoded from the file when it is read, with no extraction.

The same list files work as with a store: ids are the ones ``tsn-prep`` gives the files
(``tsn_core.video_files.list_videos``), and a video's frame count, from the index
(``tsn_train.video_index``), is the count tsn-prep would store, so the same seed samples the same
frame numbers. The frames are the ones extract-frames would store before JPEG (``video_frames``).
Flow and warped flow are computed ahead of time (``tsn-prep extract-flow``): they are not read
from videos.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_core import machine, modalities
from tsn_core.frames import DECODERS
from tsn_core.lists import Known, ListError, Record, preview
from tsn_core.progress import bar as progress_bar
from tsn_core.video_files import VideoItem, list_videos

from .video_frames import FrameError, read_frames
from .video_index import VideoIndex, build_index, index_path
from .videos import Videos

DEFAULT_SIZE = (340, 256)  # tsn-prep extract-frames' default --size


@dataclass(frozen=True)
class FrameSettings:
    """How frames are made from a video: the stored size (``size``, or the short side scaled to
    ``short_side``), as ``tsn-prep extract-frames --size/--short-side``, and the decoders tried
    in order (``--decoders``)."""
    size: Optional[tuple[int, int]] = DEFAULT_SIZE
    short_side: Optional[int] = None
    decoders: tuple[str, ...] = DECODERS

    @classmethod
    def of(cls, parameters: dict, decoders: Sequence[str] = DECODERS) -> "FrameSettings":
        """The settings that make frames as ``parameters`` say (a store's recorded extraction
        parameters, or ``FrameSettings.parameters``): the same size or short side."""
        size = parameters.get("size")
        return cls(tuple(size) if size else None, parameters.get("short_side"), tuple(decoders))

    def parameters(self) -> dict:
        """What a checkpoint records of its frames (the keys a store's rgb entries record, so
        ``predict`` extracts a video as the model was trained), and that they came from videos."""
        return {"size": list(self.size) if self.size else None, "short_side": self.short_side,
                "max_frames": None, "decoded_from": "videos"}


class VideoFiles:
    """A frame source (``tsn_train.dataset.FrameSource``) of video files: ``frames(id, "rgb",
    [3, 40, 77])`` decodes those frames of the video ``id`` (the index says which file, how many
    frames, where the keyframes are). Holds only the index's arrays, which forked loader workers
    share. A frame that cannot be decoded raises ``FrameError`` naming the file and frame."""

    # the decoders' buffers, freed after each file, are kept by glibc among live pages: handed
    # back every TRIM_EVERY reads (nothing else is kept: tsn_core.frames.demuxed; measured in
    # docs/performance.md); fresh workers every epoch start each from the parent's memory
    fresh_workers = True
    TRIM_EVERY = 32

    def __init__(self, index: VideoIndex, settings: FrameSettings = FrameSettings(), threads: int = 1):
        self.index, self.settings, self.threads = index, settings, threads
        self.reads = 0

    def frames(self, video_id: str, modality: str, indices: list[int]) -> np.ndarray:
        if modalities.get(modality).source != modalities.FRAMES:
            raise ValueError(f"{modality} is not read from videos (only rgb and rgbdiff are)")
        row = self.index.find(video_id)
        if row is None or self.index.frames(row) < 0:
            raise FrameError(f"{video_id}: not among the indexed videos")
        path = self.index.path(row)
        try:
            got = read_frames(path, indices, self.index.scan(row), self.settings.size,
                              self.settings.short_side, self.settings.decoders, self.threads)
        except FrameError as exc:
            raise FrameError(f"{path}: {exc}") from None
        self.reads += 1
        if self.reads % self.TRIM_EVERY == 0:
            machine.return_free_memory()
        return np.stack([got[i] for i in indices])


@dataclass
class Checked:
    """A list checked against its source: the videos a dataset reads (``Videos``), and the ones
    left out because they could not be indexed (``"id: why"``)."""
    videos: Videos
    left_out: list[str]


class VideoSource:
    """The video files under ``root`` (a folder, one file, or a text file of paths, as tsn-prep
    takes them) as the data of ``fit`` and ``test``. ``known(modality)`` resolves list lines
    against their ids; ``checked(...)`` indexes a list's videos (cached beside the list) and
    gives their frame counts; ``images()`` is the frame source."""

    def __init__(self, root: Path, settings: FrameSettings = FrameSettings(), scan_threads: int = 4,
                 progress: bool = True):
        self.root, self.settings = Path(root), settings
        self.scan_threads, self.progress = scan_threads, progress
        listing = list_videos(self.root)
        self.items: dict[str, VideoItem] = {item.id: item for item in listing.items}
        # files found but refused (an unusable name...): a list naming one is told why
        self.refused: dict[str, str] = {item.id: why for item, why in listing.rejected}
        self._index: Optional[VideoIndex] = None
        self._checked: list[VideoIndex] = []

    def known(self, modality: str) -> Known:
        """The ids of the videos, for ``read_list``; ListError for a modality not read from videos."""
        spec = modalities.get(modality)
        if spec.source != modalities.FRAMES:
            raise ListError(f"--videos reads rgb and rgbdiff; {modality} is computed ahead of time: "
                            f"tsn-prep extract-flow{' --modality ' + modality if modality != 'flow' else ''} "
                            f"VIDEOS OUT, then --store OUT")
        return Known(self.items, "the videos", f"video file under {self.root}",
                     lambda missing: f"; {len(self.items):,} videos are there")

    def checked(self, records: Sequence[Record], modality: str, num_classes: int, list_name: str,
                list_path: Optional[Path] = None) -> Checked:
        """``records``' videos indexed (the index cached beside ``list_path``), their labels
        checked as a store's are; videos that could not be indexed are left out and named.
        ListError when a listed id has no file, or no video could be indexed."""
        self.known(modality)
        missing = [r.video_id for r in records if r.video_id not in self.items]
        if missing:
            why = next((f"; {v}: {self.refused[v]}" for v in missing if v in self.refused), "")
            raise ListError(f"{list_name}: {len(missing)} of {len(records)} videos have no video file "
                            f"under {self.root}: {preview(missing)}{why}")
        bad = [f"{r.video_id}={r.label}" for r in records if not 0 <= r.label < num_classes]
        if bad:
            raise ListError(f"{list_name}: labels must be in 0..{num_classes - 1}; out of range: {preview(bad)}")
        items = [self.items[r.video_id] for r in records]
        bar = progress_bar(total=len(items), desc="indexing videos", unit="video", quiet=not self.progress,
                           leave=False)
        index = build_index(items, index_path(list_path) if list_path else None, self.scan_threads,
                            progress=bar.update)
        bar.close()
        rows = [index.find(r.video_id) for r in records]
        counts = np.array([index.frames(row) for row in rows], np.int64)
        left_out = [f"{r.video_id}: {index.error(row)}" for r, row, c in zip(records, rows, counts) if c <= 0]
        kept = [r for r, c in zip(records, counts) if c > 0]
        if not kept:
            raise ListError(f"{list_name}: none of its {len(records)} videos could be indexed: "
                            f"{preview(left_out)}")
        self._checked.append(index)
        return Checked(Videos.of(kept, counts[counts > 0]), left_out)

    def images(self, threads: int = 1) -> VideoFiles:
        """The frame source of every video checked so far."""
        return VideoFiles(_merged(self._checked), self.settings, threads)

    def fps(self, video_id: str, modality: str = modalities.FRAMES) -> float:
        """The frame rate the container gives (0 when it gives none) of a checked video."""
        for index in self._checked:
            row = index.find(video_id)
            if row is not None:
                return index.fps(row)
        return 0.0

    def parameters(self, video_id: str = "", modality: str = modalities.FRAMES) -> dict:
        """The settings every video's frames are made with (``FrameSettings.parameters``)."""
        return self.settings.parameters()

    def close(self) -> None:
        """Nothing stays open between reads."""


def left_out_text(left_out: list[str]) -> str:
    """``2 videos could not be indexed and are left out: a: why; b: why``."""
    n = len(left_out)
    return (f"{n} video{'s' if n != 1 else ''} could not be indexed and {'are' if n != 1 else 'is'} "
            f"left out: {'; '.join(left_out[:3])}{'; ...' if n > 3 else ''}")


def _merged(indexes: list[VideoIndex]) -> VideoIndex:
    """One index of several lists' (train and val): each video's row from the first that has it."""
    if len(indexes) == 1:
        return indexes[0]
    seen: dict[str, tuple] = {}
    for index in indexes:
        for row in range(len(index)):
            vid = index.video_id(row)
            if vid not in seen:
                seen[vid] = (vid, index.path(row), *index.stamp(row), index.scan(row))
    return VideoIndex.of(list(seen.values()))
