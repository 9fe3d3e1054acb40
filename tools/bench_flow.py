#!/usr/bin/env python
"""Benchmark of the PyTorch TV-L1 (tsn_prep/flow_torch.py) against OpenCV's CPU TV-L1.

Pairs per second at 340x256 of the real clips for each solver variant (eager, compiled, ...) and
batch size on one torch device, against OpenCV's CPU TV-L1 in the same run (repeats interleaved,
medians, ratios taken per repeat); compile seconds (first call minus a steady call), peak memory
per pair, inner iterations per pair, mean end-point difference from OpenCV and Grove3 end-point
error. Each (variant, batch) runs in a fresh process, so each pays its own compile (inductor's
on-disk cache makes later processes cheaper). The same script runs unchanged on a CUDA machine
(``--device cuda:0``); where the installed cv2 has no ``optflow`` (opencv-contrib), the OpenCV
columns are left out and ``--save-flows DIR`` keeps the inputs and flows so that
``--compare-flows DIR`` computes the difference from OpenCV on another machine.

    python tools/bench_flow.py                                      # CPU: OpenCV, eager, compiled
    python tools/bench_flow.py --busy 1                             # the same with one core kept busy
    python tools/bench_flow.py --device cuda:0 --batches 1,8,32,64,128,256
    python tools/bench_flow.py --write-docs                         # figures into docs/performance.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_section import write_section  # noqa: E402  (a sibling module, not a package)

DOCS = REPO / "docs" / "performance.md"
DEFAULT_VIDEOS = REPO.parent / "shared" / "data" / "videos"
DEFAULT_GROVE = REPO.parent / "shared" / "data" / "flow_gt" / "middlebury_grove3"
SIZE = (340, 256)
SAVED_PAIRS = 8  # pairs whose inputs and flows --save-flows keeps

VARIANT_HELP = ("eager | compiled (torch.compile's default mode, dynamic shapes) | compiled-static "
                "(dynamic=False: one compile per level and batch size) | compiled:MODE (e.g. "
                "compiled:reduce-overhead, compiled:max-autotune-no-cudagraphs) | compiled-all "
                "(also the median and the remap on the CPU) | triton (the hand-written Triton "
                "iteration, CUDA graphs; CUDA only) | triton-nograph (launched from Python) | "
                "triton-fast (the GPU's approximate division and square root, fused multiply-adds)")


def solver_options(variant: str) -> dict:
    if variant == "eager":
        return {"compile": False, "kernel": "torch"}
    if variant == "compiled":
        return {"compile": True, "dynamic": True, "kernel": "torch"}
    if variant == "compiled-static":
        return {"compile": True, "dynamic": False, "kernel": "torch"}
    if variant == "compiled-all":
        return {"compile": True, "dynamic": True, "kernel": "torch",
                "compile_parts": ("step", "median", "warp")}
    if variant.startswith("compiled:"):
        return {"compile": True, "dynamic": True, "kernel": "torch",
                "compile_mode": variant.split(":", 1)[1]}
    if variant == "triton":
        return {"compile": True, "dynamic": True, "kernel": "triton"}
    if variant == "triton-nograph":
        return {"compile": True, "dynamic": True, "kernel": "triton", "graphs": False}
    if variant == "triton-fast":
        return {"compile": True, "dynamic": True, "kernel": "triton", "exact": False}
    raise SystemExit(f"unknown variant {variant!r}: {VARIANT_HELP}")


def has_opencv_tvl1() -> bool:
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def find_clips(videos: Path) -> list[Path]:
    clips = sorted(p for p in Path(videos).iterdir() if p.suffix.lower() in (".mp4", ".avi"))
    if not clips:
        raise SystemExit(f"no .mp4/.avi clips in {videos}")
    return clips


def frame_pairs(videos: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grey 340x256 pairs, decoded and resized as the pipeline does: up to ``n`` consecutive
    pairs from each clip in turn, cycled when the clips hold fewer."""
    from tsn_prep.video import VideoReader

    per_clip = []
    for clip in find_clips(videos):
        frames = VideoReader(clip, SIZE, None, n + 1).frames()
        greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        per_clip.append(list(zip(greys, greys[1:])))
    pairs = []
    k = 0
    while len(pairs) < n:  # round robin over the clips: every batch mixes them
        for clip_pairs in per_clip:
            if k < len(clip_pairs) and len(pairs) < n:
                pairs.append(clip_pairs[k])
        k += 1
        if k > max(len(c) for c in per_clip):
            k = 0
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


