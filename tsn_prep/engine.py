"""The extraction engine: the one scheduler of every extraction, for every modality, flow
algorithm and backend. Decoding workers feed one solver per device.

``run_extraction`` (and ``extract_one``, for a single video) hand it jobs: a video and the
modalities it lacks. The work is split three ways:

- **Decoding workers** (``RunPlan.workers`` processes, started with "spawn": never a fork of a
  process that may hold CUDA; or, with 0 workers, one thread of this process) decode videos with
  ``VideoReader``. Frame modalities (rgb) are JPEG-encoded right there, so no pixels travel; for
  flow the frames are converted to grey and sent to the parent. Both go in chunks of at most
  ``CHUNK`` frames through a bounded queue, so a worker blocks when the parent is behind and memory
  does not grow with a video's length. A decoding error becomes that video's failure; the other
  videos go on.
- **One solver per device** (``BatchSolver``), each driven by its own thread of the parent process:
  the torch TV-L1 on "cuda:N", by default in a process of its own fed through shared-memory slots
  with two batches in flight (``solver_ring``: the thread hands a batch over and goes on to the
  next, the child's reply thread posts its flows), so the solver's many returns to Python do not
  wait for this process's GIL; with no GPU, one solver per usable core (``cpu_solvers``), each with
  one thread and, when there are several, in a process of its own (``solver_process``: compiled CPU
  kernels hold the GIL, and the OpenMP threads of one solve collapse on a busy machine). OpenCV's
  solvers (TV-L1 on the CPU or CUDA, DIS, Farneback) are ``PairSolver``s: one pair at a time, one
  per usable core on the CPU (OpenCV releases the GIL while it computes, so threads suffice), one
  per GPU with CUDA. The parent forms the frame pairs (consecutive frames, across chunks) of many
  videos and, for a solver that batches, batches them across videos, one group per frame size, up
  to the batch size of that size and device; partial batches go to an idle device once input
  pauses or ends. Batches are dealt to the least-loaded device.
- **CPU threads of the parent** quantise and JPEG-encode the flows (``cv2.imencode`` releases the
  GIL) and, for warped flow, estimate each pair's homography; the second flow pass of a pair whose
  homography is not the identity goes through the same solvers (identity: the plain flow is the
  warped flow, as ``WarpedFlow`` does).

Each video comes back as a ``VideoResult`` once all its images are encoded, and
``run_extraction`` writes it in one transaction per modality. The torch solver gives every pair of
a batch its one-at-a-time result, so the stored bytes do not depend on how pairs were batched, nor
on the number of devices, workers or threads (``RunPlan``).

``batch_pairs`` 0 means auto: on CUDA the memory of one pair is probed once per (device, frame
size) -- the peak memory of a 2-pair batch minus that of a 1-pair batch -- and the batch is
``min(AUTO_MAX_BATCH, AUTO_MEMORY_FRACTION * free / per pair)``. On the CPU, batches hold at most
``AUTO_CPU_PIXELS`` pixels per frame stack (1 pair at 340x256, 8 at 64x48): a batch runs until its
slowest pair has converged (the others are frozen, not removed), which costs nothing on a GPU that
has cores to spare but costs a CPU the frozen pairs' work. Measured here (eager, 2 threads, 8 pairs
of two real clips at 340x256): one at a time 9.8 s, one batch of 4 per clip 9.7 s, one batch of
all 8 across the clips 14.8 s. Small frames gain from batching instead (fixed costs per operation
dominate): 4 pairs at 64x48 took 3.7 s in one batch, 6.3 s one by one. If a batch fails (e.g. out
of memory), its pairs are solved one at a time (only a pair that still fails fails its video) and
that device's batch for the frame size is halved.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from tsn_core import interrupts, modalities
from tsn_core.codec import encode_jpeg
from tsn_core.meta import EntryMeta
from .child import become_child
from .extract import (ExtractParams, VideoResult, check_frame_count, encode_flow, error_message,
                      video_metadata)
from .flow import BatchSolver, PairSolver, make_flow_fn
from .plan import RunPlan, usable_cores
from .solver_process import SolverProcess, one_thread_solver
from .solver_ring import RingSolver, available as ring_available
from .video import VideoItem, VideoReader
from .warp import camera_compensation

CHUNK = 32                 # grey frames per message from a decoding worker
QUEUE_MESSAGES = 4         # messages in flight per worker before it blocks
AUTO_CPU_BATCH = 8         # at most, on the CPU
AUTO_CPU_PIXELS = 1 << 16  # pixels per frame stack on the CPU
AUTO_MAX_BATCH = 128       # the fastest per pair on an H100 (docs/performance.md: 407 vs 336 at 256)
AUTO_MEMORY_FRACTION = 0.6
DEPTH = 2                  # batches queued per device: one solving, one ready to start
IDLE_S = 0.02              # no news this long: partial batches go to idle devices
AHEAD = 2                  # videos sent to a decoding worker at a time: one decoding, one waiting
WORKER_END_S = 5.0         # an interrupted run waits this long for its decoding workers to end
MAX_EVENTS = 256           # events handled between two looks for batches to send
SOLVER_PROCESS_BYTES = 600 << 20  # private memory of a CPU solver process (measured: 465 MiB at 340x256)

# The first batch of each shape on a compiled solver compiles it; torch.compile is not documented
# as safe to run from several threads at once, so with several devices those first batches take
# turns (later batches run concurrently).
_COMPILE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Job:
    """One video to extract, and the modalities of it to compute (those its store lacks)."""
    item: VideoItem
    modalities: tuple[str, ...]


# -- events: what the decoding workers send (across processes), and what the parent's threads
# tell its main loop ----------------------------------------------------------------------------

@dataclass
class Started:
    """A worker took video ``key``."""
    worker: int
    key: int


@dataclass
class Frames:
    """Frames ``start``, ``start + 1``, ... of video ``key``: grey, for flow (else None), and
    the JPEGs of its frame modalities (modality -> one per frame)."""
    worker: int
    key: int
    start: int
    grey: Optional[np.ndarray]
    images: dict[str, list[bytes]]

    @property
    def pairs(self) -> int:
        """Frame pairs these frames complete (the first frame of a video completes none)."""
        if self.grey is None:
            return 0
        return len(self.grey) - (1 if self.start == 0 else 0)


@dataclass
class Ended:
    """Video ``key`` is decoded: ``count`` frames; its video-level metadata."""
    worker: int
    key: int
    count: int
    common: EntryMeta


@dataclass
class Failed:
    """Video ``key`` could not be decoded (or has too few frames)."""
    worker: int
    key: int
    error: str


@dataclass
class WorkerDied:
    """Decoding worker ``worker`` ended unasked (a crash, the OOM killer): ``key``, the video it
    was decoding or about to, fails; a new worker takes its other videos."""
    worker: int
    key: Optional[int]
    exitcode: Optional[int]


@dataclass
class Probed:
    """A device's batch for frames of ``size`` (h, w) is known; ``text`` says how it was chosen."""
    device: "_Device"
    size: tuple[int, int]
    batch: int
    text: str


