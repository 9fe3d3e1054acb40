"""How fast the flow engine's host side can go: ``tsn-prep extract-flow --backend torch`` through
the batching engine (real decoding workers, pairing, JPEG threads, store writes) with a modelled
solver that answers with real TV-L1 flows, so the GPU is taken out of the picture.

    python -m tools.bench.engine_host VIDEOS OUT [--workers 2] [--flows FLOWS.npz] [--batch 128]
                                     [--solver-rate 407] [--solver-steps 250] [--solver-in thread|process]
    python -m tools.bench.engine_host VIDEOS OUT --compare [--repeats 3] [--copies 8] [--write-docs]

``--solver-rate R`` models a GPU solver of R pairs/s (it sleeps n/R per batch of n, in
``--solver-steps`` sleeps: each a return to Python that needs the GIL back, as each launch, graph
replay and stopping test of the real solver does): then the run's pairs/s against R, and how busy
the modelled solver was, show whether the pipeline keeps a solver of that speed fed.
``--solver-in``: the solver in a thread of the run's process (the engine's way before
``tsn_prep.extraction.solver_ring``) or in a process of its own fed through shared-memory slots.

``--compare``: both, interleaved (``--repeats`` rounds, the order rotated), for each of
``--encode-threads-list``; medians, and each run's host cost per pair in core-milliseconds split
into decoding (the worker processes), encoding (the JPEG threads), the store writes, the rest of
the run's process (main loop, reader, solver-driving threads) and the solver's own process; plus
JPEG encoders (cv2, simplejpeg, imagecodecs) on the same real quantised flows, images/s with 1 and
2 threads, and whether their bytes equal cv2's.

Without ``--flows``, the modelled solver's flows are OpenCV TV-L1 flows of the first pair of each
clip (``--flows``: an npz with a ``flow`` array (N, H, W, 2) at the clips' frame size).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np

from tools.bench.common import (add_output_options, busy_seconds, code_version, display_path, find_clips,
                                finish, log, machine_info, median, now, rotated, stamp)


def synthetic_flows(h: int, w: int, n: int = 8) -> np.ndarray:
    """Smooth flows of a few pixels (JPEG costs what it costs on real flow, not on noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([np.stack([3 * np.sin(x / 40 + k) + 0.5 * np.cos(y / 17),
                               2 * np.cos(y / 30 + k) - 0.3 * np.sin(x / 23)], axis=-1)
                     for k in range(n)]).astype(np.float32)


class CannedSolver:
    """Stands for the torch TV-L1: returns stored flows (cycled) for a batch, instantly or, with
    ``rate``, after ``n / rate`` seconds of sleep (a GPU solver of that many pairs/s: the solver
    thread waits without using a core, as it does while a GPU computes). Picklable, so it can run
    in a ``RingSolver``'s child. ``busy``: modelled seconds solving; ``elapsed``: seconds inside
    ``batch`` (more than ``busy`` by the waits for the GIL after each sleep: on a GPU, idle time
    inside a batch); ``idle``: seconds between the end of a batch and the start of the next;
    ``first``/``last``: when solving started and ended (``time.perf_counter``, comparable across
    processes on Linux). With ``report`` (a path), ``close`` writes these counters there, with
    its process's CPU seconds when it was made and at the end (``cpu_ready``, ``cpu_s``): how a
    ring's child reports them (the ring carries no benchmark counters)."""

    name = "torch"
    batches = True
    compiled = False

    def __init__(self, flows: np.ndarray, rate: float = 0.0, steps: int = 1, quantizes: bool = True,
                 planar: bool = False, report: Optional[str] = None):
        self.flows, self.rate, self.steps, self.planar = flows, rate, steps, planar
        self.quantizes = quantizes  # as the torch solver: on the device, before the copy to the host
        self.levels: dict = {}      # bound -> the canned flows quantised
        self.busy = 0.0
        self.elapsed = 0.0
        self.idle = 0.0
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.report = report
        self.cpu_ready = time.process_time()

    def batch(self, prev, cur, bound=None) -> list:
        start = time.perf_counter()
        if self.last is not None:
            self.idle += start - self.last
        if self.first is None:
            self.first = start
        n, h, w = np.asarray(prev).shape
        if self.rate:
            for _ in range(self.steps):  # each wake-up needs the GIL back, as each launch does
                time.sleep(n / self.rate / self.steps)
            self.busy += n / self.rate
        f = self.flows
        if f.shape[1:3] != (h, w):
            f = synthetic_flows(h, w)
            self.flows = f
        if bound is not None:
            if bound not in self.levels:
                from tsn_prep.quantize import quantize
                q = quantize(f, bound)
                # planar: (H, W, 2) views of (2, H, W) memory, as a RingSolver's child gets them
                # from the GPU (copied into its slot by DMA, not by a CPU transposition)
                self.levels[bound] = (np.ascontiguousarray(q.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
                                      if self.planar else q)
            f = self.levels[bound]
        self.last = time.perf_counter()
        self.elapsed += self.last - start
        return [f[i % len(f)] for i in range(n)]  # views: the real solver's output is not copied either

    def stats(self) -> dict:
        """The counters (see the class's docstring)."""
        return {"busy": self.busy, "elapsed": self.elapsed, "idle": self.idle, "first": self.first,
                "last": self.last, "cpu_ready": self.cpu_ready, "cpu_s": time.process_time()}

    def close(self, wait: bool = True) -> None:
        """With ``report``: the counters into that file (a ring's child closes its solver last)."""
        if self.report:
            Path(self.report).write_text(json.dumps(self.stats()))


# -- flows and encoders ----------------------------------------------------------------------

def real_flows(clips: list[Path], size: tuple[int, int]) -> np.ndarray:
    """OpenCV TV-L1 (default settings) of the first pair of each clip, at ``size`` (w, h)."""
    import cv2

    from tsn_prep.extraction.backends import OpenCVTVL1
    from tsn_prep.video import VideoReader

    tvl1 = OpenCVTVL1()
    flows = []
    for clip in clips:
        a, b = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in VideoReader(clip, size, None, 2).frames()]
        flows.append(tvl1(a, b))
    return np.stack(flows).astype(np.float32)


def _encoders() -> dict:
    """name -> (version, encode(image, quality) -> bytes) of the JPEG encoders installed."""
    import cv2

    out = {"cv2": (cv2.__version__, lambda im, q: cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes())}
    try:
        import simplejpeg

        out["simplejpeg"] = (simplejpeg.__version__,
                             lambda im, q: simplejpeg.encode_jpeg(im[..., None], quality=q, colorspace="GRAY"))
        out["simplejpeg fastdct=False"] = (simplejpeg.__version__, lambda im, q: simplejpeg.encode_jpeg(
            im[..., None], quality=q, colorspace="GRAY", fastdct=False))
    except ImportError:
        pass
    try:
        import imagecodecs

        out["imagecodecs"] = (f"{imagecodecs.__version__} ({imagecodecs.jpeg8_version()})",
                              lambda im, q: imagecodecs.jpeg8_encode(im, level=q))
    except ImportError:
        pass
    return out


def measure_encoders(images: list[np.ndarray], quality: int, repeats: int, per_thread: int = 1500) -> list[dict]:
    """Images/s of each encoder on ``images`` (one-channel uint8), 1 and 2 threads (each thread
    encoding ``per_thread`` images in one task), encoders interleaved; and whether the bytes equal
    cv2's."""
    import cv2

    encoders = _encoders()
    ref = [encoders["cv2"][1](im, quality) for im in images]
    runs: dict = {(name, t): [] for name in encoders for t in (1, 2)}
    for r in range(repeats):
        for name in rotated(list(encoders), r):
            fn = encoders[name][1]
            for threads in (1, 2):
                def work(k, fn=fn):
                    for j in range(per_thread):
                        fn(images[(k + j) % len(images)], quality)
                with ThreadPoolExecutor(threads) as pool:
                    t0 = time.perf_counter()
                    list(pool.map(work, range(threads)))
                    runs[(name, threads)].append(threads * per_thread / (time.perf_counter() - t0))
    rows = []
    for name, (version, fn) in encoders.items():
        got = [fn(im, quality) for im in images]
        same_pixels = all(np.array_equal(cv2.imdecode(np.frombuffer(a, np.uint8), 0),
                                         cv2.imdecode(np.frombuffer(b, np.uint8), 0)) for a, b in zip(got, ref))
        rows.append({"encoder": name, "version": version,
                     "one": median(runs[(name, 1)]), "one_runs": runs[(name, 1)],
                     "two": median(runs[(name, 2)]), "two_runs": runs[(name, 2)],
                     "bytes_equal": sum(a == b for a, b in zip(got, ref)), "images": len(images),
                     "pixels_equal": same_pixels, "mean_bytes": float(np.mean([len(g) for g in got]))})
    return rows


# -- what one run costs, where ---------------------------------------------------------------

CPU_DIR_ENV = "TSN_BENCH_CPU_DIR"


def timed_decode_worker(*args) -> None:
    """The engine's decoding worker, then its process's CPU seconds into $TSN_BENCH_CPU_DIR."""
    from tsn_prep.extraction import decoding  # in the worker's process: the real one

    start = time.process_time()  # after the process's start-up and imports
    try:
        decoding.decode_worker(*args)
    finally:
        folder = os.environ.get(CPU_DIR_ENV)
        if folder:
            Path(folder, f"decode-{os.getpid()}.json").write_text(
                json.dumps({"start": start, "cpu": time.process_time()}))


def _thread_kind(name: str) -> str:
    if name == "MainThread":
        return "main"
    if name.endswith("-replies"):
        return "solver_replies"
    for prefix, kind in (("tsn-solver", "solver_thread"), ("tsn-reader", "reader"), ("tsn-encode", "encode"),
                         ("tsn-decode", "decode_thread")):
        if name.startswith(prefix):
            return kind
    return "other"


class ThreadCPU:
    """CPU seconds of this process's threads by kind (``_thread_kind``), sampled from
    /proc/self/task every ``every`` s (a thread that ends loses at most that much)."""

    def __init__(self, every: float = 0.05):
        self.every, self.last, self.stop = every, {}, threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for t in threading.enumerate():
            if t.native_id is None or t is self.thread:
                continue
            try:
                fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.last[t.native_id] = (_thread_kind(t.name), (int(fields[11]) + int(fields[12])) / tick)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self._sample()

    def __enter__(self) -> "ThreadCPU":
        self._sample()
        self.start = dict(self.last)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()

    def by_kind(self) -> dict:
        out: dict = {}
        for tid, (kind, cpu) in self.last.items():
            out[kind] = out.get(kind, 0.0) + cpu - self.start.get(tid, (kind, 0.0))[1]
        return out


def _cpu(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def one_run(videos: Path, out: Path, flows: np.ndarray, args, solver_in: str, encode_threads: Optional[int],
            rate: float) -> dict:
    """One extraction with the modelled solver of ``rate`` pairs/s; its figures."""
    import tsn_prep.extraction.run as run_module
    from tsn_prep.extraction import batch_size, devices, scheduler, workers
    from tsn_prep.extraction.params import ExtractParams
    from tsn_prep.extraction.plan import RunPlan
    from tsn_prep.extraction.solver_ring import RingSolver

    made: list = []
    counts = {"batches": 0, "encode_tasks": 0, "flows_encoded": 0, "encode_cpu": 0.0, "store_cpu": 0.0}
    lock = threading.Lock()
    quantizes = args.quantize_on == "device"

    stats_file = Path(tempfile.mkdtemp(prefix="engine-host-solver-")) / "solver.json"

    def make(gpu):
        if solver_in == "process":
            made.append(RingSolver(partial(CannedSolver, flows, rate, args.solver_steps, quantizes, planar=True,
                                           report=str(stats_file))))
        else:
            made.append(CannedSolver(flows, rate, args.solver_steps, quantizes))
        return made[-1]

    real_encode_many, real_send = scheduler.encode_many, devices.Device.send
    real_put = run_module.ShardWriter.put_video

    def encode_many(jobs):
        t0 = time.thread_time()
        try:
            return real_encode_many(jobs)
        finally:
            with lock:
                counts["encode_cpu"] += time.thread_time() - t0
                counts["encode_tasks"] += 1
                counts["flows_encoded"] += len(jobs)

    def send(device, pairs, *rest):
        counts["batches"] += 1
        return real_send(device, pairs, *rest)

    def put_video(self, *a, **k):
        t0 = time.thread_time()
        try:
            return real_put(self, *a, **k)
        finally:
            counts["store_cpu"] += time.thread_time() - t0

    saved = {"solvers": scheduler.solvers, "usable_cores": scheduler.usable_cores,
             "decode_worker": workers.decode_worker}
    cpu_dir = Path(tempfile.mkdtemp(prefix="engine-host-cpu-"))
    os.environ[CPU_DIR_ENV] = str(cpu_dir)
    scheduler.solvers = lambda params, plan: ((None,), make)  # the modelled GPU: one solver
    scheduler.encode_many, devices.Device.send, run_module.ShardWriter.put_video = encode_many, send, put_video
    if args.workers:  # worker processes: each times itself
        workers.decode_worker = timed_decode_worker
    if encode_threads:
        scheduler.usable_cores = lambda: encode_threads
    shutil.rmtree(out, ignore_errors=True)
    params = ExtractParams(modalities=("flow",), max_frames=8 if args.quick else None)
    plan = RunPlan(workers=args.workers, backend="torch", batch_pairs=args.batch or batch_size.AUTO_MAX_BATCH)
    try:
        me0, kids0, machine0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), busy_seconds()
        with ThreadCPU() as threads:
            t0 = time.perf_counter()
            summary = run_module.run_extraction(videos, out, params, plan, 0, 1, progress=False)
            wall = time.perf_counter() - t0
        me1, kids1, machine1 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), busy_seconds()
    finally:
        scheduler.solvers, scheduler.usable_cores, workers.decode_worker = (
            saved["solvers"], saved["usable_cores"], saved["decode_worker"])
        scheduler.encode_many, devices.Device.send = real_encode_many, real_send
        run_module.ShardWriter.put_video = real_put
        del os.environ[CPU_DIR_ENV]
    reports = [json.loads(p.read_text()) for p in cpu_dir.glob("decode-*.json")]
    decode = [r["cpu"] - r["start"] for r in reports]
    decode_startup = sum(r["start"] for r in reports)
    shutil.rmtree(cpu_dir, ignore_errors=True)
    parent, children = me1 - me0, kids1 - kids0
    solver = made[0]
    if solver_in == "process":
        st = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        shutil.rmtree(stats_file.parent, ignore_errors=True)
        busy, idle, elapsed = st.get("busy") or 0.0, st.get("idle"), st.get("elapsed")
        child_cpu, child_startup = st.get("cpu_s", 0.0) - st.get("cpu_ready", 0.0), st.get("cpu_ready", 0.0)
        first, last = st.get("first"), st.get("last")
    else:
        busy, idle, elapsed, first, last = solver.busy, solver.idle, solver.elapsed, solver.first, solver.last
        child_cpu = child_startup = 0.0
    pairs = summary.pairs
    kinds = threads.by_kind()
    per_pair = lambda s: 1000 * s / pairs if pairs else None  # noqa: E731 - core-ms per pair
    batches = max(counts["batches"], 1)
    wake = {"solver_steps": args.solver_steps if solver_in == "thread" and rate else 0,
            "control": 2 if solver_in == "process" else 1,
            "encoder_calls": 2 * counts["flows_encoded"] / batches,
            "encode_tasks": counts["encode_tasks"] / batches}
    wake["total"] = sum(wake.values())
    rest = parent - counts["encode_cpu"] - counts["store_cpu"]
    return {"solver_in": solver_in, "encode_threads": encode_threads or scheduler.usable_cores(), "solver_rate": rate,
            "pairs": pairs, "videos": summary.done, "failed": len(summary.failed), "wall": wall,
            "rate": pairs / wall, "steady_rate": pairs / (last - first) if first and last and last > first else None,
            "solver_busy": busy / wall, "solver_idle_s": idle, "batches": counts["batches"],
            # the modelled GPU's idle share inside its batches (waiting for the GIL between steps)
            "in_batch_idle": 1 - busy / elapsed if elapsed else None,
            "other_load": max(0.0, (machine1 - machine0 - parent - children) / wall),
            "cpu_ms_per_pair": {"decode": per_pair(sum(decode)), "encode": per_pair(counts["encode_cpu"]),
                                "store": per_pair(counts["store_cpu"]), "engine": per_pair(rest),
                                "solver_process": per_pair(child_cpu),
                                "parent": per_pair(parent), "children": per_pair(children)},
            "threads_ms_per_pair": {k: per_pair(v) for k, v in sorted(kinds.items())},
            "wakeups_per_batch": wake, "decode_workers_reported": len(decode),
            "startup_cpu_s": {"decode": decode_startup, "solver_process": child_startup}}


