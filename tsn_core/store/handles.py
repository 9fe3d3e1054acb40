"""Read handles on shards, one per shard path and process, shared by every Store in it.

A handle is the shard's data.mdb read with pread through ``tsn_core.lmdbfile``, which checks every
page it follows: a damaged shard is a Damaged error naming it, never a signal (LMDB itself would
read past a short file's end: SIGBUS). A file descriptor read with pread is fork-safe, so loader
workers forked after the parent opened the store read through it as it is.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from tsn_core import readahead
from tsn_core.errors import Damaged, StoreError
from tsn_core.lmdbfile import DB, LMDBFile

from .shards import DATABASES, LAYOUT_KEY, OPTIONAL_DATABASES, check_layout


@dataclass
class ShardFile:
    """One shard's data file and its named databases."""

    file: LMDBFile
    dbs: dict[str, Optional[DB]]  # name -> record; None for an optional database the shard lacks


_READERS: dict[str, ShardFile] = {}
_SCANS: dict[str, int] = {}  # shard path -> scans under way in this process (``sequential``)


def reader(path: Path, refresh: bool = False) -> ShardFile:
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


def _open_shard(path: Path) -> ShardFile:
    data = os.path.join(os.path.realpath(path), "data.mdb")
    try:  # read-ahead off: training's scattered reads (see readahead.py)
        f = LMDBFile(data, name=str(path), advice=readahead.RANDOM)
    except FileNotFoundError:
        raise Damaged(str(path), "data.mdb is missing") from None
    except OSError as exc:
        raise StoreError(f"{data}: cannot read it ({exc.strerror or exc})") from None
    try:
        return ShardFile(f, _databases(f, path))
    except BaseException:
        f.close()
        raise


def _databases(f: LMDBFile, path: Path) -> dict[str, Optional[DB]]:
    """The shard's named databases; a required one missing, or a layout record that names another
    shard (a directory renamed or copied to the wrong name), is damage."""
    dbs = {}
    for name in DATABASES:
        db = f.db(name)
        if db is None and name not in OPTIONAL_DATABASES:
            raise Damaged(str(path), f"its database '{name.decode()}' is missing")
        dbs[name.decode()] = db
    check_layout(path, f.get(dbs["info"], LAYOUT_KEY))
    return dbs


def close_reader(path: Path) -> None:
    """Close this process's read handle on a shard, if it has one (a writer about to change it)."""
    shard = _READERS.pop(os.path.realpath(path), None)
    if shard is not None:
        shard.file.close()


def check_shard(path: Path, values: bool = False) -> None:
    """Raise Damaged naming the shard ``path`` if any of its trees is not whole (``values``: every
    value read too, overflow pages included): ``tsn_core.lmdbfile.LMDBFile.check``."""
    reader(path, refresh=True).file.check(values)


@contextlib.contextmanager
def sequential(paths: Iterable[Path]) -> Iterator[None]:
    """Reads inside go through the shards at ``paths`` in file order: the kernel reads each ahead
    of them. Outside, a read fetches only its own pages. Affects this process's reads."""
    keys = [os.path.realpath(p) for p in paths]
    for key in keys:
        _SCANS[key] = _SCANS.get(key, 0) + 1
        _advise(key, readahead.SEQUENTIAL)
    try:
        yield
    finally:
        for key in keys:
            _SCANS[key] -= 1
            if not _SCANS[key]:
                del _SCANS[key]
                _advise(key, readahead.RANDOM)


def _advise(key: str, advice: Optional[int]) -> None:
    """Read-ahead advice for a shard this process has open (a shard opened later gets it from
    ``_SCANS`` when it opens)."""
    shard = _READERS.get(key)
    if shard is not None:
        readahead.advise_fd(shard.file.fd, advice)
