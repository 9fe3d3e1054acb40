"""The compact index in memory: each shard's ``entries`` as a sorted key buffer and a numpy array
of their records (:class:`Table`), and over all shards the Mapping (video_id, modality) -> Entry
(:class:`Index`)."""
from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional, Protocol

import numpy as np

from tsn_core import modalities
from tsn_core.errors import Damaged
from tsn_core.lmdbfile import LMDBFile
from tsn_core.meta import EntryMeta
from tsn_core.text import shown

from .index_record import DTYPE, FLAG_CHECKSUM, FLAG_WARNING, check_parameters, compact_entry, fits_key
from .keys import KEY_HASH, entry_key, full_id, is_key_form, split_entry_key
from .records import parse_record
from .shards import shard_of

class MetaReader(Protocol):
    """Where an entry's full metadata is read from (a ``Store``)."""

    def read_meta(self, shard: int, video_id: str, modality: str) -> EntryMeta: ...


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
    table: "Table" = field(repr=False, compare=False)
    reader: MetaReader = field(repr=False, compare=False)

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
        return json.loads(self.table.params[self.params_key])

    @cached_property
    def meta(self) -> EntryMeta:
        return self.reader.read_meta(self.shard, self.video_id, self.modality)


_STRIDE = 16
_SUFFIX = np.array([len(m) + 1 for m in modalities.STORED], np.int64)  # "|<modality>"


class Table:
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
        self._bounds = offsets
        self.records = np.frombuffer(records, dtype=DTYPE)
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

    def video_count(self) -> int:
        """Distinct videos of the shard: a video's entries are adjacent in key order (its key id
        then '|'), so a row starts a new video where its key id differs from the row before."""
        ends = np.asarray(self._bounds[1:]) - _SUFFIX[self.records["modality"]]
        starts = np.asarray(self._bounds[:-1])
        keys, n, prev = self.keys, 0, None
        for start, end in zip(starts.tolist(), ends.tolist()):
            kid = keys[start:end]
            if kid != prev:
                n += 1
                prev = kid
        return n


def load_table(path: Path, f: LMDBFile, dbs: dict) -> Table:
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
            if not fits_key(key, value):
                raise Damaged(str(path), f"the index record of {shown(key.decode('utf-8', 'replace'))} "
                                         "does not fit its key")
            keys += key
            lengths.append(len(key))
            records += value
        params = dict(f.items(dbs["params"]))
        check_parameters(path, params)
        table = np.frombuffer(bytes(records), dtype=DTYPE)
        for pkey in np.unique(table["params"]):
            if int(pkey).to_bytes(8, "little") not in params:
                raise Damaged(str(path), "an index record names a parameter set the shard does not hold")
        long_keys = [bytes(k) for k in _long_keys(keys, lengths)]
        metas = {k: f.get(dbs["meta"], k) for k in long_keys}
        metas = {k: parse_record(path, k, v) for k, v in metas.items() if v is not None}
    else:
        metas = {}
        for key, value in f.items(dbs["meta"]):
            vid, mod = split_entry_key(key)
            record = parse_record(path, key, value)
            packed, pkey, pvalue = compact_entry(EntryMeta.from_dict(record), mod)
            keys += key
            lengths.append(len(key))
            records += packed
            params[pkey] = pvalue
            if is_key_form(vid):
                metas[key] = record
    full_ids = {}
    for key, record in metas.items():
        kvid = split_entry_key(key)[0]
        full_ids[kvid] = full_id(kvid, record)
    return Table(keys, lengths, bytes(records), params, full_ids)


def _long_keys(keys: bytearray, lengths: array) -> Iterator[memoryview]:
    """The keys of over-long ids (their key form holds ``|sha1:``): rare, found without a loop
    over every key."""
    marker = KEY_HASH.encode()
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

    def __init__(self, reader: MetaReader, num_shards: int, tables: dict[int, Table]):
        self.reader = reader
        self.num_shards = num_shards
        self.tables = tables

    def entry_at(self, shard: int, row: int, video_id: Optional[str] = None,
                 modality: Optional[str] = None) -> Entry:
        """The entry at ``row`` of shard ``shard``'s table (its id and modality, when the caller
        knows them, spare reading them from the key)."""
        table = self.tables[shard]
        if video_id is None:
            video_id, modality = table.video_modality(row)
        r = table.records[row]
        frames = int(r["frames"])
        return Entry(video_id, modality, shard, int(r["count"]), None if frames < 0 else frames,
                     int(r["flags"]), int(r["params"]).to_bytes(8, "little"), table, self.reader)

    def warned(self) -> list[Entry]:
        """The entries stored with a warning, shard by shard in key order."""
        return [self.entry_at(shard, int(row)) for shard, table in self.tables.items()
                for row in np.flatnonzero(table.records["flags"] & FLAG_WARNING)]

    def _find(self, key) -> Optional[tuple[int, int]]:
        try:
            video_id, modality = key
            shard = shard_of(video_id, self.num_shards)
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
        return self.entry_at(*found, *key)

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
                e = self.entry_at(shard, row)
                yield (e.video_id, e.modality), e

    def values(self) -> Iterator[Entry]:  # type: ignore[override]
        return (e for _, e in self.items())
