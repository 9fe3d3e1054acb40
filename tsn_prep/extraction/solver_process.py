"""A TV-L1 solver in a process of its own, with one CPU thread.

With no GPU the engine runs one of these per usable core instead of one solver with a thread per
core in its own process. Two reasons, both measured on 2 cores (docs/performance.md):

- inductor's compiled CPU kernels hold the GIL while they run, so solver threads of one process
  take turns (two threads solved 1.36 pairs/s where one thread alone solved 1.59);
- the OpenMP threads of one solve wait for each other at every parallel loop, so they collapse
  when another process takes one of their cores, where independent one-thread solvers just share
  what is left.

Frames go in and flows come back through a pipe (a 340x256 pair is 174 kB in and 174 kB out
quantised or 696 kB as floats, against some 0.8 s of solving). A process that dies fails the
batch it was solving with ``SolverDied``; the next batch starts a new one.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Optional

import numpy as np

from ..child import become_child
from .backends import torch_tvl1
from .solver import SolverDied
from .tvl1_params import TVL1Params


def one_thread_solver(params: TVL1Params):
    """The torch TV-L1 on the CPU with one thread: what runs in a solver process, or in the
    engine's own thread where there is one core."""
    return torch_tvl1(params, None, threads=1)


def _serve(conn, params: TVL1Params, parent: int) -> None:
    become_child(parent)
    import logging

    import torch

    # inductor's C++ build looks for CUDA and says so on stderr, in the middle of the progress bar
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

    torch.set_num_threads(1)
    solver = one_thread_solver(params)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the run closed its end
            return
        if job is None:
            return
        try:
            prev, cur, bound = job
            reply = (True, solver.batch(prev, cur, bound))
        except Exception as exc:  # noqa: BLE001 - the run decides what a failed batch means
            reply = (False, exc)
        try:
            conn.send(reply)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: send its words
            conn.send((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


class SolverProcess:
    """``batch(prev, cur, bound)`` as ``TorchTVL1.batch`` on the CPU, solved in a child process.

    Not ``compiled`` as far as the engine is concerned: the child compiles for itself (one graph
    for every batch size above one), so the engine need not pad batches to one shape, which on the
    CPU would cost the padding's full solve."""

    batches = True
    compiled = False
    quantizes = True

    def __init__(self, params: TVL1Params):
        self.params = params
        self.proc: Optional[multiprocessing.process.BaseProcess] = None
        self.closed = False
        self._busy = None  # the pipe a thread is inside ``batch`` with
        self._lock = threading.Lock()  # the engine's device thread and its main thread both close
        self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never a fork of a process holding torch's threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.params, os.getpid()),
                                name="tsn-tvl1-cpu", daemon=True)
        self.proc.start()
        child.close()

    def batch(self, prev, cur, bound: Optional[float] = None) -> np.ndarray:
        with self._lock:
            if self.closed:
                raise SolverDied("the CPU solver process was closed")
            if not self.proc.is_alive():  # it died with an earlier batch: a new one for this one
                self._end(wait=False)
                self._start()
            proc, conn = self.proc, self.conn  # close() from another thread may clear them
            self._busy = conn
        try:
            conn.send((np.ascontiguousarray(prev), np.ascontiguousarray(cur), bound))
            ok, value = conn.recv()
        except (EOFError, OSError):
            proc.join(timeout=5)
            raise SolverDied(f"the CPU solver process died (exit code {proc.exitcode})") from None
        finally:
            with self._lock:
                self._busy = None
                if conn is not self.conn:  # closed or replaced meanwhile: its pipe is ours to close
                    conn.close()
        if not ok:
            raise value
        return value

    def close(self, wait: bool = True) -> None:
        """End the process: with ``wait`` once it has finished its batch, else at once."""
        with self._lock:
            self.closed = True
            self._end(wait)

    def _end(self, wait: bool) -> None:
        if self.proc is None:
            return
        if wait and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(timeout=30)
            except OSError:
                pass
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        if self._busy is not self.conn:  # else the thread in ``batch`` closes it when it returns
            self.conn.close()
        self.proc, self.conn = None, None