def grove3(grove: Path):
    grey = [cv2.cvtColor(cv2.imread(str(grove / f"frame{i}.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
            for i in (10, 11)]
    return grey, cv2.readOpticalFlow(str(grove / "grove3.flo"))


def epe(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).mean())


# ------------------------------------------------------------------------------ child process

def child(spec: dict) -> dict:
    """One (variant, batch) in a fresh process: compile seconds, seconds per pair, memory."""
    import torch

    from tsn_prep.flow_torch import TorchTVL1

    dev = torch.device(spec["device"])
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    prev, nxt = frame_pairs(Path(spec["videos"]), max(spec["pairs"], spec["batch"]))
    batch, n = spec["batch"], len(prev)
    chunks = [(prev[i:i + batch], nxt[i:i + batch]) for i in range(0, n, batch)]
    solver = TorchTVL1(device=dev, threads=spec["threads"], sync_every=spec["sync_every"],
                       **solver_options(spec["variant"]))
    start = time.perf_counter()
    solver.batch(*chunks[0])  # compiles (once per shape set), allocator, kernels
    sync()
    first = time.perf_counter() - start
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, flows, iters = [], [], []
    for call in range(spec["calls"]):
        start = time.perf_counter()
        for a, b in chunks:
            f = solver.batch(a, b)
            if call == 0:
                flows.append(f)
                iters.append(solver.last_iterations.sum(axis=(1, 2)))
        sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    out = {"variant": spec["variant"], "batch": batch, "pairs": n, "seconds": seconds,
           "pairs_per_s": n / seconds, "first_call": first,
           "compile_s": max(0.0, first - seconds / len(chunks)), "compiled": solver.compiled,
           "compile_parts": list(solver.compile_parts), "kernel": solver.kernel,
           "graph_errors": sorted({lv.capture_error for lv in solver._levels.values()
                                   if lv.capture_error}),
           "graphs_used": sum(lv.graph is not None for lv in solver._levels.values()),
           "iterations_per_pair": float(np.concatenate(iters).mean()),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if cuda:
        out["gpu_peak"] = torch.cuda.max_memory_allocated(dev)
        out["gpu_name"] = torch.cuda.get_device_name(dev)
    if spec.get("flows"):
        np.savez_compressed(spec["flows"], prev=prev[:SAVED_PAIRS], nxt=nxt[:SAVED_PAIRS],
                            flow=np.concatenate(flows)[:SAVED_PAIRS])
    if spec.get("grove"):
        grey, gt = grove3(Path(spec["grove"]))
        start = time.perf_counter()
        out["grove3_epe"] = epe(solver(*grey), gt)
        out["grove3_seconds"] = time.perf_counter() - start
    return out


def run_child(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"variant": spec["variant"], "batch": spec["batch"], "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode:
        return {"variant": spec["variant"], "batch": spec["batch"], "error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ OpenCV, load

def opencv_run(prev: np.ndarray, nxt: np.ndarray) -> tuple[float, list[np.ndarray]]:
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    start = time.perf_counter()
    flows = [tvl1.calc(a, b, None) for a, b in zip(prev, nxt)]
    return time.perf_counter() - start, flows


class Busy:
    """``n`` processes spinning on a core each while measurements run (a busy machine)."""

    def __init__(self, n: int):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def compare_flows(folder: Path) -> dict:
    """EPE from OpenCV of every ``*.npz`` that ``--save-flows`` wrote (run where cv2 has optflow)."""
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    out = {}
    for f in sorted(Path(folder).glob("*.npz")):
        d = np.load(f)
        diffs = [epe(flow, tvl1.calc(a, b, None)) for a, b, flow in zip(d["prev"], d["nxt"], d["flow"])]
        out[f.stem] = {"pairs": len(diffs), "mean": float(np.mean(diffs)), "max": float(np.max(diffs))}
        print(f"{f.stem}: mean end-point difference from OpenCV {np.mean(diffs):.4f} px "
              f"(max over {len(diffs)} pairs {np.max(diffs):.4f})", flush=True)
    return out


# ------------------------------------------------------------------------------ report

def med(values):
    return statistics.median(values) if values else float("nan")


def render(args, argv, started, rows, opencv, cv_epe, machine) -> str:
    cuda = args.device.startswith("cuda")
    lines = [
        f"# TV-L1 in PyTorch: speed ({'GPU' if cuda else 'CPU'}"
        + (f", {args.busy} other core(s) kept busy" if args.busy else "") + ")",
        "",
        f"Measured on {started:%Y-%m-%d (%H:%M UTC)} by `tools/bench_flow.py` "
        f"({(dt.datetime.now(dt.timezone.utc) - started).total_seconds() / 60:.1f} min) on "
        f"{machine['device_name']}, torch {machine['torch']}, OpenCV {machine['cv2']}, "
        f"{machine['usable_cores']} usable CPU cores. To reproduce, from the repository root:",
        "",
        "```",
        shlex.join(["python", "tools/bench_flow.py", *(argv if argv is not None else sys.argv[1:])]),
        "```",
        "",
        f"Frame pairs: {args.pairs} (or the batch size, if larger) consecutive pairs of the real "
        f"clips (round robin over "
        f"{machine['clips']}), decoded and resized to 340x256 as the pipeline does, then grey. "
        "Each variant and batch size runs in a fresh process: a first call (compiles; its time "
        "minus a steady call's is the compile cost), then the pairs in batches of that size "
        f"({args.calls} timed pass(es), median). {args.repeats} interleaved repeat(s); medians. "
        f"Torch threads: {args.threads or 'torch default'}"
        + (f"; {args.busy} other core(s) kept busy by a spinning process throughout" if args.busy else "")
        + ".",
        "",
    ]
    if opencv:
        rate = args.pairs / med(opencv)
        lines += [f"OpenCV CPU (`cv2.optflow.DualTVL1OpticalFlow_create()`, defaults, one pair at a "
                  f"time, cv2 threads {cv2.getNumThreads()}): **{rate:.2f} pairs/s** "
                  f"({1000 / rate:.0f} ms per pair; per repeat "
                  f"{', '.join(f'{args.pairs / s:.2f}' for s in opencv)}).", ""]
    else:
        lines += ["OpenCV's TV-L1 is not in this machine's cv2 (no opencv-contrib), so there is no "
                  "OpenCV column here; its difference from OpenCV was computed elsewhere from the "
                  "saved flows (`--save-flows` / `--compare-flows`).", ""]
    lines += ["| variant | pairs per call | pairs/s | ratio to OpenCV (per repeat) | compile s | "
              "inner iterations per pair | memory per pair | EPE vs OpenCV | Grove3 EPE |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (variant, batch), rs in rows.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            lines.append(f"| {variant} | {batch} | failed: {rs[0]['error'].strip().splitlines()[-1][:120]} "
                         "| | | | | | |")
            continue
        rate = med([r["pairs_per_s"] for r in ok])
        ratio = "-"
        if opencv:
            ratios = [r["ratio"] for r in ok if "ratio" in r]
            ratio = f"**{med(ratios):.2f}** ({', '.join(f'{x:.2f}' for x in ratios)})"
        if "gpu_peak" in ok[0]:
            mem = f"{med([r['gpu_peak'] for r in ok]) / batch / 2**20:.0f} MiB GPU"
        else:
            mem = "-"
        comp = "-" if not ok[0]["compiled"] else f"{med([r['compile_s'] for r in ok]):.1f}"
        d = cv_epe.get(variant)
        g = next((r["grove3_epe"] for r in ok if "grove3_epe" in r), None)
        lines.append(f"| {variant} | {batch} | {rate:.2f} | {ratio} | {comp} | "
                     f"{med([r['iterations_per_pair'] for r in ok]):.0f} | {mem} | "
                     f"{'-' if d is None else f'{d:.4f} px'} | {'-' if g is None else f'{g:.4f} px'} |")
    if "grove3_opencv" in machine:
        lines += ["", f"OpenCV's own Grove3 end-point error: {machine['grove3_opencv']:.4f} px."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device for our TV-L1 (default: cpu)")
    p.add_argument("--variants", default="eager,compiled", help=VARIANT_HELP)
    p.add_argument("--batches", default="1", help="batch sizes (pairs per call), comma separated")
    p.add_argument("--pairs", type=int, default=8,
                   help="pairs per measurement (a larger batch solves one batch of its size)")
    p.add_argument("--calls", type=int, default=1, help="timed passes over the pairs per process")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (>= 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--sync-every", type=int, default=None, help="TorchTVL1 sync_every (default: its own)")
    p.add_argument("--busy", type=int, default=0, help="keep this many other cores busy meanwhile")
    p.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of .mp4/.avi clips")
    p.add_argument("--grove", type=Path, default=DEFAULT_GROVE, help="Middlebury Grove3 folder ('' to skip)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per child process")
    p.add_argument("--save-flows", type=Path, help="keep inputs and flows of each variant here (npz)")
    p.add_argument("--compare-flows", type=Path, help="only: EPE from OpenCV of flows saved earlier")
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--write-docs", action="store_true", help="write the figures into --docs")
    p.add_argument("--docs", type=Path, default=DOCS, help="markdown file for --write-docs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.compare_flows:
        compare_flows(args.compare_flows)
        return 0
    import torch

    started = dt.datetime.now(dt.timezone.utc)
    batches = [int(b) for b in args.batches.split(",")]
    variants = args.variants.split(",")
    for v in variants:
        solver_options(v)
    grove = args.grove if str(args.grove) not in ("", ".") and Path(args.grove).is_dir() else None
    machine = {"torch": torch.__version__, "cv2": cv2.__version__, "python": platform.python_version(),
               "usable_cores": len(os.sched_getaffinity(0)),
               "device_name": (torch.cuda.get_device_name(torch.device(args.device))
                               if args.device.startswith("cuda") else platform.processor() or "CPU"),
               "clips": ", ".join(c.name for c in find_clips(args.videos))}
    with_cv = has_opencv_tvl1()
    prev, nxt = frame_pairs(args.videos, args.pairs)
    if with_cv and grove:
        grey, gt = grove3(grove)
        machine["grove3_opencv"] = epe(cv2.optflow.DualTVL1OpticalFlow_create().calc(*grey, None), gt)
    tmp = Path(tempfile.mkdtemp(prefix="bench_flow_"))
    if args.save_flows:
        args.save_flows.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple, list[dict]] = {(v, b): [] for v in variants for b in batches}
    opencv: list[float] = []
    cv_flows = None
    cv_epe: dict[str, float] = {}
    busy = Busy(args.busy) if args.busy else None
    try:
        for r in range(args.repeats):
            cv_s = None
            if with_cv:
                cv_s, flows = opencv_run(prev, nxt)
                cv_flows = cv_flows or flows
                opencv.append(cv_s)
                print(f"[repeat {r + 1}/{args.repeats}] opencv cpu: {args.pairs / cv_s:.2f} pairs/s", flush=True)
            for key in list(rows)[r % len(rows):] + list(rows)[:r % len(rows)]:  # rotated
                variant, b = key
                first = not any("error" not in x for (v2, _), xs in rows.items() if v2 == variant for x in xs)
                spec = {"device": args.device, "variant": variant, "batch": b, "pairs": args.pairs,
                        "calls": args.calls, "threads": args.threads, "sync_every": args.sync_every,
                        "videos": str(args.videos), "grove": str(grove) if grove and first else None,
                        "flows": (str((args.save_flows or tmp) / f"{variant.replace(':', '_')}_b{b}.npz")
                                  if first or (r == 0 and b == max(batches)) else None)}
                res = run_child(spec, args.timeout)
                if "error" not in res and cv_s:  # our pairs/s over OpenCV's in this repeat
                    res["ratio"] = res["pairs_per_s"] * cv_s / args.pairs
                if "error" not in res and first and cv_flows is not None:
                    saved = np.load(spec["flows"])["flow"]
                    cv_epe[variant] = float(np.mean([epe(f, c) for f, c in zip(saved, cv_flows)]))
                rows[key].append(res)
                if "error" in res:
                    print(f"[repeat {r + 1}/{args.repeats}] {variant} batch {b}: FAILED {res['error'][-600:]}", flush=True)
                else:
                    print(f"[repeat {r + 1}/{args.repeats}] {variant} {args.device} batch {b}: "
                          f"{res['pairs_per_s']:.2f} pairs/s"
                          + (f" ({res['ratio']:.2f}x OpenCV)" if "ratio" in res else "")
                          + f", first call {res['first_call']:.1f} s, compile {res['compile_s']:.1f} s"
                          + (f", {res['gpu_peak'] / b / 2**20:.0f} MiB GPU/pair" if "gpu_peak" in res else "")
                          + (f", Grove3 EPE {res['grove3_epe']:.4f}" if "grove3_epe" in res else ""), flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"machine": machine, "opencv_seconds": opencv,
                                                     "epe_vs_opencv": cv_epe,
                                                     "rows": {f"{k[0]}|{k[1]}": v for k, v in rows.items()}},
                                                    indent=1))
    finally:
        if busy:
            busy.stop()
    text = render(args, argv, started, rows, opencv, cv_epe, machine)
    print("\n" + text)
    if args.write_docs:
        name = "bench_flow" if not args.device.startswith("cuda") else "bench_flow_cuda"
        if args.busy:
            name += f"_busy{args.busy}"
        if args.threads:
            name += f"_threads{args.threads}"
        write_section(args.docs, name, text)
        print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