@dataclass
class Solved:
    """A device solved ``pairs``: a flow or an exception each; ``failure``: the batch's exception
    when it failed as a whole and was solved one pair at a time."""
    device: "_Device"
    pairs: list
    flows: list
    failure: Optional[BaseException]


@dataclass
class Homography:
    """The camera motion of ``pair`` is estimated: ``future`` gives (flow, warped second frame or
    None for the identity)."""
    pair: "_Pair"
    future: Future


@dataclass
class Encoded:
    """Flows are encoded: ``future`` gives (key, pair index, modality, JPEGs or an exception)s."""
    future: Future


@dataclass
class _Probe:
    size: tuple[int, int]


@dataclass
class _Solve:
    pairs: list
    pad_to: int
    bound: Optional[float]


@dataclass
class _Retry:
    """A batch a pipelined solver failed as a whole (``failure``): its pairs one at a time."""
    job: _Solve
    failure: BaseException


# -- decoding workers (separate processes or a thread; no torch here) --------------------------

@dataclass(frozen=True)
class _Decoding:
    """What every decoding worker of a run needs: how to read and what to encode."""
    size: Optional[tuple[int, int]]
    short_side: Optional[int]
    max_frames: Optional[int]
    threads: int
    decoders: tuple[str, ...]
    jpeg_quality: int
    chunk: int = CHUNK


@dataclass(frozen=True)
class _Task:
    key: int
    path: str
    frame_modalities: tuple[str, ...]  # encoded here, one JPEG per frame
    grey: bool                         # flow wanted: grey frames go to the parent


class _Closed(Exception):
    """The run closed its end of a decoding worker's pipe: it is stopping."""


def _send(conn, msg) -> None:
    try:
        conn.send(msg)
    except OSError as exc:  # EPIPE, or the descriptor closed under a thread
        raise _Closed from exc


def _decode_worker(wid: int, parent: Optional[int], conn, how: _Decoding) -> None:
    """Decode the videos the run sends over ``conn`` (one ``_Task`` at a time; None, or the run's
    end of the pipe closed: stop), answering each with Started, Frames... and Ended or Failed."""
    if parent is not None:  # a process of its own
        become_child(parent)
    if how.threads:
        cv2.setNumThreads(how.threads)
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            _decode_task(wid, conn, task, how)
    except _Closed:
        return
    finally:
        conn.close()


