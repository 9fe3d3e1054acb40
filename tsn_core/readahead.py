"""Read-ahead advice for a file this process reads (Linux's ``posix_fadvise``; a no-op elsewhere).

The store's readers read each shard's data.mdb with ``pread`` (``tsn_core.lmdbfile``). Training
reads a few scattered images per video: there the kernel's read-ahead only fetches pages nobody
wants, so readers open a shard with :data:`RANDOM` advice (a read fetches just its own pages). A
scan of the whole store (``verify``, ``export``) reads in file order, and there read-ahead is what
makes a cold scan fast (docs/performance.md: 2.5x for ``verify``, 5x for ``export``, measured when
the readers mapped the file and gave the same advice with ``madvise``): :func:`advise_fd` switches
a file to :data:`SEQUENTIAL` for the scan and back.
"""
from __future__ import annotations

import os
from typing import Optional

SEQUENTIAL = getattr(os, "POSIX_FADV_SEQUENTIAL", None)
RANDOM = getattr(os, "POSIX_FADV_RANDOM", None)
NORMAL = getattr(os, "POSIX_FADV_NORMAL", None)


def advise_fd(fd: int, advice: Optional[int]) -> bool:
    """Give ``advice`` (:data:`SEQUENTIAL`, :data:`RANDOM` or :data:`NORMAL`) for the whole file
    open as ``fd``; True when the kernel took it. Advice only changes how pages are fetched, never
    what is read, so where it cannot be given this does nothing."""
    if advice is None or not hasattr(os, "posix_fadvise"):
        return False
    try:
        os.posix_fadvise(fd, 0, 0, advice)
    except OSError:
        return False
    return True
