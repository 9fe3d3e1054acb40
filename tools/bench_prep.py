#!/usr/bin/env python
"""Benchmark of the tsn-prep extraction pipeline (a benchmark, not a test).

Measures, on the real clips of ``<repo>/../shared/data/videos``:

1. flow pipeline overhead: ``run_extraction`` with modalities ("flow",), workers=1, divided by the
   bare ``cv2.optflow.DualTVL1OpticalFlow_create().calc()`` time on the same frame pairs
   (decoded, resized to 340x256 and converted to grey beforehand) -- target <= 1.10;
2. warped flow cost: ("warped_flow",) and ("flow", "warped_flow") over ("flow",) -- target <= 2.2;
3. RGB frames/s of extract-frames with workers=1 and workers=2, and the speed-up -- target >= 1.6,
   plus diagnostics of what limits that speed-up.

Timing on a shared machine is noisy, so every ratio is taken against a baseline measured in the
same run, repeats are interleaved (the order rotates between repeats) and medians are reported.

    python tools/bench_prep.py --quick               # about a minute or two
    python tools/bench_prep.py --write-docs          # about 10 minutes; updates docs/performance.md
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import io
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

import cv2
import joblib
import numpy as np
from joblib import Parallel, delayed
from joblib.externals.loky import get_reusable_executor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_section import write_section  # noqa: E402,F401  (a sibling module; bench_train uses it via bp)
from tsn_prep.extract import ExtractConfig, default_threads
from tsn_prep.flow import cuda_device_count
from tsn_prep.run import RunSummary, run_extraction
from tsn_prep.video import VideoReader

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = REPO.parent / "shared" / "data" / "videos"
DOCS = REPO / "docs" / "performance.md"
SIZE = (340, 256)

TARGET_FLOW_OVERHEAD = 1.10
TARGET_WARPED_OVER_FLOW = 2.2
TARGET_RGB_SPEEDUP = 1.6

FLOW_PIPELINES = {  # label -> modalities; measured against "bare TV-L1"
    "flow": ("flow",),
    "warped_flow": ("warped_flow",),
    "flow+warped_flow": ("flow", "warped_flow"),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work each measurement gets; --quick picks the small one."""

    flow_clips: tuple[str, ...]   # file names; () means every clip
    max_frames: int               # frames per clip for the flow runs (pairs = max_frames - 1)
    flow_repeats: int
    rgb_copies: int               # each clip listed this many times for the RGB runs
    rgb_repeats: int
    diag_repeats: int
    cpu_task_encodes: int         # JPEG encodes per process in the CPU-scaling check
    cpu_task_repeats: int


QUICK = Settings(flow_clips=("eyemakeup_ucf101like.avi", "carphone.mp4"), max_frames=3,
                 flow_repeats=3, rgb_copies=4, rgb_repeats=3, diag_repeats=2, cpu_task_encodes=3000,
                 cpu_task_repeats=3)
FULL = Settings(flow_clips=(), max_frames=4, flow_repeats=5, rgb_copies=10, rgb_repeats=5,
                diag_repeats=3, cpu_task_encodes=8000,
                cpu_task_repeats=5)


# --------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its children, finished or still running
    (joblib's loky workers stay alive between runs, so they are read from /proc)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    dead = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + dead.ru_utime + dead.ru_stime + _live_descendants_cpu()


def _live_descendants_cpu() -> float:
    parent, ticks = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])                  # ppid
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    mine, total, stack = {os.getpid()}, 0, [os.getpid()]
    while stack:
        pid = stack.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in mine:
                mine.add(child)
                stack.append(child)
                total += ticks[child]
    return total / TICK


