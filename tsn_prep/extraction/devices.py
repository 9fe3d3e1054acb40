"""The devices of a run: one solver each, driven by a thread of its own (jobs in, events out).

The torch TV-L1 on "cuda:N" runs by default in a process of its own (``solver_ring``: the thread
hands a batch over and goes on to the next, the child's reply thread posts its flows); any other
solver is called from the device's thread. A compiled solver gets batches padded to one shape per
frame size. If a batch fails (e.g. out of memory), its pairs are solved one at a time (only a pair
that still fails fails its video); the scheduler then halves that device's batch for the size."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Optional

import numpy as np

from .batch_size import AUTO_CPU_BATCH, AUTO_CPU_PIXELS, cpu_batch, probe_batch
from .events import Pair
from .solver import NotStarted, SolverFactory
from .solver_ring import RingSolver

DEPTH = 2                  # batches queued per device: one solving, one ready to start

# The first batch of each shape on a compiled solver compiles it; torch.compile is not documented
# as safe to run from several threads at once, so with several devices those first batches take
# turns (later batches run concurrently).
COMPILE_LOCK = threading.Lock()


# -- what a device's thread tells the main loop ------------------------------------------

@dataclass
class Probed:
    """A device's batch for frames of ``size`` (h, w) is known; ``text`` says how it was chosen."""
    device: "Device"
    size: tuple[int, int]
    batch: int
    text: str


@dataclass
class Solved:
    """A device solved ``pairs``: a flow or an exception each; ``failure``: the batch's exception
    when it failed as a whole and was solved one pair at a time."""
    device: "Device"
    pairs: list
    flows: list
    failure: Optional[BaseException]


# -- what a device's thread is asked to do ----------------------------------------------------

@dataclass
class ProbeJob:
    """Probe the auto batch for frames of ``size`` (h, w)."""
    size: tuple[int, int]


@dataclass
class SolveJob:
    """Solve ``pairs``, padded to ``pad_to``; quantised with ``bound`` (None: float flows)."""
    pairs: list
    pad_to: int
    bound: Optional[float]


@dataclass
class RetryJob:
    """A batch a pipelined solver failed as a whole (``failure``): its pairs one at a time."""
    job: SolveJob
    failure: Optional[BaseException]  # None: the batch is not to blame (``NotStarted``)


