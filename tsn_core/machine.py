"""What this process may use of the machine: its cores (what SLURM's --cpus-per-task and taskset
allow, not every core the machine has)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on: SLURM's --cpus-per-task and taskset limit it, os.cpu_count() not."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