def busy_seconds() -> float:
    """CPU time spent by the whole machine, all processes (/proc/stat, minus idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


@dataclasses.dataclass
class Timing:
    wall: float   # s
    cpu: float    # CPU s of this process and its workers
    other: float  # cores kept busy by OTHER processes meanwhile (noise indicator)


def timed(fn: Callable[[], object]) -> tuple[Timing, object]:
    c0, b0, t0 = cpu_seconds(), busy_seconds(), time.perf_counter()
    value = fn()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    other = max(0.0, (busy_seconds() - b0 - cpu) / wall)
    return Timing(wall, cpu, other), value


T = TypeVar("T")


@dataclasses.dataclass
class RetryPolicy:
    """A run during which other processes kept more than ``max_other`` cores busy is run again,
    at most ``retries`` times; the last attempt counts whatever happened. ``disturbed`` logs them."""

    max_other: float = 0.3
    retries: int = 2
    disturbed: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    def run(self, label: str, fn: Callable[[], T], timing: Callable[[T], Timing] = lambda r: r) -> T:
        for attempt in range(self.retries + 1):
            result = fn()
            other = timing(result).other
            if other <= self.max_other or attempt == self.retries:
                return result
            self.disturbed.append((label, other))
            log(f"  ({label}: other processes used {other:.2f} cores meanwhile; running it again)")
        raise AssertionError("unreachable")


def median(values: list[float]) -> float:
    return statistics.median(values)


def rotated(items: list, k: int) -> list:
    """The k-th rotation: interleaved repeats that do not always run the same thing first."""
    k %= len(items)
    return items[k:] + items[:k]


def repeat_text(n: int) -> str:
    return f"{n} interleaved repeat{'' if n == 1 else 's'}"


def fmt_list(values, spec: str = ".2f") -> str:
    return ", ".join(format(v, spec) for v in values)


def find_clips(videos: Path) -> list[Path]:
    clips = sorted(p for p in videos.iterdir() if p.suffix.lower() in (".mp4", ".avi"))
    if not clips:
        raise SystemExit(f"no .mp4/.avi clips in {videos}")
    return clips


def copy_clips(clips: list[Path], dest: Path, copies: int = 1) -> Path:
    """A directory holding every clip ``copies`` times, as distinct files with distinct names.

    Real copies rather than symlinks, so that the work does not depend on how list_videos treats
    several paths to one file (it has de-duplicated them by real path in some versions).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for clip in clips:
            shutil.copyfile(clip, dest / f"{clip.stem}__{k:03d}{clip.suffix}")
    return dest


def clip_info(clip: Path) -> tuple[str, int, int]:
    """(source WxH, frames decoded, frames declared) of one clip, decoded as the pipeline does."""
    reader = VideoReader(clip, SIZE)
    frames = sum(1 for _ in reader.frames())
    w, h = reader.info.source_size
    return f"{w}x{h}", frames, reader.info.declared_frames


_SEEN_MESSAGES: set[str] = set()


def extraction(src: Path, cfg: ExtractConfig, workers: int, scratch: Path) -> tuple[Timing, RunSummary]:
    """One timed run_extraction into a fresh store, deleted afterwards.

    Its stderr messages (tree.avi's frame-count warning, once per copy and run) are shown once.
    """
    out = Path(tempfile.mkdtemp(dir=scratch, prefix="store-"))
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            timing, summary = timed(lambda: run_extraction(src, out, cfg, workers=workers, progress=False))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        for line in messages.getvalue().splitlines():
            gist = line.split(": ", 2)[-1]  # without "warning: <path>: "
            if gist not in _SEEN_MESSAGES:
                _SEEN_MESSAGES.add(gist)
                log(f"  (tsn_prep says: {line})")
    if summary.failed:
        raise RuntimeError(f"extraction failed: {summary.failed}")
    return timing, summary


def shut_down_workers() -> None:
    """Stop joblib's reusable loky workers, so the next workers>1 run starts them as the CLI does."""
    get_reusable_executor().shutdown(wait=True)


def machine_info(clips: list[Path]) -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cap = cv2.VideoCapture(str(clips[0]))
    ffmpeg_threads = int(cap.get(cv2.CAP_PROP_N_THREADS))
    cap.release()
    framework = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                      if "Parallel framework" in line), "?")
    return {
        "CPU": model,
        "cores (os.cpu_count)": os.cpu_count(),
        "cores usable (sched_getaffinity)": len(os.sched_getaffinity(0)),
        "GPU": f"none (cv2 sees {cuda_device_count()} CUDA devices)",
        "Python": platform.python_version(),
        "platform": platform.platform(),
        "cv2 version": cv2.__version__,
        "cv2.getNumThreads()": cv2.getNumThreads(),
        "cv2 parallel framework": framework,
        "FFmpeg decoder threads (CAP_PROP_N_THREADS)": ffmpeg_threads,
        "joblib": joblib.__version__,
    }


# --------------------------------------------------------------------------- 1 + 2: flow

def grey_pairs(clips: list[Path], max_frames: int) -> list[tuple]:
    """Frame pairs exactly as the pipeline sees them: same decoder, same resize, then grey."""
    pairs = []
    for clip in clips:
        frames = VideoReader(clip, SIZE, None, max_frames).frames()
        greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        pairs += list(zip(greys, greys[1:]))
    return pairs


def bare_tvl1(pairs: list[tuple]) -> Timing:
    """OpenCV's TV-L1 alone with its default parameters (= tsn_prep's TVL1Params defaults)."""
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    return timed(lambda: [tvl1.calc(prev, nxt, None) for prev, nxt in pairs])[0]


