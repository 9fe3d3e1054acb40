"""TSN-style image folders (dense_flow, denseflow, mmaction2) to and from the store."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from tsn_core import modalities
from tsn_core.codec import decode_image
from tsn_core.meta import EntryMeta

from tsn_core.diskspace import DiskFull
from tsn_core.store import FOLDER_FAILURE, Store
from tsn_core.store.shards import shard_of

from .extraction.params import ExtractParams
from .extraction.results import error_message
from .writer import ShardWriter
from tsn_core.tree import Tree, walk
from tsn_core.video_files import check_id


Prefixes = dict[str, tuple[tuple[str, ...], ...]]  # modality -> namings, each a prefix per channel

# The frame-folder naming conventions in use: file-name prefixes per stored modality, one per
# channel in the modality's channel order. import-frames detects them per folder; export writes the
# first of each.
PREFIXES: Prefixes = {
    # dense_flow, denseflow and mmaction2 (img_00001.jpg); dense_flow's README example (-i=tmp/image)
    "rgb": (("img_",), ("image_",)),
    # dense_flow, denseflow, mmaction2's TSN flow configs (flow_x_00001.jpg);
    # mmaction2's tools/misc/flow_extraction.py and its test data (x_00001.jpg)
    "flow": (("flow_x_", "flow_y_"), ("x_", "y_")),
    # tsn-prep export. dense_flow's extract_warp_gpu names warped flow flow_x_ in a tree of its own:
    # import such a tree with --flow-modality warped_flow.
    "warped_flow": (("warp_x_", "warp_y_"),),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def channel_prefixes(stems: Mapping[str, str]) -> dict[str, str]:
    """``{channel: file-name prefix}`` from one stem per stored modality: a frame channel's prefix
    is its stem (``img_``), a flow channel's the stem then its component (``flow_`` -> ``flow_x_``,
    ``flow_y_``)."""
    out = {}
    for name, stem in stems.items():
        spec = modalities.get(name)
        for ch in spec.channels:
            out[ch] = f"{stem}{ch.rsplit('_', 1)[1]}_" if spec.is_flow else stem
    return out


# What export writes by default: the first naming of each modality in PREFIXES.
DEFAULT_PREFIXES = {ch: prefix for name, namings in PREFIXES.items()
                    for ch, prefix in zip(modalities.get(name).channels, namings[0])}


@dataclass(frozen=True)
class Naming:
    """File names per channel for export: ``<prefix><number, zero-padded>.jpg``, numbered from
    ``start``. The defaults (``img_00001.jpg``, ``flow_x_00001.jpg``) are what dense_flow writes and
    mmaction2's TSN configs read; denseflow writes the same prefixes numbered from 0 (``start=0``).
    """

    prefixes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PREFIXES))  # by channel
    start: int = 1
    digits: int = 5
    ext: str = ".jpg"

    def prefix(self, channel: str) -> str:
        return self.prefixes[channel]

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
    with store.sequential():  # a video's images lie together in its shard: read ahead
        for (vid, mod), entry in sorted(store.index.items()):
            if only and mod not in only:
                continue
            video_dir = Path(out_dir) / vid
            video_dir.mkdir(parents=True, exist_ok=True)
            for channel in modalities.get(mod).channels:
                for i in range(entry.count):
                    _write_atomic(video_dir / naming.filename(channel, i), store.get(vid, channel, i, mod))
                    written += 1
            if progress is not None:
                progress(1)
    return written


class FolderError(Exception):
    """A frame folder that cannot be imported; the message says why."""


def accepted_prefixes(img: Optional[str] = None, flow: Optional[str] = None, warp: Optional[str] = None,
                      flow_modality: str = "flow") -> Prefixes:
    """The prefixes import-frames looks for, per modality: the known conventions (:data:`PREFIXES`),
    or only the one the user named (``flow="flow_"`` means ``flow_x_`` and ``flow_y_``).
    ``flow_modality="warped_flow"`` stores flow-named images as warped flow instead."""
    out = dict(PREFIXES)
    if img is not None:
        out["rgb"] = ((img,),)
    if flow is not None:
        out["flow"] = ((f"{flow}x_", f"{flow}y_"),)
    if warp is not None:
        out["warped_flow"] = ((f"{warp}x_", f"{warp}y_"),)
    if flow_modality == "warped_flow":
        if warp is not None:
            raise ValueError("with flow_modality warped_flow the warped flow is named by the flow prefix")
        out["warped_flow"], out["flow"] = out["flow"], ()
    elif flow_modality != "flow":
        raise ValueError(f"flow_modality must be flow or warped_flow, got {flow_modality!r}")
    return out


@dataclass(frozen=True)
class Found:
    """One modality's images in a folder: the prefixes they use, the first number, the files."""

    modality: str
    prefixes: tuple[str, ...]
    start: int
    files: dict[str, list[Path]]   # channel -> files in order

    def describe(self) -> str:
        """``flow x_/y_ from 0`` (what the summary and the metadata say)."""
        return f"{self.modality} {'/'.join(self.prefixes)} from {self.start}"