def copies_of(videos: Path, copies: int, into: Path) -> Path:
    """A folder of ``copies`` copies (symlinks) of every clip in ``videos``: distinct videos."""
    shutil.rmtree(into, ignore_errors=True)
    for k in range(copies):
        (into / f"c{k:02d}").mkdir(parents=True)
        for clip in find_clips(videos):
            (into / f"c{k:02d}" / clip.name).symlink_to(clip.resolve())
    return into


def _median_row(runs: list[dict]) -> dict:
    keys = ("rate", "steady_rate", "solver_busy", "solver_idle_s", "in_batch_idle", "wall", "other_load")
    row = {k: median([r[k] for r in runs if r[k] is not None]) for k in keys}
    for group in ("cpu_ms_per_pair", "threads_ms_per_pair", "wakeups_per_batch"):
        names = sorted({k for r in runs for k in r[group]})
        row[group] = {k: median([r[group].get(k) or 0.0 for r in runs]) for k in names}
    row["per_repeat"] = [r["rate"] for r in runs]
    row["pairs"], row["videos"], row["failed"] = runs[0]["pairs"], runs[0]["videos"], sum(r["failed"] for r in runs)
    row["encode_threads"] = runs[0]["encode_threads"]
    return row


def compare(args, videos: Path, flows: np.ndarray) -> dict:
    """Thread against process, interleaved, for each (solver rate, encode threads) of
    ``args.configs``; and the encoders."""
    from tsn_prep.extraction.params import ExtractParams
    from tsn_prep.quantize import quantize

    quality = ExtractParams().jpeg_quality
    images = [np.ascontiguousarray(q[..., c]) for q in quantize(flows, ExtractParams().bound) for c in (0, 1)]
    log(f"encoders on {len(images)} real quantised flow images ...")
    encoders = measure_encoders(images, quality, args.repeats)
    modes = ["thread", "process"]
    configs = []
    for rate, threads in args.configs:
        runs: dict = {m: [] for m in modes}
        for r in range(args.repeats):
            for mode in rotated(modes, r):
                log(f"  solver {rate:g} pairs/s, encode threads {threads or 'default'}, repeat "
                    f"{r + 1}/{args.repeats}: solver in a {mode} ...")
                fig = one_run(videos, args.out, flows, args, mode, threads, rate)
                log(f"    {fig['rate']:.0f} pairs/s, solver busy {100 * fig['solver_busy']:.0f}%, "
                    f"other load {fig['other_load']:.2f} cores")
                runs[mode].append(fig)
        rows = {m: _median_row(runs[m]) for m in modes}
        ratios = [p["rate"] / t["rate"] for p, t in zip(runs["process"], runs["thread"])]
        configs.append({"solver_rate": rate, "encode_threads": rows["thread"]["encode_threads"], "rows": rows,
                        "ratio": median(ratios), "ratios": ratios, "runs": runs})
    return {"encoders": encoders, "configs": configs}


