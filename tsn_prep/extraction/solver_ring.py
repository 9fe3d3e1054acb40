"""A batch solver in a process of its own, fed through a ring of preallocated shared memory.

Why: with the solver in a thread of the run's process, every return of the solver to Python (a
kernel launch, a CUDA graph replay, a stopping test: up to 250 a batch) needs the GIL, which the
run's encoding threads, its reader and its main loop hold most of the time; on an H100 the GPU sat
idle 40 % of a run for it (docs/performance.md). In a process of its own the solver has a GIL of
its own, and the run's process wakes up a few times per batch, not hundreds.

How:

- **A ring of ``SLOTS`` slots**, each one anonymous shared memory (``memfd_create``: nothing named
  in /dev/shm, so nothing is left behind by a SIGKILL, and no /dev/shm size limit), mapped by both
  processes and reused from batch to batch; a slot grows (a new memfd) only when a batch does not
  fit. A slot holds a batch's frames (prev, cur: N x H x W uint8 each) and, after them, its flows:
  quantised as (N, 2, H, W) uint8 (x and y planes each contiguous, as the JPEG encoder wants them)
  or float32 (N, H, W, 2). On a GPU the child page-locks each slot (``cudaHostRegister``), so
  frames go to the device and flows come back by DMA, straight from and into the slot.
- **Two batches in flight**: the parent writes batch k+1 into one slot while the child solves
  batch k from the other (``submit`` returns a future at once; it blocks only while every slot is
  taken), so the solver never waits for the parent's copies.
- **A tiny control channel**: per batch one message each way over a pipe (``ring_messages``:
  ``Solve`` with slot, N, H, W, bound; ``Done`` with the flows' dtype or the child's exception),
  no pickled arrays. A slot's memfd goes to the child once,
  as a file descriptor over the same socket.
- **A dead child** (the OOM killer, a crash) fails the batch it was solving with ``SolverDied``
  and the batch waiting behind it with ``NotStarted``; the next batch starts a new child. The
  engine then solves the failed batch's pairs one at a time, as it does with ``SolverProcess``
  (a one-pair batch fails its pair), and solves a ``NotStarted`` batch again.

The child (``ring_child``) builds its solver with a picklable ``factory`` (e.g.
``functools.partial(make_flow_fn, params, gpu, "torch", "tvl1")``, or a modelled solver for
benchmarks). For ``TorchTVL1`` it runs the steps of ``TorchTVL1.batch`` itself (the same
operations, so the same flows, tested on the CPU) to copy the result into the slot in place; any
other solver's ``batch`` result is copied in.
"""
from __future__ import annotations

import mmap
import multiprocessing
import os
import threading
from concurrent.futures import Future
from multiprocessing.connection import wait
from multiprocessing.reduction import send_handle
from typing import Callable, Optional

import numpy as np

from .ring_child import serve
from .ring_messages import (SLOTS, Bye, Done, Hello, Probe, Reply, Segment, Solve, SolverTraits, layout,
                            views)
from .solver import NotStarted, SolverDied

MIN_SLOT = 1 << 22   # bytes; a slot grows to what a batch needs, in MiB steps


def available() -> bool:
    """Whether this platform has what the ring needs (Linux's memfd_create)."""
    return hasattr(os, "memfd_create")


# -- the parent --------------------------------------------------------------------------------

