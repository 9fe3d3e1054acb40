"""What this process may use of the machine: its cores (what SLURM's --cpus-per-task and taskset
allow, not every core the machine has) and the memory available to new processes. A leaf: every
layer that sizes threads, processes or batches reads the machine here."""
from __future__ import annotations

import ctypes
import functools
import os
from typing import Callable, Optional


def usable_cores() -> int:
    """Cores this process may run on: SLURM's --cpus-per-task and taskset limit it, os.cpu_count() not."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> Optional[int]:
    """Bytes of memory available to new processes (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def return_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``); a no-op elsewhere.
    A process that opens and closes many decoders frees their buffers, but glibc keeps the pages
    (scattered among live ones, they are never trimmed by itself), so its memory creeps up."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