def pipeline(src: Path, modalities: tuple[str, ...], s: Settings, pairs: int, scratch: Path) -> Timing:
    cfg = ExtractConfig(modalities=modalities, size=SIZE, max_frames=s.max_frames)
    timing, summary = extraction(src, cfg, 1, scratch)
    if summary.pairs != pairs:
        raise RuntimeError(f"the pipeline made {summary.pairs} pairs, the bare baseline {pairs}")
    return timing


def bench_flow(clips: list[Path], s: Settings, scratch: Path, policy: RetryPolicy) -> dict:
    """Bare TV-L1 and the three flow pipelines on the same pairs, interleaved."""
    src = copy_clips(clips, scratch / "flow-clips")
    pairs = grey_pairs(clips, s.max_frames)
    runs: dict[str, Callable[[], Timing]] = {"bare TV-L1": lambda: bare_tvl1(pairs)}
    for label, modalities in FLOW_PIPELINES.items():
        runs[label] = functools.partial(pipeline, src, modalities, s, len(pairs), scratch)

    log(f"[flow] warm-up (imports, the cached TV-L1 object, file cache); {len(pairs)} pairs per run")
    bare_tvl1(pairs[:1])
    pipeline(src, ("flow",), dataclasses.replace(s, max_frames=2), len(clips), scratch)

    results: dict[str, list[Timing]] = {label: [] for label in runs}
    for rep in range(s.flow_repeats):
        for label in rotated(list(runs), rep):
            t = policy.run(f"flow {label}", runs[label])
            results[label].append(t)
            log(f"[flow] repeat {rep + 1}/{s.flow_repeats} {label:17s} {t.wall:7.2f} s wall "
                f"{t.cpu:7.2f} s CPU  {len(pairs) / t.wall:5.2f} pairs/s  other load {t.other:.2f} cores")
    return {"clips": [c.name for c in clips], "max_frames": s.max_frames, "pairs": len(pairs),
            "repeats": s.flow_repeats, "runs": results}


def flow_ratios(flow: dict) -> dict[str, dict]:
    """name -> wall ratio of medians, CPU ratio of medians, per-repeat wall ratios, target."""
    runs = flow["runs"]
    out = {}
    for name, num, den, target in (("flow / bare TV-L1", "flow", "bare TV-L1", TARGET_FLOW_OVERHEAD),
                                   ("warped_flow / flow", "warped_flow", "flow", TARGET_WARPED_OVER_FLOW),
                                   ("flow+warped_flow / flow", "flow+warped_flow", "flow", None)):
        out[name] = {
            "wall": median([t.wall for t in runs[num]]) / median([t.wall for t in runs[den]]),
            "cpu": median([t.cpu for t in runs[num]]) / median([t.cpu for t in runs[den]]),
            "per_repeat": [a.wall / b.wall for a, b in zip(runs[num], runs[den])],
            "target": target,
        }
    return out


# --------------------------------------------------------------------------- 3: RGB

@contextlib.contextmanager
def ffmpeg_threads(threads: Optional[int]):
    """Set OPENCV_FFMPEG_THREADS meanwhile (None: leave FFmpeg's default). OpenCV reads it at every
    VideoCapture open, and workers started meanwhile inherit it."""
    if threads is None:
        yield
        return
    os.environ["OPENCV_FFMPEG_THREADS"] = str(threads)
    try:
        yield
    finally:
        del os.environ["OPENCV_FFMPEG_THREADS"]


Combo = tuple[int, Optional[int]]  # (workers, FFmpeg decoder threads or None for the default)


def rgb_run(src: Path, combo: Combo, scratch: Path, cold: bool) -> tuple[Timing, int]:
    workers, decoder_threads = combo
    with ffmpeg_threads(decoder_threads):
        if workers > 1 and cold:
            shut_down_workers()
        timing, summary = extraction(src, ExtractConfig(modalities=("rgb",), size=SIZE), workers, scratch)
    return timing, summary.frames


def rgb_runs(src: Path, combos: list[Combo], repeats: int, scratch: Path, policy: RetryPolicy,
             tag: str, cold: bool = True) -> tuple[dict[Combo, list[Timing]], int]:
    """Every combo once per repeat, in an order that rotates between repeats."""
    runs: dict[Combo, list[Timing]] = {c: [] for c in combos}
    frames = 0
    for rep in range(repeats):
        for combo in rotated(combos, rep):
            name = f"workers={combo[0]}" + (f" FFmpeg threads={combo[1]}" if combo[1] else "")
            t, frames = policy.run(f"rgb {tag} {name}", functools.partial(rgb_run, src, combo, scratch, cold),
                                   lambda r: r[0])
            runs[combo].append(t)
            log(f"[rgb:{tag}] repeat {rep + 1}/{repeats} {name:26s} {frames / t.wall:6.0f} frames/s "
                f"({frames} frames, {t.cpu / t.wall:.2f} CPU s/s, other load {t.other:.2f} cores)")
    return runs, frames


