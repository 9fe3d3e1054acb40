"""Whether all of a store is readable and intact (`tsn-prep verify`), at dataset scale.

A shard is checked in key ranges, each range a run of whole videos: its metadata, every image
(read in file order), the images' checksums and the counts. Ranges need no index of the store, so
any number of processes (``workers``) check the ranges of a shard side by side, and an array job
checks a 1 TB store shard by shard (``shards``). What a range finds is merged in key order: the
problems, and their order, are the same with one process or many.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from tsn_core import modalities
from tsn_core.codec import decode_image
from tsn_core.errors import Damaged
from tsn_core.meta import EntryMeta
from tsn_core.store import Failure, Store
from tsn_core.store.checksums import CHECKSUM, checksum_problem, has_checksums
from tsn_core.store.index_record import check_parameters, compact_entry
from tsn_core.store.keys import checksums_key, entry_key, full_id, is_key_form, split_entry_key, split_image_key
from tsn_core.store.records import parse_record
from tsn_core.store.shards import shard_of
from tsn_core.text import shown

from .pool import HelperDied, Pool, how_it_ended

# `tsn-prep verify`'s exit status. 2 is left to click: a usage error, e.g. OUT does not exist.
EXIT_OK = 0  # every image intact, counts right, no recorded failures
EXIT_DAMAGED = 1  # some image or metadata is wrong (whatever failures are recorded besides)
EXIT_FAILURES = 3  # nothing damaged, but some extractions failed and were recorded
EXIT_WARNINGS = 4  # nothing damaged or failed, but some videos were stored with a warning

RANGES_PER_WORKER = 4  # ranges of a shard per worker process: the slow ones even out


@dataclass(frozen=True)
class Verification:
    """What `verify` found: the problems (damage), the recorded failures, and how many entries
    carry no checksums (written before they were recorded: decoded and counted, not compared)."""

    entries: int
    problems: list[str]
    failures: list[Failure]
    unchecked: int
    warnings: list[dict] = field(default_factory=list)  # entries stored with a warning
    decoded: bool = True  # images were decoded (not --checksums-only)
    damaged_shards: list[int] = field(default_factory=list)  # shards not whole (Damaged)

    @property
    def exit_code(self) -> int:
        if self.problems:
            return EXIT_DAMAGED
        return EXIT_FAILURES if self.failures else EXIT_WARNINGS if self.warnings else EXIT_OK

    def note(self) -> Optional[str]:
        if not self.unchecked:
            return None
        if not self.decoded:
            return (f"note: {self.unchecked} of {self.entries} entries carry no checksums (written "
                    f"before tsn-prep recorded them): --checksums-only only counted their images; "
                    f"verify without it decodes them")
        return (f"note: {self.unchecked} of {self.entries} entries carry no checksums (written before "
                f"tsn-prep recorded them): their images were decoded and counted, but a changed byte "
                f"that still decodes goes unnoticed there")

    def summary(self) -> str:
        """The last line: counts, then the verdict, which the exit code repeats."""
        line = (f"{self.entries} entries checked, {len(self.problems)} problems, "
                f"{len(self.failures)} recorded failures")
        if self.warnings:
            line += f", {len(self.warnings)} stored with warnings"
        verdict = {EXIT_OK: "OK", EXIT_DAMAGED: "DAMAGED", EXIT_FAILURES: "FAILURES RECORDED, no damage",
                   EXIT_WARNINGS: "WARNINGS RECORDED, no damage"}
        return f"{line}: {verdict[self.exit_code]}"


@dataclass(frozen=True)
class _Range:
    """Keys ``lo <= key < hi`` (``hi`` None: to the end) of one shard."""
    root: str
    shard: int
    lo: bytes
    hi: Optional[bytes]
    decode: bool


@dataclass
class _Found:
    """What one range holds and what is wrong with it."""
    entries: int = 0
    images: int = 0
    unchecked: int = 0
    damage: list[str] = field(default_factory=list)         # a shard that is not whole (Damaged)
    problems: list[str] = field(default_factory=list)       # per image, in key order
    # per entry, in the order the entry's checks run: ("count", channel, seen, count) or ("text", line)
    entry_checks: list[tuple[tuple[str, str], list[tuple]]] = field(default_factory=list)
    strays: Counter = field(default_factory=Counter)        # (video, channel) -> images in another shard
    warnings: list[dict] = field(default_factory=list)


def verify(store: Store, progress: Optional[Callable[[int], None]] = None,
           shards: Optional[Sequence[int]] = None, workers: int = 1,
           decode: bool = True) -> Verification:
    """Everything `tsn-prep verify` reports for the store's ``shards`` (default: all): damage,
    the recorded failures, entries without checksums, entries stored with a warning. ``workers``
    processes check ranges of whole videos side by side. ``decode`` False (``--checksums-only``)
    compares the checksums and counts without decoding: see ``verify --help`` for what that misses."""
    chosen = sorted(store.shard_paths) if shards is None else sorted(shards)
    pieces = 1 if workers <= 1 else workers * RANGES_PER_WORKER
    failures, tasks = [], []
    damage: dict[int, str] = {}  # shard -> its first damage: a shard's other findings follow from it
    for shard in chosen:  # a damaged shard is one problem; the others are checked as ever
        try:
            failures += [f for f in store.failures_of(shard)]
            tasks += [_Structure(str(store.root), shard)]
            tasks += _ranges(store, shard, pieces, decode)
        except Damaged as exc:
            damage[shard] = str(exc)
    found: list[_Found] = []
    for task, f in zip(tasks, _run(tasks, workers)):
        if isinstance(f, HelperDied):  # never seen: the reader checks what it follows
            f = _Found(damage=[str(Damaged(str(store.shard_paths[task.shard]), f"checking it killed a "
                                           f"helper process ({how_it_ended(f.exitcode)})"))])
        if f.damage:
            damage.setdefault(task.shard, f.damage[0])
        found.append(f)
        if progress is not None:
            progress(f.images)
    if damage:
        return Verification(sum(f.entries for f in found), [damage[s] for s in sorted(damage)], failures,
                            0, damaged_shards=sorted(damage))
    strays: Counter = Counter()
    for f in found:
        strays.update(f.strays)
    problems = [p for f in found for p in f.problems]
    checks = sorted((c for f in found for c in f.entry_checks), key=lambda c: c[0])
    for (vid, _), items in checks:
        for item in items:
            if item[0] == "text":
                problems.append(item[1])
                continue
            _, channel, seen, count = item
            seen += strays[(vid, channel)]
            if seen != count:
                problems.append(f"{vid} {channel}: {seen} images, metadata says {count}")
    warnings = sorted((w for f in found for w in f.warnings), key=lambda w: (w["video_id"], w["modality"]))
    return Verification(sum(f.entries for f in found), problems, failures,
                        sum(f.unchecked for f in found), warnings, decode)


def verify_store(store: Store, progress: Optional[Callable[[int], None]] = None) -> list[str]:
    """The damage ``verify`` finds in the whole store, decoding every image, in one process."""
    return verify(store, progress).problems


def _run(tasks: list, workers: int) -> Iterator:
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_task, tasks)
        return
    with Pool(_task, min(workers, len(tasks))) as pool:
        yield from pool.imap(tasks, errors=True)  # in order: the problems come out in key order


@dataclass(frozen=True)
class _Structure:
    """Walk every tree of one shard (``LMDBFile.check``): a page or record that is not whole."""
    root: str
    shard: int


def _task(task) -> _Found:
    """A range's checks, or a shard's structure; a damaged shard is the range's damage."""
    store = _STORES.get(task.root)
    if store is None:
        store = _STORES[task.root] = Store(Path(task.root), check=False)
    try:
        if isinstance(task, _Structure):
            store.check_shard(task.shard)
            check_parameters(store.shard_paths[task.shard], dict(store.scan(task.shard, "params")))
            return _Found()
        return _check(store, task)
    except Damaged as exc:
        return _Found(damage=[str(exc)])