def _decode_task(wid: int, conn, task: _Task, how: _Decoding) -> None:
    _send(conn, Started(wid, task.key))
    try:
        reader = VideoReader(task.path, how.size, how.short_side, how.max_frames, how.threads,
                             how.decoders)
        n, start = 0, 0
        grey: list[np.ndarray] = []
        images: dict[str, list[bytes]] = {m: [] for m in task.frame_modalities}

        def send() -> None:
            _send(conn, Frames(wid, task.key, start, np.stack(grey) if task.grey else None, images))

        for frame in reader.frames():
            for m in task.frame_modalities:
                images[m].append(encode_jpeg(frame, how.jpeg_quality))
            if task.grey:
                grey.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
            n += 1
            if n - start >= how.chunk:
                send()
                start, grey, images = n, [], {m: [] for m in task.frame_modalities}
        check_frame_count(n)
        if n > start:
            send()
        ended = Ended(wid, task.key, n, video_metadata(Path(task.path), reader, n))
    except _Closed:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a batch of thousands
        _send(conn, Failed(wid, task.key, error_message(exc)))
        return
    _send(conn, ended)


# -- the parent's side -------------------------------------------------------------------------

@dataclass
class _Video:
    item: VideoItem
    modalities: tuple[str, ...]
    started: float = 0.0
    prev: Optional[np.ndarray] = None      # the last grey frame received
    n: Optional[int] = None                # frames in all, once the worker is done with it
    common: Optional[EntryMeta] = None
    pending: int = 0                       # solves, homographies and encodings not done yet
    encoded: dict = field(default_factory=dict)  # flow modality -> {pair index: (x, y) JPEG bytes}
    frames: dict = field(default_factory=dict)   # frame modality -> [JPEG bytes], in frame order

    @property
    def wants_flow(self) -> bool:
        return modalities.PLAIN_FLOW in self.modalities

    @property
    def wants_warped(self) -> bool:
        return modalities.WARPED_FLOW in self.modalities


@dataclass
class _Pair:
    key: int
    index: int
    second: bool          # the second pass of warped flow: (prev, cur warped onto prev)
    prev: np.ndarray
    cur: np.ndarray