class _Slot:
    """A slot's memfd and mapping in the parent; ``sent``: the child generation that has it."""

    def __init__(self, index: int):
        self.index = index
        self.fd: Optional[int] = None
        self.mm: Optional[mmap.mmap] = None
        self.size = 0
        self.sent: Optional[int] = None

    def ensure(self, nbytes: int) -> None:
        if nbytes <= self.size:
            return
        self.close()
        size = max(MIN_SLOT, -(-nbytes // (1 << 20)) * (1 << 20))
        fd = os.memfd_create(f"tsn-ring-{self.index}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.size, self.sent = fd, size, None

    def close(self) -> None:
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:  # a view still alive: the mapping goes with it
                pass
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.mm, self.size, self.sent = None, None, 0, None


class RingSolver:
    """A ``BatchSolver`` whose solver (made by ``factory()`` in a spawned child, on CUDA device
    ``gpu`` or the CPU) runs in a process of its own, fed through shared-memory slots (see the
    module's docstring). ``submit`` queues a batch and returns a ``Future`` of its flows (the
    engine keeps ``SLOTS`` in flight); ``batch`` is ``submit(...).result()``.

    ``batches``, ``compiled`` and ``quantizes`` are the child's solver's (asking waits for the
    child to be ready). ``stats``: the child's count of batches solved as of its last reply
    (``{"batches": n}``); ``deaths``: children that died with batches in flight."""

    def __init__(self, factory: Callable, gpu: Optional[int] = None, threads: int = 1,
                 name: Optional[str] = None):
        self.factory, self.gpu, self.threads = factory, gpu, threads
        self.name = name or f"tsn-solver-ring-{'cpu' if gpu is None else f'cuda:{gpu}'}"
        self.ctx = multiprocessing.get_context("spawn")  # never a fork of a process holding CUDA
        self.cv = threading.Condition()
        self.send_lock = threading.Lock()
        self.slots = [_Slot(i) for i in range(SLOTS)]
        self.free = list(self.slots)
        self.pending: dict[int, tuple[Future, Optional[_Slot], Optional[tuple]]] = {}  # seq -> (future, slot, (n, h, w, out))
        self.seq = 0
        self.generation = 0
        self.closed = False
        self.stats: dict[str, int] = {}
        self.deaths = 0
        self.proc = None
        self._start()

    # -- the child's life ------------------------------------------------------------------
    def _start(self) -> None:
        self.generation += 1
        self.requests, child_requests = self.ctx.Pipe()
        child_replies, self.replies = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=serve, name=self.name, daemon=True,
                                     args=(child_requests, child_replies, self.factory, self.gpu,
                                           os.getpid(), self.threads))
        self.proc.start()
        child_requests.close()
        child_replies.close()
        self.dead = False
        self.hello: Optional[SolverTraits] = None
        self.hello_error: Optional[BaseException] = None
        self.ready = threading.Event()
        self.receiver = threading.Thread(target=self._receive, args=(self.proc, self.replies),
                                         name=f"{self.name}-replies", daemon=True)
        self.receiver.start()

    def _receive(self, proc, conn) -> None:
        """The replies of one child, until it ends: each resolves its batch's future."""
        while True:
            try:
                msg: Reply = conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(msg, Hello):
                self.hello, self.hello_error = msg.traits, msg.error
                self.ready.set()
                continue
            self.stats = {"batches": msg.batches}
            if isinstance(msg, Bye):
                break
            self._answer(msg)
        proc.join(timeout=5)
        with self.cv:
            if proc is not self.proc:
                return
            self.dead = True
            if self.hello is None and self.hello_error is None:
                self.hello_error = SolverDied(f"the solver process died before it was ready "
                                              f"(exit code {proc.exitcode})")
            self.ready.set()
            lost, self.pending = self.pending, {}
            for future, slot, _ in lost.values():
                if slot is not None:
                    self.free.append(slot)
            if lost:
                self.deaths += 1
            self.cv.notify_all()
        # The child solves its requests in order: the oldest unanswered one is the batch it died
        # on; those behind it had not begun, and are solved again (``NotStarted``).
        for i, seq in enumerate(sorted(lost)):
            died = f"the solver process died (exit code {proc.exitcode})"
            lost[seq][0].set_exception(SolverDied(died) if i == 0 else
                                       NotStarted(f"{died} before it began this batch"))

    def _answer(self, done: Done) -> None:
        """Resolve the future of request ``done.seq``; its slot is free again."""
        with self.cv:
            future, slot, shape = self.pending.pop(done.seq)
        value, error = done.value, done.error
        try:
            if error is None and slot is not None:
                value = self._flows(slot, shape, value)
        except Exception as exc:  # noqa: BLE001
            error = exc
        finally:
            if slot is not None:
                with self.cv:
                    self.free.append(slot)
                    self.cv.notify_all()
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def _flows(self, slot: _Slot, shape: tuple, dtype: str) -> np.ndarray:
        """The batch's flows copied out of ``slot``: (N, H, W, 2), uint8 (a view of planar
        (N, 2, H, W) memory, so each channel is contiguous) or float32."""
        n, h, w, out = shape
        flows = views(slot.mm, n, h, w, out, dtype)[2].copy()
        return flows.transpose(0, 2, 3, 1) if dtype == "uint8" else flows

    def _traits(self) -> SolverTraits:
        self.ready.wait()
        if self.hello_error is not None:
            raise self.hello_error
        return self.hello

    @property
    def batches(self) -> bool:
        return self._traits().batches

    @property
    def compiled(self) -> bool:
        return self._traits().compiled

    @property
    def quantizes(self) -> bool:
        return self._traits().quantizes

    # -- batches ---------------------------------------------------------------------------
    def _take(self, slot_wanted: bool) -> tuple[int, Optional[_Slot], int]:
        """(seq, a free slot or None, the child's generation), starting a new child if the last
        one died; blocks while every slot is taken."""
        with self.cv:
            while True:
                if self.closed:
                    raise SolverDied("the solver process was closed")
                if not self.dead and wait([self.proc.sentinel], 0):  # ended (not reaped here: its
                    self.cv.wait(0.05)  # receiver does that, fails what it had, then marks it dead)
                    continue
                if self.dead:
                    self._end(wait=False)
                    self._start()
                if not slot_wanted or self.free:
                    self.seq += 1
                    return self.seq, (self.free.pop(0) if slot_wanted else None), self.generation
                self.cv.wait()

    def _post(self, seq: int, slot: Optional[_Slot], shape, msg: Solve | Probe, generation: int) -> Future:
        future: Future = Future()
        with self.cv:
            if self.generation != generation or self.dead or self.closed:
                # the child died while the slot was being filled: this one never reached it
                if slot is not None:
                    self.free.append(slot)
                    self.cv.notify_all()
                future.set_exception(SolverDied("the solver process was closed" if self.closed
                                                else "the solver process died"))
                return future
            self.pending[seq] = (future, slot, shape)
        try:
            with self.send_lock:
                if slot is not None and slot.sent != generation:
                    self.requests.send(Segment(slot.index, slot.size))
                    send_handle(self.requests, slot.fd, self.proc.pid)
                    slot.sent = generation
                self.requests.send(msg)
        except OSError:
            pass  # the child is gone: its receiver fails this batch with SolverDied
        return future

    def submit(self, prev, cur, bound: Optional[float] = None) -> Future:
        """Queue a batch: ``prev`` and ``cur`` are N (H, W) uint8 frames each (arrays or lists);
        the future gives (N, H, W, 2) flows, as ``batch``."""
        n = len(prev)
        h, w = np.shape(prev[0])
        if len(cur) != n or any(np.shape(f) != (h, w) for f in (*prev, *cur)):
            raise ValueError(f"expected two stacks of {n} frames of one shape, got {len(prev)} and "
                             f"{len(cur)} of shapes {sorted({np.shape(f) for f in (*prev, *cur)})}")
        seq, slot, generation = self._take(True)
        try:
            itemsize = 1 if bound is not None and self.quantizes else 4
            out, nbytes = layout(n, h, w, itemsize)
            slot.ensure(nbytes)
            p, c, _ = views(slot.mm, n, h, w, out, np.uint8)
            np.stack([np.asarray(f, np.uint8) for f in prev], out=p)
            np.stack([np.asarray(f, np.uint8) for f in cur], out=c)
            del p, c
        except BaseException:
            with self.cv:
                self.free.append(slot)
                self.cv.notify_all()
            raise
        return self._post(seq, slot, (n, h, w, out), Solve(seq, slot.index, n, h, w, out, bound),
                          generation)

    def batch(self, prev, cur, bound: Optional[float] = None) -> np.ndarray:
        return self.submit(prev, cur, bound).result()

    def probe(self, size: tuple[int, int]) -> tuple[int, str]:
        """The engine's auto batch for frames of ``size`` (h, w), probed in the child (whose
        device memory it is)."""
        seq, _, generation = self._take(False)
        return self._post(seq, None, None, Probe(seq, tuple(size)), generation).result()

    def close(self, wait: bool = True) -> None:
        """End the child: with ``wait`` once it has finished its batches, else at once."""
        with self.cv:
            if self.closed:
                return
            self.closed = True
            self.cv.notify_all()
        self._end(wait)
        for slot in self.slots:
            slot.close()

    def _end(self, wait: bool) -> None:
        proc = self.proc
        if proc is None:
            return
        if wait and proc.is_alive():
            try:
                with self.send_lock:
                    self.requests.send(None)
                proc.join(timeout=30)
            except OSError:
                pass
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        with self.send_lock:  # a device thread may be sending: it fails now (EPIPE), then lets go
            self.requests.close()
        if threading.current_thread() is not self.receiver:
            self.receiver.join(timeout=5)
        self.replies.close()