def _ranges(store: Store, shard: int, pieces: int, decode: bool) -> list[_Range]:
    """``pieces`` ranges of whole videos covering every key of the shard. A range starts at
    ``<id>|`` of an id without '|' (not a long id's key form), so a video's keys are never split:
    all of them start with ``<key id>|``, on one side of such a bound."""
    root = str(store.root)
    if pieces <= 1:
        return [_Range(root, shard, b"", None, decode)]
    ids = list(dict.fromkeys(split_entry_key(k)[0] for k, _ in store.scan(shard, "meta", values=False)))
    step = max(1, len(ids) // pieces)
    bounds = [b""] + [f"{vid}|".encode() for vid in ids[step::step] if "|" not in vid]
    return [_Range(root, shard, lo, hi, decode) for lo, hi in zip(bounds, bounds[1:] + [None])]


_STORES: dict[str, Store] = {}  # per process: a worker checks many ranges of the same store


def _check(store: Store, r: _Range) -> _Found:
    found = _Found()
    path = store.shard_paths[r.shard]
    name = path.name
    with store.sequential():
        entries: dict[tuple[str, str], EntryMeta] = {}   # (key id, modality) -> its metadata
        full: dict[str, str] = {}                        # key id -> video id
        for key, value in store.scan(r.shard, "meta", r.lo, r.hi):
            kvid, mod = split_entry_key(key)
            store.check_record(r.shard, key, value, f"the meta entry of {shown(kvid)} {mod}")
            record = parse_record(path, key, value)
            try:
                meta = EntryMeta.from_dict(record)
            except (ValueError, TypeError, AttributeError):
                raise Damaged(str(path), f"the meta entry of {shown(kvid)} {mod} is not a meta record") from None
            full[kvid] = full_id(kvid, record)
            entries[(kvid, mod)] = meta

        seen: Counter = Counter()
        sums: dict[tuple[str, str], Optional[bytes]] = {}  # the channel being read: one lookup each
        for key, data in store.scan(r.shard, "images", r.lo, r.hi):
            kvid, channel, idx = split_image_key(key)
            found.images += 1
            modality = modalities.CHANNEL_MODALITY.get(channel)
            vid = full.get(kvid, kvid)
            where = f"{name}: {vid} {channel} {idx}"
            meta, home = entries.get((kvid, modality)), r.shard
            if meta is None:
                meta, home = _entry_elsewhere(store, r.shard, kvid, modality)
                if meta is None:
                    found.problems.append(f"{where}: image without a complete entry (orphan)")
                    continue
                found.strays[(meta.video_id or kvid, channel)] += 1
            else:
                seen[(kvid, channel)] += 1
            if idx >= meta.count:
                found.problems.append(f"{where}: index beyond the recorded count {meta.count}")
            if home != r.shard:
                found.problems.append(f"{where}: stored in the wrong shard (entry in shard {home})")
            image = decode_image(data) if r.decode else None
            if r.decode and image is None:
                found.problems.append(f"{where}: does not decode as an image")  # says more than its checksum
            elif has_checksums(meta):  # catches what decoding misses: changed bytes that decode
                if (kvid, channel) not in sums:
                    sums = {(kvid, channel): store.checksums(vid, channel)}
                recorded = sums[(kvid, channel)]
                problem = None if recorded is None else checksum_problem(data, recorded, idx)
                if problem:
                    found.problems.append(f"{where}: {problem}")
            size = tuple(meta.stored_size or ())
            if image is not None and size and image.shape[1::-1] != size:
                found.problems.append(f"{where}: {image.shape[1]}x{image.shape[0]}, "
                                      f"metadata says {size[0]}x{size[1]}")

        for (kvid, modality), meta in entries.items():
            vid = full[kvid]
            found.entries += 1
            found.unchecked += not has_checksums(meta)
            if meta.warning:
                found.warnings.append({"video_id": vid, "modality": modality, "warning": meta.warning})
            items: list[tuple] = []
            if store.entries_recorded(r.shard, "entries"):
                record = store.lookup(r.shard, "entries", entry_key(vid, modality))
                if record is None or record != compact_entry(meta, modality)[0]:
                    items.append(("text", f"{vid} {modality}: the store's index entry disagrees with "
                                          "its metadata (run `tsn-prep upgrade` after restoring it)"
                                  if record is not None else
                                  f"{vid} {modality}: missing from the store's index"))
            for channel in modalities.get(modality).channels:
                items.append(("count", channel, seen[(kvid, channel)], meta.count))
                if has_checksums(meta):
                    value = store.lookup(r.shard, "checksums", checksums_key(vid, channel))
                    n = 0 if value is None else len(value) // 4
                    if n != meta.count:
                        items.append(("text", f"{vid} {channel}: {n} {CHECKSUM} checksums stored, "
                                              f"metadata says {meta.count} images"))
            n = meta.num_frames
            expected = (None if n is None or meta.imported_from is not None
                        else modalities.get(modality).images_per_video(n))
            if expected is not None and meta.count != expected:
                items.append(("text", f"{vid} {modality}: {meta.count} images for {n} decoded frames "
                                      f"(expected {expected})"))
            found.entry_checks.append(((vid, modality), items))
    return found


def _entry_elsewhere(store: Store, shard: int, kvid: str, modality: Optional[str]
                     ) -> tuple[Optional[EntryMeta], int]:
    """The entry of an image with none in its own range: in the shard its id hashes to, if that
    is another one (the image is then in the wrong shard); else (None, shard)."""
    if modality is None or is_key_form(kvid):
        return None, shard
    home = shard_of(kvid, store.num_shards)
    if home == shard:
        return None, shard
    value = store.lookup(home, "meta", f"{kvid}|{modality}".encode("utf-8"))
    return (None, shard) if value is None else (EntryMeta.from_json(value), home)
