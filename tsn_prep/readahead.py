"""Read-ahead advice for this process's memory maps of a file (Linux; a no-op elsewhere).

The store's readers map each shard with read-ahead off (LMDB's ``MDB_NORDAHEAD``, i.e.
``MADV_RANDOM``), which is right for training's scattered reads: a fault fetches one 4 KiB page,
where the default read-around would fetch ``read_ahead_kb`` (often megabytes) per fault. A scan of
the whole store (``verify``, ``export``) reads in file order, and there one synchronous 4 KiB read
per fault is what makes it slow: with read-ahead, a cold ``verify`` ran 2.5x and ``export`` 5x
faster on this machine (docs/performance.md). :func:`advise` switches a file's maps between the
two.
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import os
from typing import Optional

SEQUENTIAL = getattr(mmap, "MADV_SEQUENTIAL", None)
RANDOM = getattr(mmap, "MADV_RANDOM", None)
_MAPS = "/proc/self/maps"


def mappings(path: str) -> list[tuple[int, int]]:
    """(start, length) of every mapping of ``path`` in this process, from /proc/self/maps;
    empty where that file does not exist (not Linux) or the file is not mapped."""
    try:
        st = os.stat(path)
        with open(_MAPS) as f:
            lines = f.readlines()
    except OSError:
        return []
    real = os.path.realpath(path)
    out = []
    for line in lines:
        # start-end perms offset dev inode path (the path may contain spaces)
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[5].rstrip("\n") != real or int(parts[4]) != st.st_ino:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append((start, end - start))
    return out


@functools.lru_cache(maxsize=None)
def _madvise():
    """libc's ``madvise``, or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


def advise(path: str, advice: Optional[int]) -> bool:
    """Give ``advice`` (:data:`SEQUENTIAL` or :data:`RANDOM`) for every map of ``path`` in this
    process; True when at least one map took it. Advice only changes how pages are fetched, never
    what is read, so where it cannot be given (no /proc, no ``madvise``) this does nothing."""
    fn = _madvise() if advice is not None else None
    if fn is None:
        return False
    done = False
    for start, length in mappings(path):
        done |= fn(start, length, advice) == 0
    return done
