"""The store: a directory of LMDB shards holding JPEG frames and flow, keyed by video id.

See docs/format.md for the byte-level layout. In short, OUT holds ``shard-IIIII-of-NNNNN/`` LMDB
environments with five named databases: ``images`` (``<id>|<channel>|<index:06d>`` -> JPEG),
``meta`` (``<id>|<modality>`` -> JSON), ``failures`` (``<id>|<modality>`` -> JSON), ``info`` and
``checksums`` (``<id>|<channel>`` -> the CRC-32 of every image of that channel, 4 bytes each).
A video's images for a modality, their checksums and its meta entry are written in one
transaction, so a reader (or a resumed job) sees all of a video or none of it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional

import lmdb
import numpy as np

from tsn_core import modalities
from tsn_core.errors import Damaged, StoreError
from tsn_core.lmdbfile import DB, LMDBFile
from tsn_core.meta import FORMAT_VERSION, EntryMeta
from tsn_core.text import shown, utf8

from . import readahead
from .diskspace import DiskFull, free_bytes, is_disk_full

_SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
_DBS = (b"images", b"meta", b"failures", b"info", b"checksums", b"entries", b"params")
# Stores written before checksums were recorded lack ``checksums``; readers treat it as empty.
# Stores of format 1 lack ``entries`` and ``params``: their index is read from ``meta``.
_OPTIONAL_DBS = (b"checksums", b"entries", b"params")
FOLDER_FAILURE = "folder"  # a failure record's "kind": a folder that could not be listed
INITIAL_MAP_SIZE = 1 << 28  # 256 MiB; doubled whenever a transaction finds the map full


# The checksum of every stored image: its name, as recorded in each meta entry's "checksum" field
# (absent in entries written before checksums were recorded), and the function. CRC-32 as zlib,
# gzip and PNG compute it: it catches every 1-bit and every burst error up to 32 bits, costs about
# 8 us per 19 KiB JPEG (2.3 GiB/s; docs/format.md has the measurements) and any language has it.
CHECKSUM = "crc32"
CHECK_ENV = "TSN_STORE_CHECK"  # "0" makes Store() not check what it reads (see Store)


def checksum(data: bytes) -> int:
    """The checksum recorded for an image's stored bytes: CRC-32, unsigned."""
    return zlib.crc32(data)


def pack_checksums(images: list[bytes]) -> bytes:
    """The ``checksums`` value of one channel: each image's CRC-32 as 4 bytes, big-endian, in index
    order."""
    return struct.pack(f">{len(images)}I", *map(checksum, images))


# The compact index (format 2): ``entries`` holds, under each ``meta`` key, the few fields every
# process that opens a store needs, in 18 bytes: images per channel, frames decoded (-1: not
# recorded), the id of its parameter set (``params``: id -> the parameters' JSON, each distinct set
# once), flags, the modality. Millions of entries open in seconds without parsing their JSON.
_ENTRY = struct.Struct("<IiQBB")
_ENTRY_DTYPE = [("count", "<u4"), ("frames", "<i4"), ("params", "<u8"), ("flags", "u1"), ("modality", "u1")]
FLAG_CHECKSUM, FLAG_WARNING, FLAG_IMPORTED = 1, 2, 4


def parameters_key(parameters: Optional[dict]) -> tuple[bytes, bytes]:
    """(``params`` key, value) of a parameter set: the first 8 bytes of the SHA-1 of its JSON with
    sorted keys, and that JSON. Equal parameters get the same key in every shard and writer."""
    data = json.dumps(parameters or {}, sort_keys=True).encode("utf-8")
    return hashlib.sha1(data).digest()[:8], data


def compact_entry(meta: EntryMeta, modality: str) -> tuple[bytes, bytes, bytes]:
    """(``entries`` value, ``params`` key, ``params`` value) of one entry's metadata."""
    pkey, pvalue = parameters_key(meta.parameters)
    flags = ((FLAG_CHECKSUM if meta.checksum == CHECKSUM else 0) | (FLAG_WARNING if meta.warning else 0)
             | (FLAG_IMPORTED if meta.imported_from is not None else 0))
    frames = -1 if meta.num_frames is None else meta.num_frames
    return (_ENTRY.pack(meta.count or 0, frames, int.from_bytes(pkey, "little"), flags,
                        modalities.STORED.index(modality)), pkey, pvalue)


def has_checksums(meta: EntryMeta) -> bool:
    """Whether an entry's images have checksums this version can check (stores written before
    checksums were recorded have entries without)."""
    return meta.checksum == CHECKSUM


class ChecksumError(StoreError):
    """A stored image whose bytes no longer match the checksum recorded when it was written."""


def shard_of(video_id: str, num_shards: int) -> int:
    """The shard a video belongs to: first 8 bytes of SHA-1 of its UTF-8 id, big-endian, mod N.

    Depends on the id alone, so every array job agrees on the split without talking to the others.
    An id of a file name that is not UTF-8 (it is a recorded failure, never a video) hashes its
    bytes as the file system has them.
    """
    digest = hashlib.sha1(utf8(video_id)).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


# LMDB keys are at most 511 bytes, and the longest key is ``<id>|warped_flow_x|<index>``. An id of
# more UTF-8 bytes than this is keyed by a shorter form (see ``key_id``); its entries keep the id.
MAX_KEY_ID_BYTES = 400
_KEY_HASH = "|sha1:"  # '|' never occurs in a video id (check_id), so a key form matches no real id


