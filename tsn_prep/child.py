"""What every helper process of a run does first: die with the run, leave Ctrl-C and SIGTERM to it."""
from __future__ import annotations

import os
import signal
from multiprocessing.connection import Connection
from typing import Any, Iterator

from tsn_core import interrupts


def become_child(parent: int) -> None:
    """Linux: SIGKILL this process when ``parent`` (the run that started it) dies, even by SIGKILL,
    so no orphan keeps decoding or solving or holds a pipe open; and ignore Ctrl-C and SIGTERM,
    which the run handles (it ends its helpers itself, in order: ``tsn_core.interrupts``). A
    terminal's Ctrl-C and SLURM's SIGTERM reach every process of the job, helpers included."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the run's clean-up still ends its helpers
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
    interrupts.ignore_in_helper()


def tasks(conn: Connection) -> Iterator[Any]:
    """The tasks the run sends a helper, until it sends None or closes its end of the pipe."""
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        yield task