def speedup_summary(one: list[Timing], two: list[Timing], frames: int) -> dict:
    """Medians of workers=1 and workers=2 runs made in the same repeats, and the speed-up."""
    fps1, fps2 = [frames / t.wall for t in one], [frames / t.wall for t in two]
    return {
        "frames": frames, "repeats": len(one), "runs": {1: one, 2: two},
        "fps1": median(fps1), "fps2": median(fps2), "speedup": median(fps2) / median(fps1),
        "per_repeat": [b / a for a, b in zip(fps1, fps2)],
        "cores1": median([t.cpu / t.wall for t in one]),
        "cores2": median([t.cpu / t.wall for t in two]),
        "other": median([t.other for t in one + two]),
    }


def bench_rgb_variant(src: Path, repeats: int, scratch: Path, policy: RetryPolicy, tag: str,
                      cold: bool = True) -> dict:
    """workers=1 and workers=2 on the same list, interleaved."""
    runs, frames = rgb_runs(src, [(1, None), (2, None)], repeats, scratch, policy, tag, cold)
    return speedup_summary(runs[(1, None)], runs[(2, None)], frames)


def bench_decoder_threads(src: Path, repeats: int, scratch: Path, policy: RetryPolicy) -> tuple[dict, dict]:
    """FFmpeg's default decoder threads against one per process, for 1 and 2 workers, interleaved."""
    combos = [(1, None), (1, 1), (2, None), (2, 1)]
    runs, frames = rgb_runs(src, combos, repeats, scratch, policy, "decoder threads")
    return (speedup_summary(runs[(1, None)], runs[(2, None)], frames),
            speedup_summary(runs[(1, 1)], runs[(2, 1)], frames))


def worker_startup(repeats: int) -> list[float]:
    """Wall s for joblib/loky to start 2 workers that import tsn_prep (and so cv2): what a workers=2
    run pays before its first video."""
    def start():
        shut_down_workers()
        Parallel(n_jobs=2)(delayed(default_threads)(2) for _ in range(2))
    return [timed(start)[0].wall for _ in range(repeats)]


def encode_loop(n: int) -> float:
    """A purely CPU-bound, single-threaded task: wall s for ``n`` JPEG encodes of one frame."""
    cv2.setNumThreads(1)
    noise = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), np.uint8)
    frame = cv2.GaussianBlur(noise, (7, 7), 2)  # smoothed, so it encodes like a video frame
    t0 = time.perf_counter()
    for _ in range(n):
        cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return time.perf_counter() - t0


def cpu_scaling(encodes: int, repeats: int) -> list[float]:
    """How much faster two processes do twice the work of one, on a task with no I/O, no threads and
    no parent work: the ceiling this machine puts on any speed-up of two workers."""
    Parallel(n_jobs=2)(delayed(encode_loop)(10) for _ in range(2))  # start (warm) the workers
    out = []
    for rep in range(repeats):
        times = {}
        for n in rotated([1, 2], rep):
            times[n] = max(Parallel(n_jobs=2)(delayed(encode_loop)(encodes) for _ in range(n)))
        out.append(2 * times[1] / times[2])
    return out


def bench_rgb(clips: list[Path], s: Settings, scratch: Path, policy: RetryPolicy) -> dict:
    many = copy_clips(clips, scratch / "rgb-many", s.rgb_copies)
    once = copy_clips(clips, scratch / "rgb-once", 1)
    log("[rgb] warm-up")
    rgb_run(once, (1, None), scratch, cold=True)
    result = {"copies": s.rgb_copies, "clips": [c.name for c in clips],
              "main": bench_rgb_variant(many, s.rgb_repeats, scratch, policy, f"{s.rgb_copies}x clips")}
    # Diagnostics: what limits the speed-up.
    result["startup"] = worker_startup(s.diag_repeats)
    log(f"[rgb:diag] loky start-up of 2 workers: {fmt_list(result['startup'])} s")
    result["scaling"] = cpu_scaling(s.cpu_task_encodes, s.cpu_task_repeats)
    log(f"[rgb:diag] pure-CPU speed-up of 2 processes over 1: {fmt_list(result['scaling'])}")
    result["once"] = bench_rgb_variant(once, s.diag_repeats, scratch, policy, "clips once")
    result["warm"] = bench_rgb_variant(many, s.diag_repeats, scratch, policy, "warm workers", cold=False)
    result["ffmpeg_default"], result["ffmpeg1"] = bench_decoder_threads(many, s.diag_repeats, scratch, policy)
    shut_down_workers()
    return result


