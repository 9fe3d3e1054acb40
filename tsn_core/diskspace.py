"""Running out of disk space: recognised wherever it surfaces, reported in one line."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Optional

# ENOSPC (device full) and EDQUOT (quota reached) both mean "free some space, then run again".
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError of a full device or quota, and for LMDB's wording of the same (py-lmdb
    raises ``lmdb.Error`` carrying strerror's text, not an OSError)."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    return any(text in str(exc) for text in _FULL_TEXT)


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


class DiskFull(OSError):
    """The file system holding ``path`` filled up; the message is the one line a user needs."""

    def __init__(self, path: Path, needed: Optional[int] = None,
                 then: str = "free some space and run the same command again"):
        self.path, self.needed, self.free = Path(path), needed, free_bytes(path)
        need = "" if needed is None else f"about {_mb(needed)} more needed, "
        super().__init__(errno.ENOSPC, f"{self.path}: no space left on its file system: {need}"
                         f"{_mb(self.free)} free; {then}")

    def __str__(self) -> str:
        return self.args[1]
