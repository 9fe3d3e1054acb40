"""Extraction: the flow pipeline against bare TV-L1, warped flow against flow, and RGB
extract-frames with one and two workers (plus what limits their speed-up).

1. ``run_extraction`` with ("flow",), workers=1, over bare ``DualTVL1OpticalFlow.calc()`` on the
   same pairs decoded beforehand: target <= 1.10;
2. ("warped_flow",) and ("flow", "warped_flow") over ("flow",): target <= 2.2;
3. RGB frames/s with workers=1 and workers=2: target >= 1.6, and diagnostics.

Every ratio is against a baseline measured in the same run, repeats are interleaved (the order
rotates) and medians are reported.

    python -m tools.bench.prep --quick               # a minute or two
    python -m tools.bench.prep --write-docs          # about 10 minutes
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import multiprocessing

import cv2
import numpy as np

from tools.bench.common import (Clock, RetryPolicy, Timing, display_path, find_clips, finish, grey_pairs, log,
                                machine_info, median, parse_args, parser, rotated, timed)
from tsn_prep.extraction.params import ExtractParams
from tsn_prep.extraction.plan import RunPlan
from tsn_prep.extraction.run import RunSummary, run_extraction
from tsn_prep.video import VideoReader

SIZE = ExtractParams().size  # the pipeline's default frame size (340x256)
JPEG_QUALITY = ExtractParams().jpeg_quality
# The targets (not product settings).
TARGET_FLOW_OVERHEAD, TARGET_WARPED_OVER_FLOW, TARGET_RGB_SPEEDUP = 1.10, 2.2, 1.6
FLOW_PIPELINES = {"flow": ("flow",), "warped_flow": ("warped_flow",), "flow+warped_flow": ("flow", "warped_flow")}
FLOW_ROWS = (  # description, run, ratio's baseline run, target
    ("bare `DualTVL1OpticalFlow.calc()` on pre-decoded grey pairs", "bare TV-L1", None, None),
    ("flow pipeline, modalities `flow`", "flow", "bare TV-L1", TARGET_FLOW_OVERHEAD),
    ("warped flow pipeline, `warped_flow`", "warped_flow", "flow", TARGET_WARPED_OVER_FLOW),
    ("both in one pass, `flow` + `warped_flow`", "flow+warped_flow", "flow", "about 2"))


@dataclasses.dataclass(frozen=True)
class Settings:
    flow_clips: tuple[str, ...]   # file names; () means every clip
    max_frames: int               # frames per clip for the flow runs
    flow_repeats: int
    rgb_copies: int               # each clip listed this many times for the RGB runs
    rgb_repeats: int
    diag_repeats: int
    cpu_task_encodes: int         # JPEG encodes per process in the CPU-scaling check
    cpu_task_repeats: int


QUICK = Settings(("eyemakeup_ucf101like.avi", "carphone.mp4"), 3, 3, 4, 3, 2, 3000, 3)
FULL = Settings((), 4, 5, 10, 5, 3, 8000, 5)
_SEEN: set[str] = set()


def copy_clips(clips: list[Path], dest: Path, copies: int = 1) -> Path:
    """Every clip ``copies`` times as distinct files (real copies: no de-duplication by path)."""
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for clip in clips:
            shutil.copyfile(clip, dest / f"{clip.stem}__{k:03d}{clip.suffix}")
    return dest


def extraction(src: Path, params: ExtractParams, workers: int, scratch: Path) -> tuple[Timing, RunSummary]:
    """One timed run_extraction into a fresh store, deleted afterwards; its messages shown once."""
    out, messages = Path(tempfile.mkdtemp(dir=scratch, prefix="store-")), io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            timing, summary = timed(lambda: run_extraction(src, out, params, RunPlan(workers=workers),
                                                           progress=False))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        for line in messages.getvalue().splitlines():
            if line.split(": ", 2)[-1] not in _SEEN:
                _SEEN.add(line.split(": ", 2)[-1])
                log(f"  (tsn_prep says: {line})")
    if summary.failed:
        raise RuntimeError(f"extraction failed: {summary.failed}")
    return timing, summary


def bench_flow(clips: list[Path], s: Settings, scratch: Path, policy: RetryPolicy) -> dict:
    src = copy_clips(clips, scratch / "flow-clips")
    pairs = [p for c in clips for p in grey_pairs(c, SIZE, s.max_frames)]

    def bare(ps=pairs) -> Timing:  # OpenCV's defaults = tsn_prep's TVL1Params defaults
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return timed(lambda: [tvl1.calc(a, b, None) for a, b in ps])[0]

    def pipeline(modalities, max_frames=s.max_frames, expect=len(pairs)) -> Timing:
        timing, summary = extraction(src, ExtractParams(modalities=modalities, size=SIZE, max_frames=max_frames), 1, scratch)
        if summary.pairs != expect:
            raise RuntimeError(f"the pipeline made {summary.pairs} pairs, the bare baseline {expect}")
        return timing

    runs: dict[str, Callable[[], Timing]] = {"bare TV-L1": bare}
    runs.update({label: (lambda m=m: pipeline(m)) for label, m in FLOW_PIPELINES.items()})
    log(f"[flow] warm-up; {len(pairs)} pairs per run")
    bare(pairs[:1])
    pipeline(("flow",), 2, len(clips))
    results: dict[str, list[Timing]] = {label: [] for label in runs}
    for rep in range(s.flow_repeats):
        for label in rotated(list(runs), rep):
            t = policy.run(f"flow {label}", runs[label])
            results[label].append(t)
            log(f"[flow] repeat {rep + 1}/{s.flow_repeats} {label:17s} {t.wall:7.2f} s wall {t.cpu:7.2f} s CPU "
                f"other load {t.other:.2f}")
    n, med = len(pairs), {k: median(t.wall for t in v) for k, v in results.items()}
    rows, ratios = [], {}
    for desc, label, base, target in FLOW_ROWS:
        ratio = med[label] / med[base] if base else 1
        if base:
            ratios[f"{label} / {base}"] = {
                "per_repeat": [a.wall / b.wall for a, b in zip(results[label], results[base])],
                "cpu": median(t.cpu for t in results[label]) / median(t.cpu for t in results[base])}
        ok = isinstance(target, float) and ("met" if ratio <= target else "**not met**")
        rows.append({"desc": desc, "seconds": med[label], "rate": n / med[label], "ratio": ratio, "of": base,
                     "target": f"<= {target}" if ok else (target or ""), "verdict": ok or "",
                     "other": median(t.other for t in results[label])})
    return {"clips": [c.name for c in clips], "max_frames": s.max_frames, "pairs": n, "repeats": s.flow_repeats,
            "per_pair": med["bare TV-L1"] / n, "rows": rows, "ratios": ratios,
            "runs": {k: {"wall": [t.wall for t in v], "other": [t.other for t in v]} for k, v in results.items()}}


def rgb_variant(src: Path, combos: list, repeats: int, scratch: Path, policy: RetryPolicy) -> dict:
    """Every (workers, FFmpeg threads) combo once per repeat, rotating; per pair of combos with 1 and
    2 workers: medians and the speed-up."""
    runs: dict = {c: [] for c in combos}
    frames = 0
    for rep in range(repeats):
        for workers, threads in rotated(combos, rep):
            def run():
                env = {"OPENCV_FFMPEG_THREADS": str(threads)} if threads else {}
                os.environ.update(env)  # read at every VideoCapture open; workers inherit it
                try:  # each run starts its decoding processes, as a tsn-prep invocation does
                    return extraction(src, ExtractParams(modalities=("rgb",), size=SIZE), workers, scratch)
                finally:
                    for k in env:
                        del os.environ[k]
            t, summary = policy.run(f"rgb workers={workers}", run, lambda r: r[0])
            frames = summary.frames
            runs[(workers, threads)].append(t)
            log(f"[rgb] repeat {rep + 1}/{repeats} workers={workers} threads={threads}: "
                f"{frames / t.wall:6.0f} frames/s ({t.cpu / t.wall:.2f} cores, other load {t.other:.2f})")
    out = []
    for one, two in zip(combos[::2], combos[1::2]):
        a, b = runs[one], runs[two]
        fps1, fps2 = [frames / t.wall for t in a], [frames / t.wall for t in b]
        out.append({"frames": frames, "repeats": repeats, "fps1": median(fps1), "fps2": median(fps2),
                    "speedup": median(fps2) / median(fps1), "per_repeat": [y / x for x, y in zip(fps1, fps2)],
                    "seconds1": frames / median(fps1), "seconds2": frames / median(fps2),
                    "cores1": median(t.cpu / t.wall for t in a), "cores2": median(t.cpu / t.wall for t in b),
                    "other": median(t.other for t in a + b), "others": [t.other for t in a + b]})
    return out if len(out) > 1 else out[0]


def encode_loop(n: int) -> float:
    """A purely CPU-bound, single-threaded task: wall s for ``n`` JPEG encodes of one frame."""
    cv2.setNumThreads(1)
    frame = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), np.uint8), (7, 7), 2)
    t0 = time.perf_counter()
    for _ in range(n):
        cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return time.perf_counter() - t0


def _import_engine() -> None:
    importlib.import_module("tsn_prep.extraction.decoding")  # what a decoding worker imports before its first video


def startup(workers: int = 2) -> float:
    """Wall s to start ``workers`` decoding-style processes ("spawn", as the engine starts them)
    that import the engine, and see them end."""
    ctx = multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_import_engine) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def bench_rgb(clips: list[Path], s: Settings, scratch: Path, policy: RetryPolicy) -> dict:
    many, once = copy_clips(clips, scratch / "rgb-many", s.rgb_copies), copy_clips(clips, scratch / "rgb-once")
    log("[rgb] warm-up")
    extraction(once, ExtractParams(modalities=("rgb",), size=SIZE), 1, scratch)
    pair = [(1, None), (2, None)]
    r = {"copies": s.rgb_copies, "target": TARGET_RGB_SPEEDUP, "main": rgb_variant(many, pair, s.rgb_repeats, scratch, policy)}
    r["startup"] = [startup() for _ in range(s.diag_repeats)]  # what a workers=2 run pays first
    scaling = []  # two processes doing twice the work of one: this machine's ceiling on any speed-up
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(encode_loop, [10, 10])  # warm workers
        for rep in range(s.cpu_task_repeats):
            t = {n: max(pool.map(encode_loop, [s.cpu_task_encodes] * n)) for n in rotated([1, 2], rep)}
            scaling.append(2 * t[1] / t[2])
    r.update(scaling=scaling, ceiling=median(scaling))
    r["once"] = rgb_variant(once, pair, s.diag_repeats, scratch, policy)
    r["ffmpeg_default"], r["ffmpeg1"] = rgb_variant(many, [(1, None), (2, None), (1, 1), (2, 1)], s.diag_repeats, scratch, policy)
    r["verdict"] = "met" if r["main"]["speedup"] >= TARGET_RGB_SPEEDUP else "**not met**"
    return r


def main(argv: Optional[list[str]] = None) -> int:
    p = parser(__doc__, videos=True, retry=True)
    p.add_argument("--quick", action="store_true", help="a minute or two instead of about ten")
    p.add_argument("--max-frames", type=int, help="frames per clip for the flow runs (>= 2)")
    p.add_argument("--repeats", type=int, help="repeats of every measurement (>= 1)")
    args = parse_args(p, argv)
    s = QUICK if args.quick else FULL
    if args.max_frames:
        s = dataclasses.replace(s, max_frames=max(2, args.max_frames))
    if args.repeats:
        s = dataclasses.replace(s, flow_repeats=args.repeats, rgb_repeats=args.repeats, diag_repeats=args.repeats)
    clips = find_clips(args.videos)
    flow_clips = [c for c in clips if c.name in s.flow_clips] if s.flow_clips else clips
    policy = RetryPolicy.of(args)
    clock, load = Clock(argv), os.getloadavg()
    machine = machine_info()
    cap = cv2.VideoCapture(str(clips[0]))
    machine["FFmpeg decoder threads (CAP_PROP_N_THREADS)"] = int(cap.get(cv2.CAP_PROP_N_THREADS))
    cap.release()
    with tempfile.TemporaryDirectory(prefix="bench_prep-") as tmp:
        flow = bench_flow(flow_clips or clips[:2], s, Path(tmp), policy)
        rgb = bench_rgb(clips, s, Path(tmp), policy)
    clip_info = []
    for c in clips:
        reader = VideoReader(c, SIZE)
        frames = sum(1 for _ in reader.frames())
        clip_info.append([c.name, "{}x{}".format(*reader.info.source_size), frames, reader.info.declared_frames])
    kept = [o for r in flow["runs"].values() for o in r["other"]]
    kept += [o for k in ("main", "once", "ffmpeg_default", "ffmpeg1") for o in rgb[k].pop("others")]
    finish("bench_prep", {"section": "bench_prep", "template": "prep", **clock.stamp("tools.bench.prep"),
                          "machine": machine, "load_start": list(load), "policy": policy.figures(kept),
                          "videos": display_path(args.videos), "clip_info": clip_info, "flow": flow, "rgb": rgb}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
