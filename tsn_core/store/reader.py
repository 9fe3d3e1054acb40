"""The read face of a store: :class:`Store`, a read-only view of every shard under a root."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from tsn_core import modalities
from tsn_core.errors import Damaged, StoreError
from tsn_core.meta import EntryMeta
from tsn_core.text import shown
from tsn_core.video_files import VIDEO_EXTENSIONS

from . import handles
from .checksums import ChecksumError, checksum_problem, record_checksum
from .keys import (checksums_key, entry_key, failure_checksum_key, image_key, record_checksum_key,
                   split_entry_key, split_image_key)
from .records import Failure, parse_meta
from .shards import list_shards, shard_of
from .table import Entry, Index, load_table

CHECK_ENV = "TSN_STORE_CHECK"  # "0" makes Store() not check what it reads (see Store)


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

    Per shard, ``scan``, ``lookup`` and ``entries_recorded`` read its databases as they are (what
    ``tsn-prep verify`` checks), ``failures_of`` its failure records and ``check_shard`` its trees.
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

    def _shard(self, shard: int) -> handles.ShardFile:
        """Shard ``shard``'s read handle; Damaged if the shard cannot be read."""
        if shard not in self._opened:
            self._opened.add(shard)
            return handles.reader(self.shard_paths[shard], refresh=True)
        return handles.reader(self.shard_paths[shard])

    def check_shard(self, shard: int, values: bool = False) -> None:
        """Damaged naming the shard if any of its trees is not whole (``values``: every value read
        too): ``tsn_core.lmdbfile.LMDBFile.check``."""
        self._shard(shard).file.check(values)

    def scan(self, shard: int, db: str, lo: bytes = b"", hi: Optional[bytes] = None,
             values: bool = True) -> Iterator[tuple[bytes, Optional[bytes]]]:
        """``(key, value)`` of database ``db`` of one shard, ``lo <= key < hi``, in key order
        (nothing for an optional database the shard lacks); values None unless ``values``."""
        sh = self._shard(shard)
        if sh.dbs[db] is not None:
            yield from sh.file.items(sh.dbs[db], lo, hi, values)

    def lookup(self, shard: int, db: str, key: bytes) -> Optional[bytes]:
        """The value of ``key`` in database ``db`` of one shard, None if absent."""
        sh = self._shard(shard)
        return None if sh.dbs[db] is None else sh.file.get(sh.dbs[db], key)

    def entries_recorded(self, shard: int, db: str) -> int:
        """How many entries database ``db`` of a shard holds, as its record says (0 if absent)."""
        sh = self._shard(shard)
        return 0 if sh.dbs[db] is None else sh.dbs[db].entries

    @property
    def index(self) -> Index:
        """(video_id, modality) -> Entry for everything complete in the store (a Mapping)."""
        if self._index is None:
            tables = {shard: load_table(path, self._shard(shard).file, self._shard(shard).dbs)
                      for shard, path in self.shard_paths.items()}
            for table in tables.values():
                self._full_ids.update(table.full_ids)
            self._index = Index(self, self.num_shards, tables)
        return self._index

    def read_meta(self, shard: int, video_id: str, modality: str) -> EntryMeta:
        """The full metadata of an entry in shard ``shard``, its checksum checked."""
        key = entry_key(video_id, modality)
        value = self.lookup(shard, "meta", key)
        if value is None:
            raise KeyError(f"{video_id!r} has no {modality} in {self.root}")
        self.check_record(shard, record_checksum_key(video_id, modality), value,
                          f"the meta entry of {shown(video_id)} {modality}")
        return parse_meta(self.shard_paths[shard], key, value, video_id)

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
        sh = self._shard(shard)
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
        with handles.sequential(self.shard_paths.values()):
            yield self

    def iter_images(self) -> Iterator[tuple[int, str, str, int, bytes]]:
        """Every stored image as (shard, video_id, channel, index, bytes), shard by shard, read
        ahead (see :meth:`sequential`)."""
        with self.sequential():
            self.index  # noqa: B018 - reading the index learns the key forms of over-long ids
            for shard in sorted(self.shard_paths):
                for key, value in self.scan(shard, "images"):
                    vid, channel, idx = split_image_key(key)
                    yield shard, self._full_ids.get(vid, vid), channel, idx, value

    def failures(self) -> list[Failure]:
        """Every recorded failure of every shard (``failures_of``)."""
        return [f for shard in sorted(self.shard_paths) for f in self.failures_of(shard)]

    def failures_of(self, shard: int) -> list[Failure]:
        """The failures recorded in one shard, each record's checksum checked."""
        out = []
        for key, value in self.scan(shard, "failures"):
            kvid, mod = split_entry_key(key)
            self.check_record(shard, failure_checksum_key(key), value, f"the failure record of {shown(kvid)} {mod}")
            out.append(Failure.from_record(self.shard_paths[shard], key, value, shard))
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
            handles.close_reader(path)
        self._index = None


def _videos_hint(root: Path, look: int = 2000) -> str:
    """What to do when ``root`` holds videos instead of a store (mmaction2 reads videos; a tsn
    store is made from them first), or ''. Looks at no more than ``look`` entries."""
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


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")
