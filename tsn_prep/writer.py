"""The store's writer: one process per shard writes it (:class:`ShardWriter`), under an exclusive
lock, each video in one transaction. The format it writes, and the reader, are ``tsn_core.store``
(docs/format.md has the byte-level layout)."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import lmdb

from tsn_core import modalities
from tsn_core.diskspace import DiskFull, free_bytes, is_disk_full
from tsn_core.errors import Damaged, StoreError
from tsn_core.lmdbfile import LMDBFile
from tsn_core.meta import FORMAT_VERSION, EntryMeta
from tsn_core.store.checksums import CHECKSUM, pack_checksums, record_checksum
from tsn_core.store.handles import close_reader
from tsn_core.store.index_record import compact_entry
from tsn_core.store.keys import (MAX_KEY_BYTES, checksums_key, entry_key, image_key, key_id, record_checksum_key,
                                 split_entry_key, with_full_id)
from tsn_core.store.records import FOLDER_FAILURE, Failure, parse_meta
from tsn_core.store.shards import DATABASES, LAYOUT_KEY, layout_record, list_shards, shard_name

INITIAL_MAP_SIZE = 1 << 28  # 256 MiB; doubled whenever a transaction finds the map full


def _record_checksum(key: bytes, value: bytes) -> list[tuple[str, bytes, bytes]]:
    """The put of a record's checksum; none where its key would be longer than LMDB takes (an id
    only a test makes that long: the record is then as one written before these checksums)."""
    return [("checksums", key, record_checksum(value))] if len(key) <= MAX_KEY_BYTES else []


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
        self.shard_index = shard_index
        self.path = self.root / shard_name(shard_index, num_shards)
        self._lock: Optional[int] = None
        close_reader(self.path)  # this process may have read the shard before writing to it
        existed = (self.path / "data.mdb").exists()
        if not existed and (self.path / "lock.mdb").exists():  # written before: its data is lost
            sys.stderr.write(f"note: {self.path}: data.mdb is missing (lost or deleted): the videos "
                             "of this shard are extracted again\n")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_shard(self.path)  # before opening: a waiting writer sees all of the first's
            if existed:
                _check_before_writing(self.path)
            self.env = lmdb.open(str(self.path), map_size=map_size, max_dbs=len(DATABASES),
                                 subdir=True, readahead=False, meminit=False)
        except (OSError, lmdb.Error, Damaged) as exc:
            if self._lock is not None:
                os.close(self._lock)
            if isinstance(exc, Damaged):
                raise
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StoreError(f"{self.path}: cannot write the store here ({reason})") from None
        self.dbs = {name.decode(): self.env.open_db(name) for name in DATABASES}
        self._index_old_entries()
        self._write_json("info", LAYOUT_KEY, layout_record(shard_index, num_shards, FORMAT_VERSION))

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

        A full file system raises :class:`~tsn_core.diskspace.DiskFull`. The transaction is then
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
        return None if value is None else parse_meta(self.path, key, bytes(value), video_id)

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
        value = json.dumps(with_full_id(video_id, record), sort_keys=True).encode("utf-8")
        self._write([("failures", entry_key(video_id, modality), value),
                     *_record_checksum(record_checksum_key(video_id, modality, failure=True), value)])

    def clear_folder_failures(self, keep: set[str]) -> None:
        """Forget the recorded failures of folders that could not be listed (FOLDER_FAILURE), but
        for those still unlistable, ``keep`` (their ids)."""
        for f in self.failures():
            if f.kind == FOLDER_FAILURE and f.video_id not in keep:
                self.clear_failure(f.video_id, f.modality)

    def failures(self) -> list[Failure]:
        """Every failure recorded in this shard."""
        with self.env.begin() as txn:
            return [Failure.from_record(self.path, bytes(key), bytes(value), self.shard_index)
                    for key, value in txn.cursor(db=self.dbs["failures"])]

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
