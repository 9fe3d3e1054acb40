"""Where ``fit`` and ``test`` read their videos: a tsn-prep store (``--store``) or the video files
themselves (``--videos``, RGB and RGB difference only). Both answer the same questions, so the
commands never ask which one they have."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from tsn_core import modalities
from tsn_core.frames import DECODERS
from tsn_core.lists import Known, Record
from tsn_core.store import Store

from .dataset import FrameSource, StoreImages
from .lists import store_known, validated
from .video_source import Checked, FrameSettings, VideoSource


class DataSource(Protocol):
    """The videos of a run: resolve list lines (``known``), check a list and count each video's
    images (``checked``), read frames (``images``), the frame rate of a video (``fps``, 0 when
    unknown) and the settings its images were made with (``parameters``)."""

    def known(self, modality: str) -> Known: ...

    def checked(self, records: Sequence[Record], modality: str, num_classes: int, list_name: str,
                list_path: Optional[Path] = None) -> Checked: ...

    def images(self, threads: int = 1) -> FrameSource: ...

    def fps(self, video_id: str, modality: str) -> float: ...

    def parameters(self, video_id: str, modality: str) -> dict: ...

    def close(self) -> None: ...


class StoreSource:
    """A tsn-prep store as a ``DataSource``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.store = Store(self.root)

    def known(self, modality: str) -> Known:
        return store_known(self.store, modality)

    def checked(self, records: Sequence[Record], modality: str, num_classes: int, list_name: str,
                list_path: Optional[Path] = None) -> Checked:
        return Checked(validated(records, self.store, modality, num_classes, list_name), [])

    def images(self, threads: int = 1) -> StoreImages:
        return StoreImages(self.root)

    def fps(self, video_id: str, modality: str) -> float:
        return self.store.entry(video_id, modalities.get(modality).source).meta.fps or 0.0

    def parameters(self, video_id: str, modality: str) -> dict:
        return self.store.entry(video_id, modalities.get(modality).source).meta.parameters

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class SourceSpec:
    """A source as a command names it: ``--store`` or ``--videos`` (and ``--decoders``), opened
    for a checkpoint (``open``): its video frames made as its training frames were."""
    store: Optional[Path] = None
    videos: Optional[Path] = None
    decoders: tuple[str, ...] = DECODERS

    def open(self, extraction: dict, scan_threads: int = 4, progress: bool = True) -> DataSource:
        """The source; ``extraction``: how the checkpoint's training frames were made (a
        store's recorded parameters, or ``FrameSettings.parameters``)."""
        settings = FrameSettings.of(extraction, self.decoders)
        return open_source(self.store, self.videos, settings, scan_threads, progress)

    @property
    def where(self) -> str:
        return str(self.store if self.store is not None else self.videos)


def open_source(store: Optional[Path] = None, videos: Optional[Path] = None,
                settings: FrameSettings = FrameSettings(), scan_threads: int = 4,
                progress: bool = True) -> DataSource:
    """The store at ``store``, or the video files at ``videos`` (exactly one is given)."""
    if (store is None) == (videos is None):
        raise ValueError("give a store or videos (one of them)")
    if store is not None:
        return StoreSource(Path(store))
    return VideoSource(Path(videos), settings, scan_threads, progress)