class _Device:
    """One solver and the thread that drives it; jobs in, events out."""

    def __init__(self, index: int, gpu: Optional[int], make_solver: "SolverFactory",
                 batch_pairs: int, events: queue.Queue):
        self.gpu = gpu
        self.name = "cpu" if gpu is None else f"cuda:{gpu}"
        self.solver = make_solver(gpu)
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
                self.inbox.put(_Probe(size))
        return self.sizes[size]

    def send(self, pairs: list[_Pair], pad_to: int, bound: Optional[float] = None) -> None:
        self.queued += len(pairs)
        self.batches += 1
        self.inbox.put(_Solve(pairs, pad_to, bound))

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
        pipelined = getattr(self.solver, "pipelined", False)  # a RingSolver: CUDA is its child's
        if self.gpu is not None and not pipelined:
            import torch

            torch.cuda.set_device(self.gpu)  # this thread's current device: its solver's
        while True:
            job = self.inbox.get()
            if job is None:
                self.solver.close()
                return
            if isinstance(job, _Probe):
                self.events.put(Probed(self, job.size, *self._probe(job.size)))
            elif isinstance(job, _Retry):
                self.events.put(Solved(self, job.job.pairs, *self._one_by_one(job.job.pairs, job.job.bound,
                                                                               job.failure)))
            elif pipelined:
                self._submit(job)
            else:
                self.events.put(Solved(self, job.pairs, *self._solve(job.pairs, job.pad_to, job.bound)))

    def _submit(self, job: _Solve) -> None:
        """Queue ``job`` on a pipelined solver (``RingSolver``): this thread goes on to the next
        batch (it blocks only while the solver has every slot taken); the solver's reply thread
        posts the flows, or hands a failed batch back to this thread as a ``_Retry``."""
        prev, cur = self._frames(job.pairs, job.pad_to)
        try:
            future = self.solver.submit(prev, cur, job.bound)
        except Exception as exc:  # noqa: BLE001 - e.g. the solver was closed: as a failed batch
            self._landed(job, None, exc)
            return
        future.add_done_callback(lambda f: self._landed(job, f))

    def _landed(self, job: _Solve, future: Optional[Future], exc: Optional[BaseException] = None) -> None:
        exc = exc if future is None else future.exception()
        if exc is None:
            self.events.put(Solved(self, job.pairs, list(future.result()[:len(job.pairs)]), None))
        elif max(len(job.pairs), job.pad_to) == 1:  # as ``_solve``: a one-pair batch fails its pair
            self.events.put(Solved(self, job.pairs, [exc], None))
        else:
            self.inbox.put(_Retry(job, exc))

    @staticmethod
    def _frames(pairs: list[_Pair], pad_to: int) -> tuple[list, list]:
        """The pairs' frames, padded to ``pad_to`` pairs by repeating the first (see ``_solve``)."""
        prev = [p.prev for p in pairs]
        cur = [p.cur for p in pairs]
        if len(pairs) < pad_to:
            prev += [prev[0]] * (pad_to - len(pairs))
            cur += [cur[0]] * (pad_to - len(pairs))
        return prev, cur

    def _solve(self, pairs: list[_Pair], pad_to: int,
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
                with _COMPILE_LOCK:
                    flows = solve(prev, cur)
                self.shapes.add(prev.shape)
            return list(flows[:len(pairs)]), None
        except Exception as exc:  # noqa: BLE001 - see which pairs fail: only their videos fail
            if len(prev) == 1:
                return [exc], None
            return self._one_by_one(pairs, bound, exc)

    def _one_by_one(self, pairs: list[_Pair], bound: Optional[float],
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
        if hasattr(self.solver, "probe"):
            return self.solver.probe(size)
        return probe_batch(self.solver, size, self.name)


def probe_batch(solver, size: tuple[int, int], device: str) -> tuple[int, str]:
    """The auto batch of ``solver`` on ``device`` (CUDA) for frames of ``size`` (h, w), and how it was
    chosen: the largest that fits AUTO_MEMORY_FRACTION of the free memory, from the peak memory
    of a 2-pair batch minus that of a 1-pair batch."""
    import torch

    h, w = size
    dev = torch.device(device)
    frames = np.zeros((2, h, w), np.uint8)  # the memory depends on the shape only
    try:
        probe = _eager_solver(solver)
        peaks = []
        for b in (1, 2):
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            probe.batch(np.repeat(frames[:1], b, 0), np.repeat(frames[1:], b, 0))
            torch.cuda.synchronize(dev)
            peaks.append(torch.cuda.max_memory_allocated(dev) - base)
        per_pair = peaks[1] - peaks[0]
        if per_pair <= 0:
            per_pair = max(peaks[0], 1)
        free, _ = torch.cuda.mem_get_info(dev)
        free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)  # torch's cache
        batch = max(1, min(AUTO_MAX_BATCH, math.floor(AUTO_MEMORY_FRACTION * free / per_pair)))
        return batch, (f"{batch} ({per_pair / 2**20:.1f} MiB per pair, {free / 2**30:.1f} GiB free)")
    except Exception as exc:  # noqa: BLE001 - fall back to one pair at a time, and say so
        return 1, f"1 (probing the memory per pair failed: {type(exc).__name__}: {exc})"


def _eager_solver(solver):
    """The solver for probing: an uncompiled twin where the solver allows one (a compiled probe
    would compile two extra shapes; eager code holds more temporaries, so the batch it suggests
    errs on the safe side), else the solver itself."""
    if not solver.compiled:
        return solver
    try:
        return type(solver)(solver.params, solver.device, compile=False)
    except Exception:  # noqa: BLE001 - another solver type: probe with it as it is
        return solver


def cpu_batch(size: tuple[int, int]) -> int:
    """Auto batch on the CPU for frames of ``size`` (h, w): see the module's docstring."""
    return max(1, min(AUTO_CPU_BATCH, AUTO_CPU_PIXELS // (size[0] * size[1])))


def cpu_solvers() -> int:
    """Solvers with no GPU: one per usable core, each with one thread, in a process of its own
    when there are several (``solver_process`` says why; one core needs no extra process). The
    decoding workers come on top: beside TV-L1 on the CPU they take a few per cent of a core.
    Fewer where memory is short: each process holds about ``SOLVER_PROCESS_BYTES`` of its own
    (torch and its compiler), so they use at most half the memory available now."""
    cores, available = usable_cores(), _available_memory()
    return cores if available is None else max(1, min(cores, int(available / 2 // SOLVER_PROCESS_BYTES)))


def _available_memory() -> Optional[int]:
    """Bytes of memory available to new processes (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


SolverFactory = Callable[[Optional[int]], BatchSolver]
"""A device's solver: ``gpu`` (None: the CPU) -> the solver its thread drives."""


def solvers(params: ExtractParams, plan: RunPlan) -> tuple[tuple[Optional[int], ...], Optional[SolverFactory]]:
    """The devices a run solves flow on (GPU numbers, None for a CPU solver) and how each one's
    solver is made; no devices when no flow is asked for.

    The torch TV-L1: one per GPU, in a ``RingSolver`` (a process of its own, fed through shared
    memory) unless ``plan.gpu_solver_in`` says "thread"; with none, ``cpu_solvers()`` one-thread
    solvers, each in a ``SolverProcess`` when there are several. OpenCV's (TV-L1, DIS,
    Farneback): one per GPU with OpenCV's CUDA TV-L1, else one per usable core, in threads of this
    process."""
    if not params.flow_modalities:
        return (), None
    backend = plan.flow_backend(params.algorithm)
    if backend == "torch":
        cpu = cpu_solvers()

        in_process = plan.gpus and plan.gpu_solver_in == "process" and ring_available()

        def make(gpu: Optional[int]) -> BatchSolver:
            if gpu is None:
                return SolverProcess(params.tvl1) if cpu > 1 else one_thread_solver(params.tvl1)
            if in_process:
                return RingSolver(partial(make_flow_fn, params.tvl1, gpu, "torch", "tvl1"), gpu)
            return make_flow_fn(params.tvl1, gpu, "torch", "tvl1")

        return plan.gpus or (None,) * cpu, make

    def make_pairwise(gpu: Optional[int]) -> BatchSolver:
        return PairSolver(make_flow_fn(params.tvl1, gpu, backend, params.algorithm))

    on_gpu = backend == "opencv-cuda"
    return (plan.gpus or (0,)) if on_gpu else (None,) * usable_cores(), make_pairwise


Progress = Callable[[str, int], None]
"""Told as work goes on inside videos: ``("frames", n)`` frames decoded, ``("pairs", n)`` frame
pairs whose flow is solved (a warped flow's second pass not counted)."""


def engine_results(jobs: list[Job], params: ExtractParams, plan: RunPlan = RunPlan(),
                   say: Callable[[str], None] = print,
                   make_solver: Optional[SolverFactory] = None,
                   progress: Progress = lambda what, n: None) -> Iterator[VideoResult]:
    """A ``VideoResult`` for every job (its video's ``params`` modalities that ``job.modalities``
    names), as each is finished, in completion order; ``progress`` hears of the frames and pairs
    done meanwhile.

    ``make_solver`` replaces the solvers of ``solvers``: one per GPU of ``plan``, or one CPU one."""
    if not jobs:
        return
    devices, make = solvers(params, plan)
    if make_solver is not None and devices:
        devices, make = plan.gpus or (None,), make_solver
    engine = _Engine(jobs, params, plan, say, devices, make, progress)
    try:
        yield from engine.run()
    finally:
        engine.close()


def extract_one(item: VideoItem, params: ExtractParams, plan: RunPlan = RunPlan(workers=0),
                progress: Progress = lambda what, n: None) -> VideoResult:
    """``params.modalities`` of one video, decoded in a thread of this process by default (no
    process to start); its failure is the result's ``error``. ``progress`` as ``engine_results``."""
    return next(iter(list(engine_results([Job(item, params.modalities)], params, plan,
                                         say=lambda line: None, progress=progress))))


class _Engine:
    def __init__(self, jobs: list[Job], params: ExtractParams, plan: RunPlan, say,
                 devices: tuple[Optional[int], ...], make_solver: Optional[SolverFactory],
                 progress: Progress = lambda what, n: None):
        self.say = say
        self.progress = progress
        self.params = params
        self.flow_backend = plan.flow_backend(params.algorithm)
        self.events: queue.Queue = queue.Queue()
        # OpenCV's solvers run side by side in threads, one per core: each with one thread.
        self.saved_cv_threads = cv2.getNumThreads()
        if devices and None in devices:
            cv2.setNumThreads(1)
        self.devices = [_Device(i, gpu, make_solver, plan.batch_pairs, self.events)
                        for i, gpu in enumerate(devices)]
        self.videos: dict[int, _Video] = {}
        self.jobs = dict(enumerate(jobs))
        self.left = len(jobs)            # videos not yet given back
        self.groups: dict[tuple[int, int], deque] = {}   # frame size -> pairs waiting for a solver
        self.waiting = 0                 # pairs in groups
        self.homographies = 0            # homographies being estimated
        self.encodes = 0                 # flows being quantised and encoded
        self.to_encode: list = []        # flows to encode, sent to the threads after each round
        self.decoded: set[int] = set()   # videos the decoding side is done with (ended or failed)
        self.failed: set[int] = set()
        self.input_done = False          # every video is decoded: no more frames will come
        self.reported: set = set()
        self.encode_threads = max(2, usable_cores())
        self.pool = ThreadPoolExecutor(max_workers=self.encode_threads, thread_name_prefix="tsn-encode")

        # Decoding workers: spawned processes (a fork could inherit CUDA state), or with 0 workers
        # one thread; each talks to this process over a pipe of its own (no named semaphore, no
        # feeder thread: nothing to leak or to unlink twice at exit), so a worker is AHEAD videos
        # ahead at most and blocks while this process does not read it.
        self.in_process = plan.workers == 0
        self.ctx = multiprocessing.get_context("spawn")
        self.decoding = _Decoding(params.size, params.short_side, params.max_frames,
                                  plan.decoder_threads, plan.decoders, params.jpeg_quality)
        self.pending: deque[_Task] = deque(map(self._task, self.jobs))  # not yet given to a worker
        self.procs: dict[int, object] = {}             # worker -> its process (or thread)
        self.conns: dict[int, Connection] = {}         # worker -> this process's end of its pipe
        self.assigned: dict[int, deque[int]] = {}      # worker -> videos sent to it, oldest first
        self.wake_r, self.wake_w = multiprocessing.Pipe(duplex=False)  # wakes the reader to stop
        for wid in range(max(1, min(plan.workers, len(jobs)))):
            self._start_worker(wid)

        # The reader thread moves the workers' messages to ``events`` while fewer than ``cap``
        # pairs are in the parent; beyond that it stops reading, and the workers wait.
        self.cond = threading.Condition()
        self.in_transit = 0              # pairs read by the reader, not yet taken by the main loop
        self.load = 0                    # pairs in the parent: waiting, solved, being encoded...
        self.cap = self._cap()
        self.stopping = False
        self.reader = threading.Thread(target=self._read, name="tsn-reader", daemon=True)
        self.reader.start()

    # -- workers and the reader thread -----------------------------------------------------
    def _start_worker(self, wid: int) -> None:
        mine, theirs = multiprocessing.Pipe()
        if self.in_process:
            p = threading.Thread(target=_decode_worker, args=(wid, None, theirs, self.decoding),
                                 name=f"tsn-decode-{wid}", daemon=True)
        else:
            p = self.ctx.Process(target=_decode_worker, args=(wid, os.getpid(), theirs, self.decoding),
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

    def _cap(self) -> int:
        biggest = sum(max([b for b in d.sizes.values() if b] or [AUTO_CPU_BATCH]) for d in self.devices)
        return max(4 * CHUNK, (DEPTH + 1) * biggest)

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
        by_key = {k: self._task(k) for k in keys}
        self.pending.extendleft(by_key[k] for k in reversed(keys))
        self.events.put(WorkerDied(wid, first, getattr(proc, "exitcode", None)))
        self._start_worker(wid)

    def _task(self, key: int) -> _Task:
        job = self.jobs[key]
        wanted = [modalities.get(m) for m in job.modalities]
        return _Task(key, str(job.item.path), tuple(m.name for m in wanted if not m.is_flow),
                     any(m.is_flow for m in wanted))

    def _set_load(self) -> None:
        with self.cond:
            self.load = (self.waiting + sum(d.queued for d in self.devices) + self.homographies
                         + self.encodes)
            self.cap = self._cap()
            self.cond.notify_all()

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> Iterator[VideoResult]:
        while self.left:
            finished: list[VideoResult] = []
            try:
                event = self.events.get(timeout=IDLE_S)
            except queue.Empty:
                event = None
            idle = event is None
            handled = 0
            while event is not None:
                self._handle(event, finished)
                handled += 1
                if handled >= MAX_EVENTS:  # keep the devices fed under a stream of events
                    break
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    event = None
            self._flush_encodes()
            self._dispatch(flush=idle or self.input_done)
            self._set_load()
            for result in finished:
                self.left -= 1
                yield result

    def _handle(self, event, finished: list) -> None:
        if isinstance(event, (Started, Frames, Ended, Failed)):
            self._message(event, finished)
        elif isinstance(event, WorkerDied):
            if event.key is not None:
                self._decoded(event.key)
                self._fail(event.key, f"unexpected WorkerDied: the decoding process died (exit code "
                                      f"{event.exitcode})", finished)
        elif isinstance(event, Probed):
            device, size = event.device, event.size
            device.sizes[size] = event.batch
            if (device.name, size) not in self.reported and not device.batch_pairs:
                self.reported.add((device.name, size))
                self.say(f"batch pairs auto: {size[1]}x{size[0]} frames on {device.name}: {event.text}")
        elif isinstance(event, Solved):
            device, pairs, flows, failure = event.device, event.pairs, event.flows, event.failure
            device.queued -= len(pairs)
            device.batches -= 1
            size = pairs[0].prev.shape
            limit = device.sizes.get(size) or 1
            # half the batch that failed; a batch formed before an earlier halving (up to DEPTH
            # are in flight) that fails too is already accounted for
            if failure is not None and max(1, len(pairs) // 2) < limit:
                device.sizes[size] = max(1, len(pairs) // 2)
                self.say(f"a batch of {len(pairs)} pairs of {size[1]}x{size[0]} frames failed on "
                         f"{device.name} ({type(failure).__name__}: {str(failure)[:200]}); solved them "
                         f"one at a time; batches of {device.sizes[size]} from now on")
            self.progress("pairs", sum(not p.second for p in pairs))
            for pair, flow in zip(pairs, flows):
                self._solved(pair, flow, finished)
        elif isinstance(event, Homography):
            pair, future = event.pair, event.future
            self.homographies -= 1
            video = self._live(pair.key)
            if video is None:
                return
            video.pending -= 1
            try:
                flow, warped = future.result()
            except Exception as exc:  # noqa: BLE001
                self._fail(pair.key, error_message(exc), finished)
                return
            if warped is None:  # identity: the plain flow is the warped flow
                self._encode(video, pair, modalities.WARPED_FLOW, flow, finished)
            else:
                self._add_pair(video, _Pair(pair.key, pair.index, True, pair.prev, warped))
        elif isinstance(event, Encoded):
            for key, index, modality, result in event.future.result():
                self.encodes -= 1
                video = self._live(key)
                if video is None:
                    continue
                video.pending -= 1
                if isinstance(result, BaseException):
                    self._fail(key, error_message(result), finished)
                    continue
                video.encoded[modality][index] = result
                self._maybe_done(key, finished)

    def _live(self, key: int) -> Optional[_Video]:
        return self.videos.get(key)

    def _message(self, msg, finished: list) -> None:
        key = msg.key
        if isinstance(msg, Started):
            job = self.jobs[key]
            self.videos[key] = _Video(
                job.item, job.modalities, started=time.perf_counter(),
                encoded={m: {} for m in job.modalities if modalities.get(m).is_flow},
                frames={m: [] for m in job.modalities if not modalities.get(m).is_flow})
            return
        if isinstance(msg, Frames):
            with self.cond:
                self.in_transit -= msg.pairs
            video = self._live(key)
            if video is None:
                return
            for m, images in msg.images.items():
                video.frames[m] += images
            decoded = len(msg.grey) if msg.grey is not None else max(map(len, msg.images.values()), default=0)
            self.progress("frames", decoded)
            for i, grey in enumerate(() if msg.grey is None else msg.grey):
                if video.prev is not None:
                    self._add_pair(video, _Pair(key, msg.start + i - 1, False, video.prev, grey))
                video.prev = grey
            return
        self._decoded(key)
        if isinstance(msg, Ended):
            video = self._live(key)
            if video is None:
                return
            video.n, video.common = msg.count, msg.common
            video.prev = None
            self._maybe_done(key, finished)
        else:
            self._fail(key, msg.error, finished)

    def _decoded(self, key: int) -> None:
        self.decoded.add(key)
        self.input_done = len(self.decoded) == len(self.jobs)

    def _add_pair(self, video: _Video, pair: _Pair) -> None:
        video.pending += 1
        self.groups.setdefault(pair.prev.shape, deque()).append(pair)
        self.waiting += 1

    def _solved(self, pair: _Pair, flow, finished: list) -> None:
        video = self._live(pair.key)
        if video is None:
            return
        video.pending -= 1
        if isinstance(flow, BaseException):
            self._fail(pair.key, error_message(flow), finished)
            return
        if pair.second:
            self._encode(video, pair, modalities.WARPED_FLOW, flow, finished)
            return
        if video.wants_flow:
            self._encode(video, pair, modalities.PLAIN_FLOW, flow, finished)
        if video.wants_warped:
            video.pending += 1
            self.homographies += 1
            future = self.pool.submit(_camera, pair.prev, pair.cur, flow, self.params.warp)
            future.add_done_callback(lambda f, p=pair: self.events.put(Homography(p, f)))
        self._maybe_done(pair.key, finished)

    def _encode(self, video: _Video, pair: _Pair, modality: str, flow: np.ndarray, finished: list) -> None:
        video.pending += 1
        self.encodes += 1
        self.to_encode.append((pair.key, pair.index, modality, flow, self.params.bound,
                               self.params.jpeg_quality))

    def _flush_encodes(self) -> None:
        """Send the flows collected since the last call to the encoding threads in one task per
        thread rather than one per flow: every task and its event take the GIL, which the device
        threads need to launch work (docs/performance.md: with 16 threads contending, a modelled
        407 pairs/s GPU solver was fed at 251 pairs/s)."""
        jobs, self.to_encode = self.to_encode, []
        if not jobs:
            return
        size = math.ceil(len(jobs) / self.encode_threads)
        for i in range(0, len(jobs), size):
            future = self.pool.submit(_encode_many, jobs[i:i + size])
            future.add_done_callback(lambda f: self.events.put(Encoded(f)))

    def _maybe_done(self, key: int, finished: list) -> None:
        video = self.videos[key]
        if video.n is None or video.pending:
            return
        del self.videos[key]
        result = VideoResult(video.item)
        pairs = video.n - 1
        for m in video.modalities:
            channels = modalities.get(m).channels
            if m in video.frames:
                result.images[m] = {channels[0]: video.frames[m]}
            else:
                got = video.encoded[m]
                result.images[m] = {ch: [got[i][c] for i in range(pairs)] for c, ch in enumerate(channels)}
            result.meta[m] = replace(video.common, modality=m,
                                     parameters=self.params.parameters(m, self.flow_backend))
        result.pairs = pairs if video.encoded else 0
        result.seconds = time.perf_counter() - video.started
        finished.append(result)

    def _fail(self, key: int, error: str, finished: list) -> None:
        if key in self.failed:
            return
        self.failed.add(key)
        video = self.videos.pop(key, None)
        item = video.item if video else self.jobs[key].item
        if video is not None:  # drop its pairs still waiting; those being solved are ignored later
            for size, group in self.groups.items():
                kept = deque(p for p in group if p.key != key)
                self.waiting -= len(group) - len(kept)
                self.groups[size] = kept
        finished.append(VideoResult(item, error=error))

    # -- batching --------------------------------------------------------------------------
    def _dispatch(self, flush: bool) -> None:
        """Full batches to the least-loaded device with room; with ``flush``, partial ones too,
        to a device with nothing to do."""
        moved = True
        while moved:
            moved = False
            for size, group in self.groups.items():
                if not group:
                    continue
                ready = [d for d in self.devices if d.batches < DEPTH and d.batch_for(size)]
                if not ready:
                    continue
                device = min(ready, key=lambda d: (d.queued, d.batches))
                batch = device.sizes[size]
                if len(group) < batch and not (flush and device.batches == 0):
                    continue
                pairs = [group.popleft() for _ in range(min(batch, len(group)))]
                self.waiting -= len(pairs)
                pad = batch if device.solver.compiled else 0
                device.send(pairs, pad, self._bound(device, pairs))
                moved = True

    def _bound(self, device: _Device, pairs: list[_Pair]) -> Optional[float]:
        """The quantisation bound when the solver can quantise on its device and no pair's float
        flow is needed here (a first pass of warped flow: its homography), else None."""
        if not device.solver.quantizes:
            return None
        for p in pairs:
            video = self._live(p.key)
            if video is not None and video.wants_warped and not p.second:
                return None
        return self.params.bound

    # -- the end ---------------------------------------------------------------------------
    def close(self) -> None:
        """End everything the run started, in order, and wait for it: no thread of ours may be
        inside native code (an OpenCV solve, a decoder) once the interpreter goes down (see
        ``tsn_core.interrupts``). Interrupted (videos left), in-flight work is dropped: a decoding
        worker stops at its next message, a solver process is ended at once, a solver thread
        finishes the pair or batch it is in."""
        interrupted = self.left > 0
        with interrupts.deferred():
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
            for d in self.devices:
                d.stop(drop_queued=interrupted)
                if interrupted:  # a solver process need not finish its batch
                    d.solver.close(wait=False)
            for d in self.devices:
                d.thread.join(timeout=interrupts.SETTLE_S)
            self.pool.shutdown(wait=True, cancel_futures=True)
            cv2.setNumThreads(self.saved_cv_threads)
            self.wake_r.close()
            self.wake_w.close()


def _encode_many(jobs: list) -> list:
    """Quantise and JPEG-encode flows: ``(key, index, modality, flow, bound, quality)`` ->
    ``(key, index, modality, (x JPEG, y JPEG) or the exception)``."""
    out = []
    for key, index, modality, flow, bound, quality in jobs:
        try:
            out.append((key, index, modality, encode_flow(flow, bound, quality)))
        except Exception as exc:  # noqa: BLE001 - fails its video only
            out.append((key, index, modality, exc))
    return out


def _camera(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, params):
    """(plain flow, the warped frame or None when the homography is the identity)."""
    _, warped = camera_compensation(prev, cur, flow, params)
    return flow, warped