def predict(row: dict, cores: int, imencode_ms: float) -> dict:
    """What ``cores`` cores sustain by the per-pair costs of ``row``: all the host work spread
    over the cores, and the run's process's GIL (its CPU less the encoder's native time)."""
    c = row["cpu_ms_per_pair"]
    total = c["decode"] + c["parent"] + c["solver_process"]
    gil = max(c["parent"] - 2 * imencode_ms, 1e-9)
    main = row["threads_ms_per_pair"].get("main", 0.0)
    return {"cores": cores, "host_ms_per_pair": total, "by_cores": 1000 * cores / total,
            "gil_ms_per_pair": gil, "by_gil": 1000 / gil, "main_ms_per_pair": main,
            "by_main": 1000 / main if main else None,
            "decode_cores_at_1500": 1.5 * c["decode"]}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", type=Path)
    p.add_argument("out", type=Path, help="store to write (deleted first)")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--batch", type=int, help="pairs per solver call (default: the engine's AUTO_MAX_BATCH)")
    p.add_argument("--flows", type=Path, help="npz with real flows ('flow': N, H, W, 2)")
    p.add_argument("--synthetic-flows", action="store_true", help="smooth synthetic flows instead of TV-L1's")
    p.add_argument("--solver-rate", type=float, default=0.0,
                   help="pairs/s of a modelled GPU solver (sleeps n/rate per batch); 0: instant")
    p.add_argument("--solver-steps", type=int, default=1,
                   help="the modelled solve as this many sleeps, each a return to Python that needs the GIL")
    p.add_argument("--solver-in", choices=("thread", "process"), default="thread",
                   help="the solver in a thread of the run's process, or in a process fed through shared memory")
    p.add_argument("--quantize-on", choices=("device", "host"), default="device",
                   help="where flows are quantised: by the solver (the torch solver's way) or by the host")
    p.add_argument("--encode-threads", type=int, help="the engine's encoding threads (default: one per usable core)")
    p.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (s) for the run")
    p.add_argument("--quick", action="store_true", help="only the first 8 frames of each video")
    p.add_argument("--copies", type=int, default=1, help="run over this many copies of the clips (distinct videos)")
    p.add_argument("--compare", action="store_true", help="thread against process, interleaved, and the encoders")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", default="1500:0,1500:16,300:16",
                   type=lambda s: [(float(c.split(":")[0]), int(c.split(":")[1])) for c in s.split(",")],
                   help="--compare: RATE:THREADS,... modelled solver pairs/s and encode threads (0: the "
                        "engine's default) of each comparison (default: 1500:0,1500:16,300:16)")
    p.add_argument("--predict-cores", type=int, default=16, help="extrapolate the per-pair costs to this many cores")
    add_output_options(p)
    args = p.parse_args(argv)

    from tsn_prep.extraction.batch_size import AUTO_MAX_BATCH
    from tsn_prep.extraction.params import ExtractParams

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    size = ExtractParams().size
    started, t0 = now(), time.perf_counter()
    videos = args.videos
    if args.copies > 1:
        videos = copies_of(args.videos, args.copies, Path(tempfile.mkdtemp(prefix="engine-host-videos-")) / "v")
    if args.flows:
        flows, flows_from = np.load(args.flows)["flow"], display_path(args.flows)
    elif args.synthetic_flows:
        flows, flows_from = synthetic_flows(size[1], size[0]), "synthetic"
    else:
        log("OpenCV TV-L1 flows of the first pair of each clip ...")
        flows, flows_from = real_flows(find_clips(args.videos), size), "OpenCV TV-L1, first pair of each clip"
    common = {"section": "engine_host", "template": "engine_host",
              **stamp("tools.bench.engine_host", sys.argv[1:] if argv is None else argv, started, t0),
              "solver_rate": args.solver_rate, "solver_steps": args.solver_steps, "workers": args.workers,
              "batch": args.batch or AUTO_MAX_BATCH, "quantize_on": args.quantize_on,
              "flows_from": flows_from, "copies": args.copies, "quick": args.quick,
              "videos_dir": display_path(args.videos)}
    try:
        if not args.compare:
            fig = one_run(videos, args.out, flows, args, args.solver_in, args.encode_threads, args.solver_rate)
            figures = {**common, **fig}
        else:
            result = compare(args, videos, flows)
            cv2_one = next(r for r in result["encoders"] if r["encoder"] == "cv2")["one"]
            imencode_ms = 1000 / cv2_one
            for cfg in result["configs"]:
                cfg["predict"] = {m: predict(cfg["rows"][m], args.predict_cores, imencode_ms) for m in cfg["rows"]}
            figures = {**common, "compare": True, **result, "repeats": args.repeats, "imencode_ms": imencode_ms,
                       "machine": machine_info(), "code": code_version(),
                       "minutes": (time.perf_counter() - t0) / 60}
    finally:
        if videos != args.videos:
            shutil.rmtree(videos.parent, ignore_errors=True)
    finish("engine_host", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