_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<ext>\.[A-Za-z]+)$")


def _shorten(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def scan_folder(video_dir: Path, accepted: Optional[Prefixes] = None,
                ignore_unmatched: bool = False) -> tuple[dict[str, Found], list[str]]:
    """Detect which naming convention each modality uses in one video folder.

    Returns ``({modality: Found}, unmatched image file names)``. A modality's channels must use one
    convention, each channel numbered contiguously from 0 or 1, all channels with the same start and
    count; different modalities may start differently (dense_flow frames from 1, a 0-based flow).
    Image files no accepted prefix claims are an error unless ``ignore_unmatched``.
    """
    accepted = PREFIXES if accepted is None else accepted
    by_prefix: dict[str, dict[int, str]] = {}
    unmatched = []
    for name in os.listdir(video_dir):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        m = _NUMBERED.match(name)
        if m is None:
            unmatched.append(name)
            continue
        numbers = by_prefix.setdefault(m["prefix"], {})
        if int(m["number"]) in numbers:
            raise FolderError(f"{numbers[int(m['number'])]} and {name} have the same number")
        numbers[int(m["number"])] = name

    found: dict[str, Found] = {}
    claimed = set()
    for modality in modalities.STORED:
        present = [p for p in accepted.get(modality, ()) if any(x in by_prefix for x in p)]
        if len(present) > 1:
            raise FolderError(f"{modality} images in two namings ({' and '.join('/'.join(p) for p in present)}); "
                              f"name the one to import with its --*-prefix option")
        if not present:
            continue
        prefixes = present[0]
        claimed.update(prefixes)
        per_channel, starts = {}, set()
        for channel, prefix in zip(modalities.get(modality).channels, prefixes):
            nums = by_prefix.get(prefix)
            if not nums:
                other = next(x for x in prefixes if x in by_prefix)
                raise FolderError(f"has {other}* images but no {prefix}* images")
            first, last = min(nums), max(nums)
            if first not in (0, 1) or len(nums) != last - first + 1:
                missing = sorted(set(range(first, last + 1)) - set(nums))[:5]
                raise FolderError(f"{prefix} numbering is not contiguous from 0 or 1 "
                                  f"(starts at {first}, missing {missing})")
            per_channel[channel] = [video_dir / nums[k] for k in sorted(nums)]
            starts.add(first)
        if len({len(v) for v in per_channel.values()}) != 1 or len(starts) != 1:
            raise FolderError(f"{modality} channels differ: " + ", ".join(
                f"{p}{min(by_prefix[p]):05d}..: {len(by_prefix[p])}" for p in prefixes))
        found[modality] = Found(modality, prefixes, starts.pop(), per_channel)

    unmatched += [name for prefix, nums in by_prefix.items() if prefix not in claimed for name in nums.values()]
    if unmatched and not ignore_unmatched:
        raise FolderError(f"{len(unmatched)} image files match no naming being imported "
                          f"({_shorten(unmatched)}); name their prefix with --img-prefix, --flow-prefix "
                          f"or --warp-prefix, or pass --ignore-unmatched to leave them out")
    return found, sorted(unmatched)


def find_video_dirs(tree: Tree) -> list[Path]:
    """Folders of a walked tree holding at least one image file, whatever its name: a folder of
    images in an unknown naming is reported, never skipped silently."""
    return sorted(folder for folder, files in tree.files.items()
                  if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files))


def import_folder(writer: ShardWriter, video_id: str, video_dir: Path,
                  accepted: Optional[Prefixes] = None, bound: float = ExtractParams.bound,
                  ignore_unmatched: bool = False) -> "FolderResult":
    """Store one folder's images (bytes as they are); a modality already complete is not rewritten."""
    found, unmatched = scan_folder(video_dir, accepted, ignore_unmatched)
    if not found:
        raise FolderError("no images in a naming being imported")
    images_per_modality = {}
    for modality, what in found.items():
        if writer.is_complete(video_id, modality):
            continue
        images: dict[str, list[bytes]] = {}
        size = None
        for ch, paths in what.files.items():
            images[ch] = []
            for p in paths:
                data = p.read_bytes()
                img = decode_image(data)
                if img is None:
                    raise FolderError(f"{p.name} does not decode as an image")
                if size is None:
                    size = [img.shape[1], img.shape[0]]
                elif [img.shape[1], img.shape[0]] != size:
                    raise FolderError(f"{p.name} is {img.shape[1]}x{img.shape[0]}, others {size[0]}x{size[1]}")
                images[ch].append(data)
        images_per_modality[modality] = (images, size)
    # Everything decoded before anything is written: a broken image leaves no modality of the
    # folder half imported.
    for modality, (images, size) in images_per_modality.items():
        what = found[modality]
        meta = EntryMeta(source=str(video_dir), imported_from=str(video_dir), stored_size=tuple(size),
                         modality=modality, naming={"prefixes": list(what.prefixes), "start": what.start},
                         parameters={"bound": bound} if modalities.get(modality).is_flow else {})
        writer.put_video(video_id, modality, images, meta)
    return FolderResult(video_id, video_dir, list(found.values()), list(images_per_modality), unmatched)