class Device:
    """One solver and the thread that drives it; jobs in, events out."""

    def __init__(self, index: int, gpu: Optional[int], make_solver: SolverFactory,
                 batch_pairs: int, events: queue.Queue):
        self.gpu = gpu
        self.name = "cpu" if gpu is None else f"cuda:{gpu}"
        self.solver = make_solver(gpu)
        # a solver in a process of its own is handed batches and probes in its child; any other
        # is called from this device's thread (the type says which: nothing is probed for)
        self.ring: Optional[RingSolver] = self.solver if isinstance(self.solver, RingSolver) else None
        self.batch_pairs = batch_pairs  # 0: auto
        self.events = events
        self.sizes: dict[tuple[int, int], Optional[int]] = {}  # frame size -> batch (None: probing)
        self.queued = 0    # pairs sent and not yet back
        self.batches = 0   # batches sent and not yet back
        self.inbox: queue.Queue = queue.Queue()
        self.shapes: set = set()  # batch shapes this device's solver has run
        self.thread = threading.Thread(target=self._loop, name=f"tsn-solver-{index}-{self.name}",
                                       daemon=True)
        self.thread.start()

    # main thread
    def batch_for(self, size: tuple[int, int]) -> Optional[int]:
        """This device's batch for frames of ``size`` (h, w); None while it is being probed."""
        if size not in self.sizes:
            if not self.solver.batches:
                self.sizes[size] = 1
            elif self.batch_pairs:
                self.sizes[size] = self.batch_pairs
            elif self.gpu is None:
                batch = cpu_batch(size)
                self.sizes[size] = batch
                self.events.put(Probed(self, size, batch, f"{batch} (on the CPU: at most {AUTO_CPU_BATCH} "
                                                          f"pairs, {AUTO_CPU_PIXELS} pixels a batch)"))
            else:
                self.sizes[size] = None
                self.inbox.put(ProbeJob(size))
        return self.sizes[size]

    def send(self, pairs: list[Pair], pad_to: int, bound: Optional[float] = None) -> None:
        self.queued += len(pairs)
        self.batches += 1
        self.inbox.put(SolveJob(pairs, pad_to, bound))

    def stop(self, drop_queued: bool = False) -> None:
        """The thread ends after its current job; with ``drop_queued``, the jobs queued behind it
        are dropped (the run is stopping)."""
        while drop_queued:
            try:
                self.inbox.get_nowait()
            except queue.Empty:
                break
        self.inbox.put(None)

    # device thread
    def _loop(self) -> None:
        if self.gpu is not None and self.ring is None:  # a ring's CUDA is its child's
            import torch

            torch.cuda.set_device(self.gpu)  # this thread's current device: its solver's
        while True:
            job = self.inbox.get()
            if job is None:
                self.solver.close()
                return
            if isinstance(job, ProbeJob):
                self.events.put(Probed(self, job.size, *self._probe(job.size)))
            elif isinstance(job, RetryJob):
                self.events.put(Solved(self, job.job.pairs, *self._one_by_one(job.job.pairs, job.job.bound,
                                                                               job.failure)))
            elif self.ring is not None:
                self._submit(self.ring, job)
            else:
                self.events.put(Solved(self, job.pairs, *self._solve(job.pairs, job.pad_to, job.bound)))

    def _submit(self, ring: RingSolver, job: SolveJob) -> None:
        """Queue ``job`` on the solver's process (``RingSolver``): this thread goes on to the next
        batch (it blocks only while the solver has every slot taken); the solver's reply thread
        posts the flows, or hands a failed batch back to this thread as a ``_Retry``."""
        prev, cur = self._frames(job.pairs, job.pad_to)
        try:
            future = ring.submit(prev, cur, job.bound)
        except Exception as exc:  # noqa: BLE001 - e.g. the solver was closed: as a failed batch
            self._landed(job, None, exc)
            return
        future.add_done_callback(lambda f: self._landed(job, f))

    def _landed(self, job: SolveJob, future: Optional[Future], exc: Optional[BaseException] = None) -> None:
        exc = exc if future is None else future.exception()
        if exc is None:
            self.events.put(Solved(self, job.pairs, list(future.result()[:len(job.pairs)]), None))
        elif isinstance(exc, NotStarted):  # it waited behind the batch that killed the solver
            self.inbox.put(RetryJob(job, None))
        elif max(len(job.pairs), job.pad_to) == 1:  # as ``_solve``: a one-pair batch fails its pair
            self.events.put(Solved(self, job.pairs, [exc], None))
        else:
            self.inbox.put(RetryJob(job, exc))

    @staticmethod
    def _frames(pairs: list[Pair], pad_to: int) -> tuple[list, list]:
        """The pairs' frames, padded to ``pad_to`` pairs by repeating the first (see ``_solve``)."""
        prev = [p.prev for p in pairs]
        cur = [p.cur for p in pairs]
        if len(pairs) < pad_to:
            prev += [prev[0]] * (pad_to - len(pairs))
            cur += [cur[0]] * (pad_to - len(pairs))
        return prev, cur

    def _solve(self, pairs: list[Pair], pad_to: int,
               bound: Optional[float] = None) -> tuple[list, Optional[BaseException]]:
        """Flows (H, W, 2) float32 of ``pairs`` in order (with ``bound``: quantised by the solver,
        uint8), or the exception of a pair that failed; and the batch's exception when it failed
        as a whole and was solved one pair at a time.

        A compiled solver gets batches padded to its batch size by repeating the first pair, so it
        sees one shape per frame size (a new shape is a new compilation); the torch solver gives
        every pair its one-at-a-time result, so the padding does not change the others."""
        prev, cur = self._frames(pairs, pad_to)
        solve = self.solver.batch if bound is None else partial(self.solver.batch, bound=bound)
        try:
            prev, cur = np.stack(prev), np.stack(cur)
            if prev.shape in self.shapes or not self.solver.compiled:
                flows = solve(prev, cur)
            else:
                with COMPILE_LOCK:
                    flows = solve(prev, cur)
                self.shapes.add(prev.shape)
            return list(flows[:len(pairs)]), None
        except Exception as exc:  # noqa: BLE001 - see which pairs fail: only their videos fail
            if len(prev) == 1:
                return [exc], None
            return self._one_by_one(pairs, bound, exc)

    def _one_by_one(self, pairs: list[Pair], bound: Optional[float],
                    failure: BaseException) -> tuple[list, BaseException]:
        """The pairs of a batch that failed as a whole (``failure``), solved one at a time."""
        solve = self.solver.batch if bound is None else partial(self.solver.batch, bound=bound)
        out = []
        for p in pairs:
            try:
                out.append(solve(p.prev[None], p.cur[None])[0])
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out, failure

    def _probe(self, size: tuple[int, int]) -> tuple[int, str]:
        """CUDA: the largest batch that fits AUTO_MEMORY_FRACTION of the free memory (probed
        where the solver runs: a ``RingSolver`` probes in its child)."""
        if self.ring is not None:
            return self.ring.probe(size)
        return probe_batch(self.solver, size, self.name)