def key_id(video_id: str) -> str:
    """The form of ``video_id`` in store keys: the id itself, or for an id longer than
    MAX_KEY_ID_BYTES, its first bytes (whole characters) then ``|sha1:`` and the SHA-1 of all of
    it. The same for a name no video id may be (``tsn_prep.video.check_id``), which only a failure
    record keys: bytes that are not UTF-8, '|' or a newline; its printable form then ``|sha1:`` and
    the SHA-1 of its bytes. Entries and failures so keyed record the full id under ``video_id``."""
    try:
        raw = video_id.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8
        raw = None
    if raw is not None and len(raw) <= MAX_KEY_ID_BYTES and "|" not in video_id and "\n" not in video_id:
        return video_id
    keep = shown(video_id).replace("|", "/").encode("utf-8")[:MAX_KEY_ID_BYTES - len(_KEY_HASH) - 40]
    return f"{keep.decode('utf-8', 'ignore')}{_KEY_HASH}{hashlib.sha1(utf8(video_id)).hexdigest()}"


def image_key(video_id: str, channel: str, index: int) -> bytes:
    return f"{key_id(video_id)}|{channel}|{index:06d}".encode("utf-8")


def entry_key(video_id: str, modality: str) -> bytes:
    return f"{key_id(video_id)}|{modality}".encode("utf-8")


def checksums_key(video_id: str, channel: str) -> bytes:
    """The ``checksums`` key of one video's channel: ``<video_id>|<channel>``."""
    return entry_key(video_id, channel)


def record_checksum_key(video_id: str, modality: str, failure: bool = False) -> bytes:
    """The ``checksums`` key of the CRC-32 of a meta entry (``<id>|<modality>``) or of a failure
    record (``<id>|<modality>|failure``). No channel is named like a modality and no channel key
    has three fields, so these never meet an image channel's key."""
    return entry_key(video_id, modality) + (b"|failure" if failure else b"")


def record_checksum(value: bytes) -> bytes:
    """The ``checksums`` value of a record: its CRC-32, 4 bytes, big-endian."""
    return struct.pack(">I", checksum(value))


MAX_KEY_BYTES = 511  # LMDB's


def _record_checksum(key: bytes, value: bytes) -> list[tuple[str, bytes, bytes]]:
    """The put of a record's checksum; none where its key would be longer than LMDB takes (an id
    only a test makes that long: the record is then as one written before these checksums)."""
    return [("checksums", key, record_checksum(value))] if len(key) <= MAX_KEY_BYTES else []


def split_entry_key(key: bytes) -> tuple[str, str]:
    """``(key id, modality)`` of a meta or failures key; the key id is the video id unless it was
    too long for a key (then the entry's ``video_id`` field holds it)."""
    video_id, modality = key.decode("utf-8").rsplit("|", 1)
    return video_id, modality


def _full_id(key_vid: str, record: dict) -> str:
    """The video id of a meta or failure record stored under ``key_vid``."""
    return record.get("video_id", key_vid) if _KEY_HASH in key_vid else key_vid


def _with_full_id(video_id: str, record: dict) -> dict:
    """``record`` plus the full ``video_id`` when the keys hold a shorter form of it."""
    return dict(record, video_id=video_id) if key_id(video_id) != video_id else record