@dataclass
class FolderResult:
    """What import-frames did with one folder."""

    video_id: str
    folder: Path
    found: list[Found] = field(default_factory=list)
    written: list[str] = field(default_factory=list)   # modalities stored now (not already complete)
    unmatched: list[str] = field(default_factory=list)  # image files left out (--ignore-unmatched)
    error: Optional[str] = None


def import_tree(root: Path, out: Path, accepted: Optional[Prefixes] = None,
                bound: float = ExtractParams.bound, shard_index: int = 0, num_shards: int = 1, ignore_unmatched: bool = False,
                on_video: Optional[Callable[[FolderResult], None]] = None) -> list[FolderResult]:
    """Import every video folder under ``root`` that belongs to this shard, one result per folder.

    A folder that cannot be imported is recorded as a failure in the store (``verify`` lists it)
    and the others go on.
    """
    writer = ShardWriter(out, shard_index, num_shards)
    results = []
    try:
        tree = walk(Path(root))  # symlinked folders followed
        # A folder that cannot be listed fails every shard's run: its folders could be anyone's.
        writer.clear_folder_failures(keep={p.relative_to(root).as_posix() for p, _ in tree.unlisted})
        for folder, why in tree.unlisted:
            rel = folder.relative_to(root).as_posix()
            result = FolderResult(rel, folder, error=f"folder cannot be listed ({why}); the video "
                                                     "folders in it were not imported")
            if shard_of(rel, num_shards) == shard_index:
                writer.put_failure(rel, "import", os.path.abspath(folder), result.error, kind=FOLDER_FAILURE)
            results.append(result)
            if on_video is not None:
                on_video(result)
        for video_dir in find_video_dirs(tree):
            video_id = video_dir.relative_to(root).as_posix()
            if video_id == ".":
                video_id = Path(root).resolve().name
            if shard_of(video_id, num_shards) != shard_index:
                continue
            try:
                problem = check_id(video_id)
                if problem:
                    raise FolderError(problem)
                result = import_folder(writer, video_id, video_dir, accepted, bound, ignore_unmatched)
                writer.clear_failure(video_id, "import")
            except DiskFull:
                raise  # not this folder's fault: stop, every folder after it would fail the same way
            except Exception as exc:  # noqa: BLE001 - one odd folder must not end the import
                error = str(exc) if isinstance(exc, (FolderError, OSError)) else error_message(exc)
                result = FolderResult(video_id, video_dir, error=error)
                writer.put_failure(video_id, "import", os.path.abspath(video_dir), error)
            results.append(result)
            if on_video is not None:
                on_video(result)
    finally:
        writer.close()
    return results


def rawframe_lines(store: Store, modality: str,
                   labelled: Optional[list[tuple[str, int]]] = None) -> tuple[list[str], list[str]]:
    """mmaction2 RawframeDataset annotation lines for one modality, and the listed ids not stored.

    Each line is ``video_id count [label]``, ``count`` being the modality's own image count: a flow
    list gives the number of flows (N-1 for N frames), which mmaction2's test-time sampling relies
    on. Without ``labelled`` every stored video is listed, in id order, without a label.
    """
    counts = {vid: entry.count for (vid, mod), entry in store.index.items() if mod == modality}
    rows = [(vid, None) for vid in sorted(counts)] if labelled is None else labelled
    lines, missing = [], []
    for vid, label in rows:
        if any(c.isspace() for c in vid):
            raise ValueError(f"video id {vid!r} holds whitespace, which mmaction2's list format cannot")
        if vid not in counts:
            missing.append(vid)
            continue
        lines.append(f"{vid} {counts[vid]}" + ("" if label is None else f" {label}"))
    return lines, missing


def write_rawframe_lists(store: Store, out_dir: Path, only: Optional[tuple[str, ...]] = None,
                         labelled: Optional[dict[str, list[tuple[str, int]]]] = None
                         ) -> list[tuple[Path, int, list[str]]]:
    """Write ``out_dir/rawframes_<modality>.txt`` (every stored video, no label) per stored modality,
    and ``out_dir/<name>_rawframes_<modality>.txt`` per labelled list (``name`` its file stem).

    Returns (path, lines, listed ids not in the store) per file written.
    """
    present = sorted({mod for _, mod in store.index if not only or mod in only})
    written = []
    for name, rows in [(None, None), *(labelled or {}).items()]:
        for modality in present:
            lines, missing = rawframe_lines(store, modality, rows)
            path = Path(out_dir) / f"{name + '_' if name else ''}rawframes_{modality}.txt"
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            _write_atomic(path, "".join(line + "\n" for line in lines).encode())
            written.append((path, len(lines), missing))
    return written