RGB_VARIANTS = {  # key -> description, for the report
    "main": "{copies}x clip list, workers started per run (main figure)",
    "once": "clip list once ({once_frames} frames), workers started per run",
    "warm": "{copies}x clip list, workers reused between runs",
    "ffmpeg_default": "{copies}x clip list, default FFmpeg threads (interleaved with the next row)",
    "ffmpeg1": "{copies}x clip list, `OPENCV_FFMPEG_THREADS=1`",
}


# --------------------------------------------------------------------------- report

def verdict(value: float, target: Optional[float], at_most: bool = True) -> str:
    if target is None:
        return ""
    return "met" if (value <= target if at_most else value >= target) else "**not met**"


def print_summary(machine: dict, flow: dict, rgb: dict, policy: RetryPolicy) -> None:
    print("\n== machine")
    for k, v in machine.items():
        print(f"  {k}: {v}")
    n = flow["pairs"]
    print(f"\n== flow: {n} pairs per run ({', '.join(flow['clips'])}; max_frames {flow['max_frames']}), "
          f"{repeat_text(flow['repeats'])}, medians")
    for label, ts in flow["runs"].items():
        wall, cpu, other = (median([getattr(t, k) for t in ts]) for k in ("wall", "cpu", "other"))
        print(f"  {label:17s} {wall:7.2f} s {n / wall:6.2f} pairs/s  CPU {cpu:7.2f} s  "
              f"other load {other:.2f} cores  walls: {fmt_list([t.wall for t in ts])}")
    for name, r in flow_ratios(flow).items():
        target = (f"target <= {r['target']} [{verdict(r['wall'], r['target'])}]" if r["target"]
                  else "(about 2 expected)")
        print(f"  {name:24s} {r['wall']:.3f} {target}  per repeat {fmt_list(r['per_repeat'], '.3f')}  "
              f"CPU-time ratio {r['cpu']:.3f}")
    print("\n== rgb (extract-frames), medians")
    for key, desc in RGB_VARIANTS.items():
        g = rgb[key]
        print(f"  {rgb_desc(desc, rgb)}:\n    workers=1 {g['fps1']:6.0f} f/s ({g['cores1']:.2f} cores)  "
              f"workers=2 {g['fps2']:6.0f} f/s ({g['cores2']:.2f} cores)  speed-up {g['speedup']:.2f} "
              f"(per repeat {fmt_list(g['per_repeat'])})  other load {g['other']:.2f} cores")
    met = verdict(rgb["main"]["speedup"], TARGET_RGB_SPEEDUP, False)
    print(f"  speed-up target >= {TARGET_RGB_SPEEDUP}: {met}")
    print(f"  loky start-up of 2 workers: {fmt_list(rgb['startup'])} s")
    print(f"  machine ceiling: a pure-CPU task runs {median(rgb['scaling']):.2f}x faster in 2 processes "
          f"than in 1 (per repeat {fmt_list(rgb['scaling'])})")
    print(f"\n{disturbed_note(policy)}")