def list_shards(root: Path) -> list[tuple[int, int, Path]]:
    """(index, num_shards, path) of every shard directory under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), int(m.group(2)), p))
    return sorted(found)


# Read handles, one per shard path and process, shared by every Store in it. A handle is the shard's
# data.mdb read with pread through tsn_core.lmdbfile, which checks every page it follows: a damaged
# shard is a Damaged error naming it, never a signal (LMDB itself would read past a short file's
# end: SIGBUS). A file descriptor read with pread is fork-safe, so loader workers forked after the
# parent opened the store read through it as it is.
@dataclass
class _Shard:
    file: LMDBFile
    dbs: dict[str, Optional[DB]]  # name -> record; None for an optional database the shard lacks


_READERS: dict[str, _Shard] = {}
_SCANS: dict[str, int] = {}  # shard path -> scans under way in this process (Store.sequential)


def _reader(path: Path, refresh: bool = False) -> _Shard:
    """The process's read handle on a shard; ``refresh`` reads its meta pages again, so a new
    Store sees what a writer committed after an older Store opened the shard."""
    key = os.path.realpath(path)
    shard = _READERS.get(key)
    if shard is not None and refresh:
        shard.file.refresh()
        shard.dbs = _databases(shard.file, path)
    if shard is None:
        shard = _READERS[key] = _open_shard(path)
        if _SCANS.get(key):  # opened during a scan: it scans too
            readahead.advise_fd(shard.file.fd, readahead.SEQUENTIAL)
    return shard


def _open_shard(path: Path) -> _Shard:
    data = os.path.join(os.path.realpath(path), "data.mdb")
    try:  # read-ahead off: training's scattered reads (see readahead.py)
        f = LMDBFile(data, name=str(path), advice=readahead.RANDOM)
    except FileNotFoundError:
        raise Damaged(str(path), "data.mdb is missing") from None
    except OSError as exc:
        raise StoreError(f"{data}: cannot read it ({exc.strerror or exc})") from None
    try:
        return _Shard(f, _databases(f, path))
    except BaseException:
        f.close()
        raise


def _databases(f: LMDBFile, path: Path) -> dict[str, Optional[DB]]:
    """The shard's named databases; a required one missing, or a layout record that names another
    shard (a directory renamed or copied to the wrong name), is damage."""
    dbs = {}
    for name in _DBS:
        db = f.db(name)
        if db is None and name not in _OPTIONAL_DBS:
            raise Damaged(str(path), f"its database '{name.decode()}' is missing")
        dbs[name.decode()] = db
    m = _SHARD_RE.match(Path(path).name)
    layout = f.get(dbs["info"], b"layout")
    if m and layout is not None:
        try:
            record = json.loads(layout)
            recorded = (int(record["shard_index"]), int(record["num_shards"]))
        except (ValueError, KeyError, TypeError):
            raise Damaged(str(path), "its layout record is not JSON") from None
        if recorded != (int(m.group(1)), int(m.group(2))):
            raise Damaged(str(path), f"it was written as {shard_name(*recorded)} (its layout record): "
                                     "a shard directory renamed or copied under another name")
    return dbs


def _close_reader(path: Path) -> None:
    shard = _READERS.pop(os.path.realpath(path), None)
    if shard is not None:
        shard.file.close()


def check_shard(path: Path, values: bool = False) -> None:
    """Raise Damaged naming the shard ``path`` if any of its trees is not whole (``values``: every
    value read too, overflow pages included): ``tsn_core.lmdbfile.LMDBFile.check``."""
    _reader(path, refresh=True).file.check(values)


def _transaction_bytes(puts: list[tuple[str, bytes, bytes]], page: int) -> int:
    """Roughly what LMDB writes for ``puts``: a value larger than half a page gets whole overflow
    pages of its own, small ones share leaf pages; plus the copied branch and meta pages."""
    total = 4 * page
    for _, key, value in puts:
        size = len(key) + len(value) + 16
        total += -(-size // page) * page if len(value) > page // 2 else size
    return total


class ShardWriter:
    """Writes one shard. One process per shard: array job I never touches shard J's files."""

    def __init__(self, root: Path, shard_index: int = 0, num_shards: int = 1,
                 map_size: int = INITIAL_MAP_SIZE):
        if not 0 <= shard_index < num_shards:
            raise StoreError(f"--shard-index {shard_index} is outside 0..{num_shards - 1}")
        self.root = Path(root)
        existing = {n for _, n, _ in list_shards(self.root)}
        if existing - {num_shards}:
            raise StoreError(
                f"{self.root}: already holds shards of a {sorted(existing)[0]}-shard layout; "
                f"use --num-shards {sorted(existing)[0]} or a new output directory"
            )
        self.path = self.root / shard_name(shard_index, num_shards)
        self._lock: Optional[int] = None
        _close_reader(self.path)  # this process may have read the shard before writing to it
        existed = (self.path / "data.mdb").exists()
        if not existed and (self.path / "lock.mdb").exists():  # written before: its data is lost
            sys.stderr.write(f"note: {self.path}: data.mdb is missing (lost or deleted): the videos "
                             "of this shard are extracted again\n")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_shard(self.path)  # before opening: a waiting writer sees all of the first's
            if existed:
                _check_before_writing(self.path)
            self.env = lmdb.open(str(self.path), map_size=map_size, max_dbs=len(_DBS),
                                 subdir=True, readahead=False, meminit=False)
        except (OSError, lmdb.Error, Damaged) as exc:
            if self._lock is not None:
                os.close(self._lock)
            if isinstance(exc, Damaged):
                raise
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StoreError(f"{self.path}: cannot write the store here ({reason})") from None
        self.dbs = {name.decode(): self.env.open_db(name) for name in _DBS}
        self._index_old_entries()
        self._write_json("info", b"layout", {
            "format": "tsn-store", "version": FORMAT_VERSION,
            "shard_index": shard_index, "num_shards": num_shards,
        })

    def _index_old_entries(self) -> None:
        """A shard written before the compact index (format 1) gets it, in one transaction: from
        now on it is kept with every entry written (``put_video``)."""
        with self.env.begin() as txn:
            if txn.stat(self.dbs["entries"])["entries"] == txn.stat(self.dbs["meta"])["entries"]:
                return
            metas = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self.dbs["meta"])]
        puts = []
        for key, value in metas:
            try:
                meta = EntryMeta.from_json(value)
            except ValueError:
                raise StoreError(f"{self.path}: the meta entry {key.decode('utf-8', 'replace')} is not "
                                 "JSON: the store is damaged (tsn-prep verify lists what else is)") from None
            record, pkey, pvalue = compact_entry(meta, split_entry_key(key)[1])
            puts += [("entries", key, record), ("params", pkey, pvalue)]
        self._write(puts)

    def _write(self, puts: list[tuple[str, bytes, bytes]], deletes: list[tuple[str, bytes]] = ()) -> None:
        """Apply all puts and deletes in one transaction, growing the map until they fit.

        A full file system raises :class:`~tsn_prep.diskspace.DiskFull`. The transaction is then
        aborted as a whole (LMDB writes the new pages before the meta page that would point at
        them), so the shard keeps every earlier video and the same command finishes the job later.
        """
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for db, key in deletes:
                        txn.delete(key, db=self.dbs[db])
                    for db, key, value in puts:
                        txn.put(key, value, db=self.dbs[db])
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.MapResizedError:  # another process grew the map since this one opened it
                self.env.set_mapsize(0)
            except lmdb.Error as exc:
                # A short write on a full device reaches us as "Input/output error", not ENOSPC:
                # too little space left for this transaction is the telling sign.
                needed = _transaction_bytes(puts, self.env.stat()["psize"])
                if is_disk_full(exc) or free_bytes(self.path) < needed:
                    raise DiskFull(self.path, needed, "free some space and run the same command "
                                   "again: the videos stored so far are kept") from None
                raise

    def _write_json(self, db: str, key: bytes, value: dict) -> None:
        self._write([(db, key, json.dumps(value, sort_keys=True).encode("utf-8"))])

    def is_complete(self, video_id: str, modality: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(entry_key(video_id, modality), db=self.dbs["meta"]) is not None

    def put_video(self, video_id: str, modality: str, images: dict[str, list[bytes]], meta: EntryMeta) -> None:
        """Store one video's images for one modality, their checksums and its meta entry, atomically.

        Every writer (extraction, import-frames) comes through here, so every image gets its
        checksum. Any failure record for the pair is removed in the same transaction.
        """
        expected = modalities.get(modality).channels
        if set(images) != set(expected):
            raise ValueError(f"{modality} needs channels {expected}, got {sorted(images)}")
        counts = {len(v) for v in images.values()}
        if len(counts) != 1:
            raise ValueError(f"{video_id}: channels of {modality} differ in length")
        meta = replace(meta, count=counts.pop(), channels=tuple(expected), stored_at=time.time(),
                        checksum=CHECKSUM,
                        video_id=video_id if key_id(video_id) != video_id else meta.video_id)
        puts = [("images", image_key(video_id, ch, i), data)
                for ch, frames in images.items() for i, data in enumerate(frames)]
        puts += [("checksums", checksums_key(video_id, ch), pack_checksums(frames))
                 for ch, frames in images.items()]
        meta_json = meta.to_json()
        puts.append(("meta", entry_key(video_id, modality), meta_json))
        puts += _record_checksum(record_checksum_key(video_id, modality), meta_json)
        record, pkey, pvalue = compact_entry(meta, modality)
        puts += [("entries", entry_key(video_id, modality), record), ("params", pkey, pvalue)]
        # Deleting a missing key is a no-op in LMDB, so no read is needed first.
        deletes = [("failures", entry_key(video_id, modality)),
                   ("checksums", record_checksum_key(video_id, modality, failure=True))]
        # Replacing an entry (--recompute) with fewer images: the old ones past the new count go in
        # the same transaction, so no orphan is left behind.
        old_count = self.stored_count(video_id, modality)
        deletes += [("images", image_key(video_id, ch, i))
                    for ch in expected for i in range(meta.count, old_count or 0)]
        self._write(puts, deletes)

    def stored_meta(self, video_id: str, modality: str) -> Optional[EntryMeta]:
        """The meta entry of a complete (video, modality) in this shard, None if there is none."""
        key = entry_key(video_id, modality)
        with self.env.begin() as txn:
            value = txn.get(key, db=self.dbs["meta"])
        if value is None:
            return None
        try:
            return EntryMeta.from_dict(_json(self.path, key, bytes(value)))
        except (TypeError, ValueError, AttributeError):
            raise Damaged(str(self.path), f"the meta entry of {shown(video_id)} {modality} is not a "
                                          "meta record") from None

    def stored_count(self, video_id: str, modality: str) -> Optional[int]:
        meta = self.stored_meta(video_id, modality)
        return None if meta is None else meta.count

    def clear_failure(self, video_id: str, modality: str) -> None:
        """Forget an earlier failure of this pair (it has since succeeded)."""
        key = entry_key(video_id, modality)
        with self.env.begin() as txn:  # read first: an empty write transaction still syncs to disk
            if txn.get(key, db=self.dbs["failures"]) is None:
                return
        self._write([], [("failures", key),
                         ("checksums", record_checksum_key(video_id, modality, failure=True))])

    def put_failure(self, video_id: str, modality: str, source: str, error: str,
                    kind: Optional[str] = None) -> None:
        """Record that ``video_id`` failed; ``kind`` FOLDER_FAILURE: a folder of VIDEOS that could
        not be listed, recorded under its path relative to VIDEOS."""
        record = {"source": source, "error": error, "time": time.time()}
        if kind is not None:
            record["kind"] = kind
        value = json.dumps(_with_full_id(video_id, record), sort_keys=True).encode("utf-8")
        self._write([("failures", entry_key(video_id, modality), value),
                     *_record_checksum(record_checksum_key(video_id, modality, failure=True), value)])

    def clear_folder_failures(self, keep: set[str]) -> None:
        """Forget the recorded failures of folders that could not be listed (FOLDER_FAILURE), but
        for those still unlistable, ``keep`` (their ids)."""
        for vid, modality, record in self.failures():
            if record.get("kind") == FOLDER_FAILURE and vid not in keep:
                self.clear_failure(vid, modality)

    def failures(self) -> list[tuple[str, str, dict]]:
        """``(video_id, modality, record)`` of every failure recorded in this shard."""
        out = []
        with self.env.begin() as txn:
            for key, value in txn.cursor(db=self.dbs["failures"]):
                vid, mod = split_entry_key(bytes(key))
                record = _json(self.path, bytes(key), bytes(value))
                out.append((_full_id(vid, record), mod, record))
        return out

    def close(self) -> None:
        self.env.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None


def _check_before_writing(path: Path) -> None:
    """No writer writes to a damaged shard: LMDB would follow its broken pages (and die by a
    signal, or write over pages still in use). Every tree of an existing shard is walked first
    (``tsn_core.lmdbfile``: its tree pages, not the images' bytes); a data.mdb of 0 bytes is damage
    too, since a writer gives a new shard its first pages at once (an interrupted copy leaves one)."""
    try:
        f = LMDBFile(str(path / "data.mdb"), name=str(path))
    except FileNotFoundError:
        return
    try:
        f.check()
    finally:
        f.close()


def _lock_shard(path: Path) -> Optional[int]:
    """Hold an exclusive flock on a shard's data file while writing it. A second writer of the same
    shard says so and waits for the first to finish, then skips what it stored, instead of both
    doing all the work. The kernel drops the lock when a process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system: no guard
        return None
    # LMDB takes an empty data.mdb for a new one. O_RDWR: NFS emulates flock with fcntl locks.
    fd = os.open(path / "data.mdb", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.stderr.write(f"{path}: another process is writing this shard (a second tsn-prep run "
                         "with the same OUT and shard?); waiting for it to finish, then the videos "
                         "it stored are skipped\n")
        sys.stderr.flush()
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@dataclass(frozen=True)
class Entry:
    """One (video, modality) in the store: what the compact index holds, and its full metadata
    read from the shard when first asked for."""

    video_id: str
    modality: str
    shard: int
    count: int                     # images per channel
    num_frames: Optional[int]      # frames decoded (None: not recorded, e.g. an import)
    flags: int = field(repr=False)
    params_key: bytes = field(repr=False)
    store: "Store" = field(repr=False, compare=False)

    @property
    def has_checksums(self) -> bool:
        return bool(self.flags & FLAG_CHECKSUM)

    @property
    def warned(self) -> bool:
        """Stored with a warning (``meta.warning`` says which)."""
        return bool(self.flags & FLAG_WARNING)

    @property
    def parameters(self) -> dict:
        """The recorded parameters, from the shard's table of distinct sets (no metadata read)."""
        return self.store._parameters(self.shard, self.params_key)

    @cached_property
    def meta(self) -> EntryMeta:
        return self.store._meta(self.shard, self.video_id, self.modality)


_STRIDE = 16


class _Table:
    """The compact index of one shard: its ``entries`` keys, sorted, in one buffer, and their
    records in a numpy array. About 80 bytes an entry and a Python object per 16 entries (the
    sampled keys), so millions open in seconds, and loader workers forked from a process that
    opened them share the pages (workers never look up, so nothing in them is written, not even a
    reference count)."""

    def __init__(self, keys: bytearray, lengths: array, records: bytes, params: dict[bytes, bytes],
                 full_ids: dict[str, str]):
        self.keys = keys
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(np.frombuffer(lengths, np.int64), out=offsets[1:])
        self.offsets = memoryview(offsets).cast("B").cast("q")  # plain ints when indexed
        self._offsets = offsets
        self.records = np.frombuffer(records, dtype=_ENTRY_DTYPE)
        self.params = params           # parameter-set key -> JSON
        self.full_ids = full_ids       # key form -> id, for ids too long for a key
        # every _STRIDE-th key as bytes (about 5 bytes an entry): a lookup bisects these in C and
        # then takes log2(_STRIDE) steps in Python instead of log2(N) (validating a list of 650k
        # videos looks up each of them twice). Loader workers never look up, so never touch it.
        self.sample = [self.key(row) for row in range(0, len(self.records), _STRIDE)]

    def __len__(self) -> int:
        return len(self.records)

    def key(self, row: int) -> bytes:
        return bytes(self.keys[self.offsets[row]:self.offsets[row + 1]])

    def find(self, key: bytes) -> Optional[int]:
        block = bisect_right(self.sample, key) - 1  # the block whose first key is the last <= key
        if block < 0:
            return None
        lo = block * _STRIDE
        hi = min(lo + _STRIDE, len(self.records))
        keys, offsets = self.keys, self.offsets
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[offsets[mid]:offsets[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self.records) and keys[offsets[lo]:offsets[lo + 1]] == key else None

    def video_modality(self, row: int) -> tuple[str, str]:
        kvid, mod = split_entry_key(self.key(row))
        return self.full_ids.get(kvid, kvid), mod


_MODALITY_SUFFIX = [f"|{m}".encode() for m in modalities.STORED]  # an entry key's end, per code


def _load_table(path: Path, f: LMDBFile, dbs: dict) -> _Table:
    """A shard's compact index: from ``entries`` where it is complete, else (a shard written
    before it, format 1) from the metadata itself, which takes the JSON parse of every entry. A
    record that cannot be the index record of its key (its size, modality or parameter set) is
    damage."""
    keys, lengths, records = bytearray(), array("q"), bytearray()
    params: dict[bytes, bytes] = {}
    long_keys = []
    n = dbs["meta"].entries
    if dbs["entries"] is not None and dbs["entries"].entries == n:
        for key, value in f.items(dbs["entries"]):
            if len(value) != _ENTRY.size or value[-1] >= len(_MODALITY_SUFFIX) \
                    or not key.endswith(_MODALITY_SUFFIX[value[-1]]):
                raise Damaged(str(path), f"the index record of {shown(key.decode('utf-8', 'replace'))} "
                                         "does not fit its key")
            keys += key
            lengths.append(len(key))
            records += value
        params = dict(f.items(dbs["params"]))
        check_parameters(path, params)
        table = np.frombuffer(bytes(records), dtype=_ENTRY_DTYPE)
        for pkey in np.unique(table["params"]):
            if int(pkey).to_bytes(8, "little") not in params:
                raise Damaged(str(path), "an index record names a parameter set the shard does not hold")
        long_keys = [bytes(k) for k in _long_keys(keys, lengths)]
        metas = {k: f.get(dbs["meta"], k) for k in long_keys}
        metas = {k: _json(path, k, v) for k, v in metas.items() if v is not None}
    else:
        metas = {}
        for key, value in f.items(dbs["meta"]):
            vid, mod = split_entry_key(key)
            record = _json(path, key, value)
            packed, pkey, pvalue = compact_entry(EntryMeta.from_dict(record), mod)
            keys += key
            lengths.append(len(key))
            records += packed
            params[pkey] = pvalue
            if _KEY_HASH in vid:
                metas[key] = record
    full_ids = {}
    for key, record in metas.items():
        kvid = split_entry_key(key)[0]
        full_ids[kvid] = _full_id(kvid, record)
    return _Table(keys, lengths, bytes(records), params, full_ids)


def check_parameters(path: Path, params: dict[bytes, bytes]) -> None:
    """Damaged unless every parameter set of a shard is keyed by its own hash (``parameters_key``):
    a changed byte in one shows."""
    for pkey, pvalue in params.items():
        try:
            same = parameters_key(json.loads(pvalue))[0] == pkey
        except ValueError:
            same = False
        if not same:
            raise Damaged(str(path), "a recorded parameter set does not match its key: its bytes "
                                     "have changed")


def _json(path: Path, key: bytes, value: bytes) -> dict:
    """A meta entry's record; one that is not a JSON object is damage."""
    try:
        record = json.loads(value)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        kvid, mod = split_entry_key(key)
        raise Damaged(str(path), f"the meta entry of {shown(kvid)} {mod} is not JSON")
    return record


def _long_keys(keys: bytearray, lengths: array) -> Iterator[memoryview]:
    """The keys of over-long ids (their key form holds ``|sha1:``): rare, found without a loop
    over every key."""
    marker = _KEY_HASH.encode()
    start = keys.find(marker)
    if start < 0:
        return
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(np.frombuffer(lengths, np.int64), out=offsets[1:])
    view = memoryview(keys)
    while start >= 0:
        row = int(np.searchsorted(offsets, start, side="right")) - 1
        yield view[offsets[row]:offsets[row + 1]]
        start = keys.find(marker, int(offsets[row + 1]))


class Index(Mapping):
    """(video_id, modality) -> Entry for everything complete in a store, over the shards' compact
    tables. A lookup is a binary search in the video's shard; iteration goes shard by shard in
    key order."""

    def __init__(self, store: "Store", tables: dict[int, _Table]):
        self.store = store
        self.tables = tables

    def _entry(self, shard: int, row: int, video_id: Optional[str] = None,
               modality: Optional[str] = None) -> Entry:
        table = self.tables[shard]
        if video_id is None:
            video_id, modality = table.video_modality(row)
        r = table.records[row]
        frames = int(r["frames"])
        return Entry(video_id, modality, shard, int(r["count"]), None if frames < 0 else frames,
                     int(r["flags"]), int(r["params"]).to_bytes(8, "little"), self.store)

    def _find(self, key) -> Optional[tuple[int, int]]:
        try:
            video_id, modality = key
            shard = shard_of(video_id, self.store.num_shards)
        except (TypeError, ValueError, AttributeError):
            return None
        table = self.tables.get(shard)
        row = None if table is None else table.find(entry_key(video_id, modality))
        return None if row is None else (shard, row)

    def count(self, video_id: str, modality: str) -> Optional[int]:
        """Images per channel of an entry, None if the store has none: one lookup, no Entry made
        (validating a list of a million videos)."""
        found = self._find((video_id, modality))
        return None if found is None else int(self.tables[found[0]].records["count"][found[1]])

    def __getitem__(self, key) -> Entry:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return self._entry(*found, *key)

    def __contains__(self, key) -> bool:
        return self._find(key) is not None

    def __len__(self) -> int:
        return sum(map(len, self.tables.values()))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for shard in sorted(self.tables):
            table = self.tables[shard]
            for row in range(len(table)):
                yield table.video_modality(row)

    def items(self) -> Iterator[tuple[tuple[str, str], Entry]]:  # type: ignore[override]
        for shard in sorted(self.tables):
            for row in range(len(self.tables[shard])):
                e = self._entry(shard, row)
                yield (e.video_id, e.modality), e

    def values(self) -> Iterator[Entry]:  # type: ignore[override]
        return (e for _, e in self.items())


class Store:
    """Read-only view of every shard under ``root``.

    Shards are opened when first read, once per process (a DataLoader worker forked after the
    parent opened one reads through the same file descriptor), through ``tsn_core.lmdbfile``: a
    damaged shard raises ``Damaged`` naming it, when it is opened or when the damaged part is
    read. The index of entries is read once; make a new Store to see entries committed later.

    ``check=True`` compares every image read (``get``, ``read``) with the checksum recorded when
    it was written and raises :class:`ChecksumError` on a mismatch (a few us per image, about 1%
    of decoding it), so a damaged image is an error, never a picture of garbage trained on or
    exported. Images of entries written before checksums were recorded are returned unchecked.
    ``check=None`` (the default) takes it from the environment, on unless ``TSN_STORE_CHECK=0``
    (for every Store a process and its loader workers open, e.g. tsn-train's).
    """

    def __init__(self, root: Path, check: Optional[bool] = None):
        self.root = Path(root)
        self.check = _env_flag(CHECK_ENV, True) if check is None else bool(check)
        shards = list_shards(self.root)
        if not shards:
            raise StoreError(f"{self.root}: not a tsn store (no shard-*-of-* directories)"
                             + _videos_hint(self.root))
        sizes = {n for _, n, _ in shards}
        if len(sizes) != 1:
            raise StoreError(f"{self.root}: mixes shard layouts {sorted(sizes)}")
        self.num_shards = sizes.pop()
        self.shard_paths = {i: p for i, _, p in shards}
        self._index: Optional[Index] = None
        self._full_ids: dict[str, str] = {}  # key form -> id, for ids too long for a key
        self._opened: set[int] = set()       # shards this Store has read (their meta pages anew)

    def shard(self, shard: int) -> "_Shard":
        """Shard ``shard``'s read handle (``file``, an LMDBFile, and its ``dbs``); Damaged if the
        shard cannot be read."""
        if shard not in self._opened:
            self._opened.add(shard)
            return _reader(self.shard_paths[shard], refresh=True)
        return _reader(self.shard_paths[shard])

    def _scan(self, db: str) -> Iterator[tuple[int, bytes, bytes]]:
        for shard in sorted(self.shard_paths):
            yield from ((shard, key, value) for key, value in self.scan(shard, db))

    def scan(self, shard: int, db: str, lo: bytes = b"", hi: Optional[bytes] = None,
             values: bool = True) -> Iterator[tuple[bytes, Optional[bytes]]]:
        """``(key, value)`` of database ``db`` of one shard, ``lo <= key < hi``, in key order
        (nothing for an optional database the shard lacks); values None unless ``values``."""
        sh = self.shard(shard)
        if sh.dbs[db] is not None:
            yield from sh.file.items(sh.dbs[db], lo, hi, values)

    def lookup(self, shard: int, db: str, key: bytes) -> Optional[bytes]:
        """The value of ``key`` in database ``db`` of one shard, None if absent."""
        sh = self.shard(shard)
        return None if sh.dbs[db] is None else sh.file.get(sh.dbs[db], key)

    def entries_recorded(self, shard: int, db: str) -> int:
        """How many entries database ``db`` of a shard holds, as its record says (0 if absent)."""
        sh = self.shard(shard)
        return 0 if sh.dbs[db] is None else sh.dbs[db].entries

    @property
    def index(self) -> Index:
        """(video_id, modality) -> Entry for everything complete in the store (a Mapping)."""
        if self._index is None:
            tables = {shard: _load_table(path, self.shard(shard).file, self.shard(shard).dbs)
                      for shard, path in self.shard_paths.items()}
            for table in tables.values():
                self._full_ids.update(table.full_ids)
            self._index = Index(self, tables)
        return self._index

    def _meta(self, shard: int, video_id: str, modality: str) -> EntryMeta:
        key = entry_key(video_id, modality)
        value = self.lookup(shard, "meta", key)
        if value is None:
            raise KeyError(f"{video_id!r} has no {modality} in {self.root}")
        self.check_record(shard, record_checksum_key(video_id, modality), value,
                          f"the meta entry of {shown(video_id)} {modality}")
        try:
            return EntryMeta.from_dict(_json(self.shard_paths[shard], key, value))
        except (TypeError, ValueError):
            raise Damaged(str(self.shard_paths[shard]), f"the meta entry of {shown(video_id)} "
                                                        f"{modality} is not a meta record") from None

    def _parameters(self, shard: int, key: bytes) -> dict:
        return json.loads(self.index.tables[shard].params[key])

    def videos(self, modality: str) -> list[str]:
        return sorted(vid for vid, mod in self.index if mod == modality)

    def modalities(self) -> list[str]:
        return sorted({mod for _, mod in self.index})

    def entry(self, video_id: str, modality: str) -> Entry:
        try:
            return self.index[(video_id, modality)]
        except KeyError:
            raise KeyError(f"{video_id!r} has no {modality} in {self.root}") from None

    def get(self, video_id: str, channel: str, index: int, modality: Optional[str] = None,
            check: Optional[bool] = None) -> bytes:
        """The JPEG bytes of one image; ``index`` is 0-based. ``check`` overrides the Store's."""
        if modality is None:
            modality = modalities.CHANNEL_MODALITY[channel]
        entry = self.entry(video_id, modality)
        try:
            return self.read(video_id, channel, [index], check)[0]
        except KeyError:
            raise KeyError(f"{video_id!r} has no {channel} image {index} (count {entry.count})") from None

    def read(self, video_id: str, channel: str, indices: list[int],
             check: Optional[bool] = None) -> list[bytes]:
        """Several images of one video in one transaction, without consulting the index: the
        shard follows from the id. Raises KeyError naming the first absent image, and with
        ``check`` (default: the Store's) ChecksumError naming the first damaged one."""
        shard = shard_of(video_id, self.num_shards)
        sh = self.shard(shard)
        f, images = sh.file, sh.dbs["images"]
        out = []
        sums = None
        if (self.check if check is None else check) and sh.dbs["checksums"] is not None:
            sums = f.get(sh.dbs["checksums"], checksums_key(video_id, channel))
        for i in indices:
            data = f.get(images, image_key(video_id, channel, i))
            if data is None:
                self._missing(shard, video_id, channel, i)
            if sums is not None:  # None: written before checksums were recorded
                problem = checksum_problem(data, sums, i)
                if problem:
                    raise ChecksumError(f"{self.shard_paths[shard]}: {video_id} {channel} {i}: {problem}")
            out.append(data)
        return out

    def _missing(self, shard: int, video_id: str, channel: str, i: int) -> None:
        """An image that is not there: damage when its entry says it should be (the entry is
        complete, and its count is past ``i``), else the caller's KeyError."""
        entry = self.index.get((video_id, modalities.CHANNEL_MODALITY.get(channel)))
        if entry is not None and 0 <= i < entry.count:
            raise Damaged(str(self.shard_paths[shard]), f"{shown(video_id)} {channel} image {i} is "
                                                        f"missing (its entry holds {entry.count})")
        raise KeyError(f"{self.root}: {video_id!r} has no {channel} image {i}")

    def checksums(self, video_id: str, channel: str) -> Optional[bytes]:
        """The ``checksums`` value of a video's channel, None if none is stored."""
        return self.lookup(shard_of(video_id, self.num_shards), "checksums",
                           checksums_key(video_id, channel))

    @contextlib.contextmanager
    def sequential(self) -> Iterator["Store"]:
        """Reads inside go through the store in file order (a whole-store scan, e.g. verify or
        export): the kernel reads each shard ahead of them, one large request where there would
        be one 4 KiB page fault after another. Outside, a read fetches only its own pages, as
        training's scattered reads want. Affects this process's reads of these shards."""
        keys = [os.path.realpath(p) for p in self.shard_paths.values()]
        for key in keys:
            _SCANS[key] = _SCANS.get(key, 0) + 1
            _advise(key, readahead.SEQUENTIAL)
        try:
            yield self
        finally:
            for key in keys:
                _SCANS[key] -= 1
                if not _SCANS[key]:
                    del _SCANS[key]
                    _advise(key, readahead.RANDOM)

    def iter_images(self) -> Iterator[tuple[int, str, str, int, bytes]]:
        """Every stored image as (shard, video_id, channel, index, bytes), shard by shard, read
        ahead (see :meth:`sequential`)."""
        with self.sequential():
            self.index  # noqa: B018 - reading the index learns the key forms of over-long ids
            for shard, key, value in self._scan("images"):
                vid, channel, idx = key.decode("utf-8").rsplit("|", 2)
                yield shard, self._full_ids.get(vid, vid), channel, int(idx), value

    def failures(self) -> list[dict]:
        """Every recorded failure of every shard (``failures_of``)."""
        return [f for shard in sorted(self.shard_paths) for f in self.failures_of(shard)]

    def failures_of(self, shard: int) -> list[dict]:
        """The failures recorded in one shard: each record with its ``video_id``, ``modality``
        and ``shard``."""
        out = []
        for key, value in self.scan(shard, "failures"):
            vid, mod = split_entry_key(key)
            self.check_record(shard, key + b"|failure", value, f"the failure record of {shown(vid)} {mod}")
            record = _json(self.shard_paths[shard], key, value)
            out.append(dict(record, video_id=_full_id(vid, record), modality=mod, shard=shard))
        return out

    def check_record(self, shard: int, sum_key: bytes, value: bytes, what: str) -> None:
        """Damaged when a record's CRC-32 is stored under ``sum_key`` and does not match ``value``
        (records written before these checksums have none, and are not checked)."""
        recorded = self.lookup(shard, "checksums", sum_key)
        if recorded is not None and recorded != record_checksum(value):
            raise Damaged(str(self.shard_paths[shard]), f"{what} does not match its checksum: its "
                                                        "bytes have changed")

    def shard_bytes(self, shard: int) -> int:
        return sum(f.stat().st_size for f in self.shard_paths[shard].iterdir() if f.is_file())

    def disk_bytes(self) -> int:
        return sum(self.shard_bytes(i) for i in self.shard_paths)

    def close(self) -> None:
        for path in self.shard_paths.values():
            _close_reader(path)
        self._index = None


def _videos_hint(root: Path, look: int = 2000) -> str:
    """What to do when ``root`` holds videos instead of a store (mmaction2 reads videos; a tsn
    store is made from them first), or ''. Looks at no more than ``look`` entries."""
    from .video import VIDEO_EXTENSIONS

    seen = 0
    for _, dirs, files in os.walk(root):
        if any(os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS for f in files):
            return (f"; it holds videos: extract them into a store first, e.g. `tsn-prep extract-frames "
                    f"{root} STORE` (and `tsn-prep extract-flow {root} STORE` for flow), then give "
                    "the store")
        seen += len(dirs) + len(files)
        if seen > look:
            break
    return ""


def _advise(key: str, advice: Optional[int]) -> None:
    """Read-ahead advice for a shard this process has open (a shard opened later gets it from
    ``_SCANS`` when it opens)."""
    shard = _READERS.get(key)
    if shard is not None:
        readahead.advise_fd(shard.file.fd, advice)


def checksum_problem(data: bytes, sums: bytes, index: int) -> Optional[str]:
    """What is wrong with image ``index`` given its channel's ``checksums`` value, or None."""
    if len(sums) < 4 * (index + 1):
        return f"no checksum recorded ({len(sums) // 4} for this channel)"
    recorded = int.from_bytes(sums[4 * index: 4 * index + 4], "big")
    actual = checksum(data)
    if actual != recorded:
        return (f"checksum mismatch ({CHECKSUM} {actual:08x}, recorded {recorded:08x} when written): "
                f"the stored bytes have changed")
    return None


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")
