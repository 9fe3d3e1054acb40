"""The run's side of its decoding workers (``decoding``): starting them, feeding them videos, the
reader thread that brings their events to the scheduler, and what happens when one dies.

Spawned processes (a fork could inherit CUDA state), or with 0 workers one thread; each talks to
this process over a pipe of its own (no named semaphore, no feeder thread: nothing to leak or to
unlink twice at exit), so a worker is ``AHEAD`` videos ahead at most and blocks while this process
does not read it. The reader moves the workers' messages to the scheduler's ``events`` while
fewer than ``cap`` pairs are in the parent; beyond that it stops reading, and the workers wait."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Union

from .decoding import DecodeTask, Decoding, decode_worker
from .events import Ended, Failed, Frames, WorkerDied

AHEAD = 2                  # videos sent to a decoding worker at a time: one decoding, one waiting
WORKER_END_S = 5.0         # an interrupted run waits this long for its decoding workers to end

Worker = Union[multiprocessing.process.BaseProcess, threading.Thread]


class DecodingWorkers:
    """``workers`` decoding workers (0: one thread of this process) for ``tasks``; their events go
    to ``events``. The scheduler says how many pairs it holds (``set_load``) and how many it took
    off the reader's hands (``taken``)."""

    def __init__(self, tasks: list[DecodeTask], workers: int, decoding: Decoding, events: queue.Queue,
                 cap: int):
        self.in_process = workers == 0
        self.ctx = multiprocessing.get_context("spawn")
        self.decoding = decoding
        self.events = events
        self.tasks = {t.key: t for t in tasks}
        self.pending: deque[DecodeTask] = deque(tasks)  # not yet given to a worker
        self.procs: dict[int, Worker] = {}             # worker -> its process (or thread)
        self.conns: dict[int, Connection] = {}         # worker -> this process's end of its pipe
        self.assigned: dict[int, deque[int]] = {}      # worker -> videos sent to it, oldest first
        self.wake_r, self.wake_w = multiprocessing.Pipe(duplex=False)  # wakes the reader to stop
        for wid in range(max(1, min(workers, len(tasks)))):
            self._start(wid)
        self.cond = threading.Condition()
        self.in_transit = 0              # pairs read by the reader, not yet taken by the main loop
        self.load = 0                    # pairs in the parent: waiting, solved, being encoded...
        self.cap = cap
        self.stopping = False
        self.reader = threading.Thread(target=self._read, name="tsn-reader", daemon=True)
        self.reader.start()

    # -- the scheduler's main loop -----------------------------------------------------------
    def taken(self, pairs: int) -> None:
        """The main loop took a ``Frames`` event completing ``pairs`` pairs."""
        with self.cond:
            self.in_transit -= pairs

    def set_load(self, load: int, cap: int) -> None:
        """Pairs now in the parent, and how many it may hold; the reader reads on below that."""
        with self.cond:
            self.load, self.cap = load, cap
            self.cond.notify_all()

    def stop(self, interrupted: bool) -> None:
        """End the reader and every worker: an idle worker at once, a busy one at its next
        message; after ``WORKER_END_S`` when ``interrupted`` (else 30 s), SIGKILL."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.wake_w.send_bytes(b"x")
        self.reader.join()
        for conn in self.conns.values():
            with contextlib.suppress(OSError):
                conn.send(None)  # an idle worker ends now; a busy one at its next message
            conn.close()
        deadline = time.monotonic() + (WORKER_END_S if interrupted else 30)
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(proc, multiprocessing.process.BaseProcess) and proc.is_alive():
                proc.kill()  # it ignores SIGTERM (tsn_prep.child): SIGKILL
                proc.join(timeout=5)

    def close_wake(self) -> None:
        """The reader's wake-up pipe, once the run is over."""
        self.wake_r.close()
        self.wake_w.close()

    # -- workers and the reader thread -------------------------------------------------------
    def _start(self, wid: int) -> None:
        mine, theirs = multiprocessing.Pipe()
        if self.in_process:
            p = threading.Thread(target=decode_worker, args=(wid, None, theirs, self.decoding),
                                 name=f"tsn-decode-{wid}", daemon=True)
        else:
            p = self.ctx.Process(target=decode_worker, args=(wid, os.getpid(), theirs, self.decoding),
                                 name=f"tsn-decode-{wid}", daemon=True)
        p.start()
        if not self.in_process:
            theirs.close()  # the child has its own copy; EOF then means the child is gone
        self.procs[wid], self.conns[wid], self.assigned[wid] = p, mine, deque()
        self._feed(wid)

    def _feed(self, wid: int) -> None:
        """Give worker ``wid`` videos until it has AHEAD (one decoding, the next waiting)."""
        while self.pending and len(self.assigned[wid]) < AHEAD:
            task = self.pending.popleft()
            try:
                self.conns[wid].send(task)
            except OSError:  # it died: the reader sees its end of file and hands its videos on
                self.pending.appendleft(task)
                return
            self.assigned[wid].append(task.key)

    def _read(self) -> None:
        """The reader thread: the only one to read the workers' pipes and send them videos while
        the run goes on."""
        while True:
            with self.cond:
                while not self.stopping and self.in_transit + self.load >= self.cap:
                    self.cond.wait()
                if self.stopping:
                    return
            by_conn = {c: w for w, c in self.conns.items()}
            for conn in wait([*by_conn, self.wake_r]):
                if self.stopping:
                    return
                if conn is self.wake_r:
                    continue
                wid = by_conn[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    self._lost(wid)
                    continue
                if isinstance(msg, Frames):
                    with self.cond:
                        self.in_transit += msg.pairs
                elif isinstance(msg, (Ended, Failed)):
                    self.assigned[wid].popleft()
                    self._feed(wid)
                self.events.put(msg)

    def _lost(self, wid: int) -> None:
        """Worker ``wid`` ended unasked: its current video fails (``WorkerDied``), the videos it had
        not started go back to the front of the line, and a new worker takes over."""
        proc = self.procs[wid]
        proc.join(timeout=5)
        self.conns.pop(wid).close()
        keys = self.assigned.pop(wid)
        first = keys.popleft() if keys else None
        self.pending.extendleft(self.tasks[k] for k in reversed(keys))
        exitcode = proc.exitcode if isinstance(proc, multiprocessing.process.BaseProcess) else None
        self.events.put(WorkerDied(wid, first, exitcode))
        self._start(wid)
