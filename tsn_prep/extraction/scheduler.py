"""The scheduler: the one engine of every extraction, for every modality, flow algorithm and
backend. Decoding workers feed one solver per device.

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

Where each part lives: the workers in ``decoding`` (the run's side of them in ``workers``), the devices and their threads in ``devices``,
which solvers on which devices in ``solver_choice``, the auto batch size in ``batch_size``, the
events between them in ``events``; this module is the main loop that joins them.
"""
from __future__ import annotations

import math
import queue
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from tsn_core import interrupts, modalities
from tsn_core.machine import usable_cores
from tsn_core.meta import EntryMeta

from tsn_core.video_files import VideoItem
from .batch_size import AUTO_CPU_BATCH
from .decoding import CHUNK, DecodeTask, Decoding
from .devices import DEPTH, Device, Probed, Solved
from .events import Encoded, Ended, Failed, Frames, Homography, Pair, Started, WorkerDied
from .params import ExtractParams
from .plan import RunPlan
from .results import VideoResult, encode_flow, error_message
from .solver import SolverFactory
from .solver_choice import resolved, solvers
from .warp import camera_compensation
from .workers import DecodingWorkers

IDLE_S = 0.02              # no news this long: partial batches go to idle devices
MAX_EVENTS = 256           # events handled between two looks for batches to send


@dataclass(frozen=True)
class Job:
    """One video to extract, and the modalities of it to compute (those its store lacks)."""
    item: VideoItem
    modalities: tuple[str, ...]



@dataclass
class Video:
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

    ``make_solver`` replaces the solvers of ``solvers``: one per GPU of ``plan``, or one CPU one.
    The backend asked for (``plan.backend``) is resolved here (``solver_choice.resolved``):
    the solvers and every entry's metadata are handed the name of the one that runs."""
    if not jobs:
        return
    plan = resolved(params, plan)
    devices, make = solvers(params, plan)
    if make_solver is not None and devices:
        devices, make = plan.gpus or (None,), make_solver
    engine = Scheduler(jobs, params, plan, say, devices, make, progress)
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


class Scheduler:
    """One run: its decoding workers, devices and threads, and the main loop that joins them."""

    def __init__(self, jobs: list[Job], params: ExtractParams, plan: RunPlan, say,
                 devices: tuple[Optional[int], ...], make_solver: Optional[SolverFactory],
                 progress: Progress = lambda what, n: None):
        self.say = say
        self.progress = progress
        self.params = params
        self.flow_backend = plan.backend  # resolved by engine_results
        self.events: queue.Queue = queue.Queue()
        # OpenCV's solvers run side by side in threads, one per core: each with one thread.
        self.saved_cv_threads = cv2.getNumThreads()
        if devices and None in devices:
            cv2.setNumThreads(1)
        self.devices = [Device(i, gpu, make_solver, plan.batch_pairs, self.events)
                        for i, gpu in enumerate(devices)]
        self.videos: dict[int, Video] = {}
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

        decoding = Decoding(params.size, params.short_side, params.max_frames, plan.decoder_threads,
                            plan.decoders, params.jpeg_quality)
        self.workers = DecodingWorkers([self._task(key) for key in self.jobs], plan.workers, decoding,
                                       self.events, self._cap())

    # -- the decoding workers' flow control ----------------------------------------------
    def _cap(self) -> int:
        biggest = sum(max([b for b in d.sizes.values() if b] or [AUTO_CPU_BATCH]) for d in self.devices)
        return max(4 * CHUNK, (DEPTH + 1) * biggest)

    def _task(self, key: int) -> DecodeTask:
        job = self.jobs[key]
        wanted = [modalities.get(m) for m in job.modalities]
        return DecodeTask(key, str(job.item.path), tuple(m.name for m in wanted if not m.is_flow),
                          any(m.is_flow for m in wanted))

    def _set_load(self) -> None:
        self.workers.set_load(self.waiting + sum(d.queued for d in self.devices) + self.homographies
                              + self.encodes, self._cap())

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
                self._add_pair(video, Pair(pair.key, pair.index, True, pair.prev, warped))
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

    def _live(self, key: int) -> Optional[Video]:
        return self.videos.get(key)

    def _message(self, msg, finished: list) -> None:
        key = msg.key
        if isinstance(msg, Started):
            job = self.jobs[key]
            self.videos[key] = Video(
                job.item, job.modalities, started=time.perf_counter(),
                encoded={m: {} for m in job.modalities if modalities.get(m).is_flow},
                frames={m: [] for m in job.modalities if not modalities.get(m).is_flow})
            return
        if isinstance(msg, Frames):
            self.workers.taken(msg.pairs)
            video = self._live(key)
            if video is None:
                return
            for m, images in msg.images.items():
                video.frames[m] += images
            decoded = len(msg.grey) if msg.grey is not None else max(map(len, msg.images.values()), default=0)
            self.progress("frames", decoded)
            for i, grey in enumerate(() if msg.grey is None else msg.grey):
                if video.prev is not None:
                    self._add_pair(video, Pair(key, msg.start + i - 1, False, video.prev, grey))
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

    def _add_pair(self, video: Video, pair: Pair) -> None:
        video.pending += 1
        self.groups.setdefault(pair.prev.shape, deque()).append(pair)
        self.waiting += 1

    def _solved(self, pair: Pair, flow, finished: list) -> None:
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
            future = self.pool.submit(camera, pair.prev, pair.cur, flow, self.params.warp)
            future.add_done_callback(lambda f, p=pair: self.events.put(Homography(p, f)))
        self._maybe_done(pair.key, finished)

    def _encode(self, video: Video, pair: Pair, modality: str, flow: np.ndarray, finished: list) -> None:
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
            future = self.pool.submit(encode_many, jobs[i:i + size])
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

    def _bound(self, device: Device, pairs: list[Pair]) -> Optional[float]:
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
            self.workers.stop(interrupted)
            for d in self.devices:
                d.stop(drop_queued=interrupted)
                if interrupted:  # a solver process need not finish its batch
                    d.solver.close(wait=False)
            for d in self.devices:
                d.thread.join(timeout=interrupts.SETTLE_S)
            self.pool.shutdown(wait=True, cancel_futures=True)
            cv2.setNumThreads(self.saved_cv_threads)
            self.workers.close_wake()


def encode_many(jobs: list) -> list:
    """Quantise and JPEG-encode flows: ``(key, index, modality, flow, bound, quality)`` ->
    ``(key, index, modality, (x JPEG, y JPEG) or the exception)``."""
    out = []
    for key, index, modality, flow, bound, quality in jobs:
        try:
            out.append((key, index, modality, encode_flow(flow, bound, quality)))
        except Exception as exc:  # noqa: BLE001 - fails its video only
            out.append((key, index, modality, exc))
    return out


def camera(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, params):
    """(plain flow, the warped frame or None when the homography is the identity)."""
    _, warped = camera_compensation(prev, cur, flow, params)
    return flow, warped