def docs_command(script: str, argv: Optional[list[str]]) -> str:
    """The command line that reproduces this run, from the repository root."""
    args = argv if argv is not None else sys.argv[1:]
    return " ".join(["python", str(Path(script).resolve().relative_to(REPO)), *args])


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is near it (../shared/...), else absolute."""
    try:
        return os.path.relpath(path, REPO) if path.is_relative_to(REPO.parent) else str(path)
    except ValueError:
        return str(path)


def rgb_desc(desc: str, rgb: dict) -> str:
    return desc.format(copies=rgb["copies"], once_frames=rgb["once"]["frames"])


def render_docs(machine: dict, flow: dict, rgb: dict, command: str, started: dt.datetime,
                minutes: float, load_start: tuple, videos: str, policy: RetryPolicy) -> str:
    n = flow["pairs"]
    med = {label: median([t.wall for t in ts]) for label, ts in flow["runs"].items()}
    other = {label: median([t.other for t in ts]) for label, ts in flow["runs"].items()}
    ratios = flow_ratios(flow)
    main = rgb["main"]
    lines: list[str] = []
    add = lines.append

    add("# Extraction performance\n")
    add(f"Measured on {started:%Y-%m-%d} ({started:%H:%M %Z}) by `tools/bench_prep.py` "
        f"({minutes:.1f} min). To reproduce, from the repository root:\n")
    add(f"```\n{command}\n```\n")
    add("`--quick` runs the same measurements with less work (a minute or two, noisier); "
        "`--videos DIR` points at another clip directory.\n")
    add("**No GPU was available** on this machine (and the PyPI OpenCV has no CUDA), so the `--gpu` "
        "paths (OpenCV's CUDA TV-L1) were **not measured**. Every flow figure is CPU TV-L1.\n")

    add("## Machine\n")
    add("| | |\n|---|---|")
    for k, v in machine.items():
        add(f"| {k} | {v} |")
    add(f"| load average at start (1, 5, 15 min) | {fmt_list(load_start)} |\n")
    busiest = max(t.other for t in all_timings(flow, rgb))
    add("The machine is shared (other people run test suites on it), so timings are noisy. The "
        "benchmark records, for every run, how many cores *other* processes kept busy meanwhile "
        "(from `/proc/stat`, minus the benchmark's own CPU time): the \"other load\" columns. "
        f"A run with more than {policy.max_other} cores of other load is run again (at most "
        f"{policy.retries} times; the last attempt counts regardless). {disturbed_note(policy)} "
        f"In the runs kept, other load peaked at {busiest:.2f} cores. On top of that, every ratio "
        "is taken against a baseline measured in the same run, repeats are interleaved (the order "
        "rotates from one repeat to the next), and medians are reported. CPU-time ratios are given "
        "as well: CPU time barely changes when another job takes a core away, while wall time can "
        "double.\n")

    add("## Data\n")
    add(f"The real clips of `{videos}`, resized to 340x256 as the pipeline does by default:\n")
    add("| clip | source size | frames decoded | frames the container declares |\n|---|---|---|---|")
    for name, (size, frames, declared) in rgb["clip_info"].items():
        add(f"| {name} | {size} | {frames} | {declared} |")
    add("")
    add(f"- Flow runs: {', '.join(flow['clips'])}, the first {flow['max_frames']} frames of each "
        f"(`max_frames={flow['max_frames']}`): {n} frame pairs per run, workers=1, "
        f"{repeat_text(flow['repeats'])}.")
    add(f"- RGB runs: every clip {rgb['copies']} times (as distinct files): {main['frames']} frames per run, "
        f"{repeat_text(main['repeats'])} of workers=1 and workers=2.\n")

    add("## Results\n")
    add("| measurement | median time | throughput | ratio | target | | other load |")
    add("|---|---|---|---|---|---|---|")
    rows = (("bare `DualTVL1OpticalFlow.calc()` on pre-decoded grey pairs", "bare TV-L1", "1 (baseline)"),
            ("flow pipeline, modalities `flow`", "flow", "flow / bare TV-L1"),
            ("warped flow pipeline, `warped_flow`", "warped_flow", "warped_flow / flow"),
            ("both in one pass, `flow` + `warped_flow`", "flow+warped_flow", "flow+warped_flow / flow"))
    for desc, label, ratio_name in rows:
        r = ratios.get(ratio_name)
        ratio = f"**{r['wall']:.3f}** x {ratio_name.split(' / ')[1]}" if r else ratio_name
        target = (f"<= {r['target']}" if r["target"] else "about 2") if r else ""
        ok = verdict(r["wall"], r["target"]) if r else ""
        add(f"| {desc} | {med[label]:.2f} s | {n / med[label]:.2f} pairs/s | {ratio} | {target} | {ok} "
            f"| {other[label]:.2f} |")
    add(f"| RGB `extract-frames`, workers=1 | {main['frames'] / main['fps1']:.2f} s | "
        f"{main['fps1']:.0f} frames/s | 1 (baseline) | | | {main['other']:.2f} |")
    add(f"| RGB `extract-frames`, workers=2 | {main['frames'] / main['fps2']:.2f} s | "
        f"{main['fps2']:.0f} frames/s | **{main['speedup']:.2f}** x workers=1 | >= {TARGET_RGB_SPEEDUP} | "
        f"{verdict(main['speedup'], TARGET_RGB_SPEEDUP, False)} | {main['other']:.2f} |")
    add("")
    add("Ratios are median / median of wall time. Spread and CPU time:\n")
    for name, r in ratios.items():
        add(f"- {name}: per repeat {fmt_list(r['per_repeat'], '.3f')}; CPU-time ratio {r['cpu']:.3f}")
    add(f"- RGB workers=2 / workers=1: per repeat {fmt_list(main['per_repeat'])}")
    add("")
    add("Wall times of every flow run, in repeat order (s):\n")
    for label, ts in flow["runs"].items():
        add(f"- {label}: {fmt_list([t.wall for t in ts])} (other load: {fmt_list([t.other for t in ts])})")
    add("")

    add("## Flow: what is compared\n")
    add("- The pipeline time is `run_extraction` from `tsn_prep.run`, i.e. everything "
        "`tsn-prep extract-flow` does: open the store, decode, resize, grey conversion, TV-L1, "
        "quantisation, two JPEG encodes per flow and one LMDB transaction per video. The baseline "
        "is `cv2.optflow.DualTVL1OpticalFlow_create().calc()` alone on the same pairs, decoded and "
        f"converted beforehand, in the same process with the same OpenCV thread count "
        f"({machine['cv2.getNumThreads()']}; workers=1 leaves OpenCV's default). An untimed warm-up "
        "run comes first (imports, the per-process TV-L1 object, file cache).")
    add(f"- TV-L1 alone takes {med['bare TV-L1'] / n:.2f} s per 340x256 pair here (median run / pairs; "
        "it varies severalfold between clips with the image content), everything else a few "
        "milliseconds per frame, so the pipeline's own overhead is small next to the machine's noise.")
    add("- Warped flow runs TV-L1 twice per pair (on the frames, then against the camera-motion "
        "compensated frame); ORB matching, corner tracking, RANSAC and the warp add some 10-20 ms "
        "per pair. So about 2 is the floor; TV-L1's time depends on the image content (it stops at "
        "`epsilon`), so the second run need not cost what the first does, and when the homography "
        "falls back to identity the second run is skipped.")
    add("- `flow` and `warped_flow` together share the first TV-L1 run, so they cost about what "
        "`warped_flow` alone does.\n")

    add("## RGB: what limits the speed-up of two workers\n")
    add("| variant | workers=1 | workers=2 | speed-up | cores used, workers=1 / 2 | other load |")
    add("|---|---|---|---|---|---|")
    for key, desc in RGB_VARIANTS.items():
        g = rgb[key]
        add(f"| {rgb_desc(desc, rgb)} | {g['fps1']:.0f} f/s | {g['fps2']:.0f} f/s | {g['speedup']:.2f} | "
            f"{g['cores1']:.2f} / {g['cores2']:.2f} | {g['other']:.2f} |")
    add("")
    add("\"Cores used\" is the CPU time of the benchmark process and its worker processes per second "
        f"of wall time. Diagnostics ran {repeat_text(rgb['once']['repeats'])} each.\n")
    add(rgb_findings(machine, rgb))
    add("## Progress bar\n")
    add("Nothing to measure: during a run the tqdm bar counts the videos done out of those to do "
        "and shows the throughput so far, in pairs/s for flow and frames/s for RGB "
        "(`tsn_prep/run.py`). The benchmark runs with `progress=False`.")
    return "\n".join(lines) + "\n"


def disturbed_note(policy: RetryPolicy) -> str:
    if not policy.disturbed:
        return "No run was disturbed."
    worst = max(other for _, other in policy.disturbed)
    return (f"{len(policy.disturbed)} run(s) were disturbed and run again (other load up to "
            f"{worst:.2f} cores).")


def all_timings(flow: dict, rgb: dict) -> list[Timing]:
    out = [t for ts in flow["runs"].values() for t in ts]
    return out + [t for key in RGB_VARIANTS for ts in rgb[key]["runs"].values() for t in ts]


def rgb_findings(machine: dict, rgb: dict) -> str:
    """The explanation of the RGB speed-up, worded after what was measured."""
    main, once, warm = rgb["main"], rgb["once"], rgb["warm"]
    ffd, ff1 = rgb["ffmpeg_default"], rgb["ffmpeg1"]
    ff = machine["FFmpeg decoder threads (CAP_PROP_N_THREADS)"]
    ceiling = median(rgb["scaling"])
    items = [
        "**The machine's own ceiling.** A purely CPU-bound single-threaded task (JPEG encoding of "
        "one frame in a loop: no I/O, no threads, nothing for the parent to do) ran "
        f"{ceiling:.2f}x faster in two processes than in one (median; per repeat "
        f"{fmt_list(rgb['scaling'])}). "
        + ("That is close to the ideal 2." if ceiling >= 1.9 else
           "The two virtual cores deliver noticeably less than twice the work of one, and how much "
           "less varies from minute to minute, so any two-worker speed-up measured here is capped "
           "near that figure"
           + (f": the {TARGET_RGB_SPEEDUP}x target leaves little headroom on this machine."
              if ceiling < TARGET_RGB_SPEEDUP + 0.25 else ".")),
        f"**Start-up.** joblib/loky takes {fmt_list(rgb['startup'])} s to start two workers that "
        "import tsn_prep and cv2. RGB extraction runs at over a thousand frames/s, so the five clips "
        f"({once['frames']} frames) take under a second on one worker and a workers=2 run over them "
        f"is mostly start-up (speed-up {once['speedup']:.2f}). The main figure therefore uses every "
        "clip several times, and stops the workers before every workers=2 run so that each run pays "
        "the start-up once, as a `tsn-prep extract-frames --workers 2` invocation does. Reusing warm "
        f"workers instead gives {warm['speedup']:.2f}.",
        f"**Decoder threads.** With workers=1 the process used {main['cores1']:.2f} cores: OpenCV's "
        f"FFmpeg backend decodes with {ff} threads (`CAP_PROP_N_THREADS`, set from the core count or "
        "the `OPENCV_FFMPEG_THREADS` environment variable; neither `cv2.setNumThreads` nor "
        "`tsn_prep.extract.default_threads`, which gives each of two workers one OpenCV thread, "
        "changes it). So two workers run four decoder threads on two cores. In interleaved runs, "
        f"one decoder thread per process gave {ff1['fps1']:.0f} / {ff1['fps2']:.0f} frames/s with "
        f"1 / 2 workers ({ff1['cores1']:.2f} / {ff1['cores2']:.2f} cores), against "
        f"{ffd['fps1']:.0f} / {ffd['fps2']:.0f} frames/s with the default "
        f"({ffd['cores1']:.2f} / {ffd['cores2']:.2f} cores): speed-up {ff1['speedup']:.2f} against "
        f"{ffd['speedup']:.2f}. "
        + ("Capping FFmpeg at one thread per worker when workers > 1 (open the capture with "
           "`[cv2.CAP_PROP_N_THREADS, threads]`) is a small win for `tsn_prep`."
           if ff1["fps2"] > 1.03 * ffd["fps2"] else
           "Capping them made no clear difference to the throughput of two workers in this run."),
        "**The parent is not idle** with workers=2: it unpickles every JPEG the workers send back "
        f"and writes it to LMDB, on the same two cores (two workers used {main['cores2']:.2f} cores "
        "in all, parent included).",
        "**Other load.** Whatever other processes take (last column) comes out of the two cores that "
        "two workers need but only out of the spare core for one worker, so a busy machine lowers "
        "the speed-up more than either throughput.",
    ]
    return "\n".join(f"- {item}" for item in items) + "\n"


# --------------------------------------------------------------------------- main

def add_disturbance_options(p: argparse.ArgumentParser) -> None:
    """Options deciding when a measurement disturbed by other processes is run again."""
    p.add_argument("--max-other-load", type=float, default=0.3,
                   help="run a measurement again when other processes kept more cores than this busy "
                        "meanwhile (default: 0.3)")
    p.add_argument("--retries", type=int, default=2,
                   help="at most this many re-runs of a disturbed measurement (default: 2)")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS,
                   help=f"directory of the clips (default: {DEFAULT_VIDEOS})")
    p.add_argument("--quick", action="store_true", help="a minute or two instead of about ten")
    p.add_argument("--max-frames", type=int, default=None,
                   help="frames per clip for the flow runs (overrides the mode's value, >= 2)")
    p.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (>= 1)")
    add_disturbance_options(p)
    p.add_argument("--write-docs", action="store_true",
                   help=f"write the figures into {DOCS.relative_to(REPO)}")
    args = p.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 2:
        p.error("--max-frames must be at least 2 (one pair)")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def settings_for(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    if args.max_frames is not None:
        s = dataclasses.replace(s, max_frames=args.max_frames)
    if args.repeats is not None:
        s = dataclasses.replace(s, flow_repeats=args.repeats, rgb_repeats=args.repeats,
                                diag_repeats=args.repeats)
    return s


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    s = settings_for(args)
    videos = args.videos.resolve()
    if not videos.is_dir():
        raise SystemExit(f"{videos}: no such directory (use --videos)")
    clips = find_clips(videos)
    flow_clips = [c for c in clips if c.name in s.flow_clips] if s.flow_clips else clips
    if not flow_clips:
        flow_clips = clips[:2]
    policy = RetryPolicy(args.max_other_load, args.retries)
    started, t0, load_start = dt.datetime.now().astimezone(), time.perf_counter(), os.getloadavg()
    machine = machine_info(clips)
    log(f"[bench] {'quick' if args.quick else 'full'} mode; {len(clips)} clips in {videos}; "
        f"cv2 {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads, {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(prefix="bench_prep-") as tmp:
        scratch = Path(tmp)
        flow = bench_flow(flow_clips, s, scratch, policy)
        rgb = bench_rgb(clips, s, scratch, policy)
        rgb["clip_info"] = {c.name: clip_info(c) for c in clips}
    minutes = (time.perf_counter() - t0) / 60

    print_summary(machine, flow, rgb, policy)
    print(f"\n(total {minutes:.1f} min)")
    if args.write_docs:
        write_section(DOCS, "bench_prep", render_docs(machine, flow, rgb, docs_command(__file__, argv),
                                                      started, minutes, load_start,
                                                      display_path(videos), policy))
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
