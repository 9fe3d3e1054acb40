"""TSN-style image folders (dense_flow, denseflow, mmaction2) to and from the store."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from . import modalities
from .store import ShardWriter, Store, shard_of


@dataclass(frozen=True)
class Naming:
    """File names per channel: ``<prefix><number, zero-padded>.jpg``, numbered from ``start``.

    Defaults are mmaction2's and dense_flow's (``img_00001.jpg``, ``flow_x_00001.jpg``); denseflow's
    own output is ``Naming(flow_x='x_', flow_y='y_', start=0)``.
    """

    img: str = "img_"
    flow_x: str = "flow_x_"
    flow_y: str = "flow_y_"
    warped_flow_x: str = "warp_x_"
    warped_flow_y: str = "warp_y_"
    start: int = 1
    digits: int = 5
    ext: str = ".jpg"

    def prefix(self, channel: str) -> str:
        return getattr(self, channel)

    def filename(self, channel: str, index: int) -> str:
        return f"{self.prefix(channel)}{index + self.start:0{self.digits}d}{self.ext}"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export_store(store: Store, out_dir: Path, naming: Naming = Naming(),
                 only: Optional[tuple[str, ...]] = None,
                 progress: Optional[Callable[[int], None]] = None) -> int:
    """Write the store's images as ``out_dir/<id>/<prefix><n>.jpg`` (bytes copied, no re-encode)."""
    written = 0
    for (vid, mod), entry in sorted(store.index.items()):
        if only and mod not in only:
            continue
        video_dir = Path(out_dir) / vid
        video_dir.mkdir(parents=True, exist_ok=True)
        for channel in modalities.get(mod).channels:
            for i in range(entry.meta["count"]):
                _write_atomic(video_dir / naming.filename(channel, i), store.get(vid, channel, i, mod))
                written += 1
        if progress is not None:
            progress(1)
    return written


class FolderError(Exception):
    """A frame folder that cannot be imported; the message says why."""


def _numbered(files: list[str], prefix: str, ext: str) -> dict[int, str]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(ext) + "$", re.IGNORECASE)
    out = {}
    for name in files:
        m = pattern.match(name)
        if m:
            out[int(m.group(1))] = name
    return out


def scan_folder(video_dir: Path, naming: Naming) -> dict[str, dict[str, list[Path]]]:
    """{modality: {channel: [files in order]}} for the channels present in one video folder.

    Numbering must be contiguous from 0 or 1 and equal across a modality's channels.
    """
    files = os.listdir(video_dir)
    found: dict[str, dict[str, list[Path]]] = {}
    for modality in modalities.STORED:
        channels = modalities.get(modality).channels
        numbered = {ch: _numbered(files, naming.prefix(ch), naming.ext) for ch in channels}
        if not any(numbered.values()):
            continue
        per_channel = {}
        for ch, nums in numbered.items():
            if not nums:
                raise FolderError(f"has {modality} images but no {naming.prefix(ch)}*{naming.ext}")
            first, last = min(nums), max(nums)
            if first not in (0, 1) or len(nums) != last - first + 1:
                missing = sorted(set(range(first, last + 1)) - set(nums))[:5]
                raise FolderError(f"{naming.prefix(ch)} numbering is not contiguous from 0 or 1 "
                                  f"(starts at {first}, missing {missing})")
            per_channel[ch] = [video_dir / nums[k] for k in sorted(nums)]
        if len({len(v) for v in per_channel.values()}) != 1:
            raise FolderError(f"{modality} channels differ in count: "
                              + ", ".join(f"{c}={len(v)}" for c, v in per_channel.items()))
        found[modality] = per_channel
    return found


def find_video_dirs(root: Path, naming: Naming) -> Iterator[Path]:
    """Folders under ``root`` holding at least one image with a known prefix."""
    prefixes = tuple(naming.prefix(ch) for ch in modalities.CHANNEL_MODALITY)
    for dirpath, _, files in os.walk(root):
        if any(f.startswith(prefixes) and f.lower().endswith(naming.ext) for f in files):
            yield Path(dirpath)


def import_folder(writer: ShardWriter, video_id: str, video_dir: Path, naming: Naming,
                  bound: float) -> list[str]:
    """Store one folder's images (bytes as they are); returns the modalities imported."""
    found = scan_folder(video_dir, naming)
    if not found:
        raise FolderError("no images with the expected prefixes")
    imported = []
    for modality, channels in found.items():
        if writer.is_complete(video_id, modality):
            continue
        images: dict[str, list[bytes]] = {}
        size = None
        for ch, paths in channels.items():
            images[ch] = []
            for p in paths:
                data = p.read_bytes()
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                if img is None:
                    raise FolderError(f"{p.name} does not decode as an image")
                if size is None:
                    size = [img.shape[1], img.shape[0]]
                elif [img.shape[1], img.shape[0]] != size:
                    raise FolderError(f"{p.name} is {img.shape[1]}x{img.shape[0]}, others {size[0]}x{size[1]}")
                images[ch].append(data)
        meta = {"source": str(video_dir), "imported_from": str(video_dir), "stored_size": size,
                "modality": modality, "parameters": {"bound": bound} if modalities.get(modality).is_flow else {}}
        writer.put_video(video_id, modality, images, meta)
        imported.append(modality)
    return imported


def import_tree(root: Path, out: Path, naming: Naming = Naming(), bound: float = 20.0,
                shard_index: int = 0, num_shards: int = 1,
                on_video: Optional[Callable[[str, Optional[str]], None]] = None) -> tuple[int, list[tuple[str, str]]]:
    """Import every video folder under ``root`` of this shard; returns (videos imported, failures)."""
    writer = ShardWriter(out, shard_index, num_shards)
    done, failures = 0, []
    try:
        for video_dir in sorted(find_video_dirs(Path(root), naming)):
            video_id = video_dir.relative_to(root).as_posix()
            if video_id == ".":
                video_id = Path(root).resolve().name
            if shard_of(video_id, num_shards) != shard_index:
                continue
            try:
                if import_folder(writer, video_id, video_dir, naming, bound):
                    done += 1
                writer.clear_failure(video_id, "import")
                error = None
            except (FolderError, OSError) as exc:
                error = str(exc)
                failures.append((str(video_dir), error))
                writer.put_failure(video_id, "import", str(video_dir), error)
            if on_video is not None:
                on_video(video_id, error)
    finally:
        writer.close()
    return done, failures
