"""The PyTorch TV-L1 (tsn_prep/extraction/tvl1_torch.py) against OpenCV's CPU TV-L1.

Pairs/s at 340x256 of the real clips per solver variant and batch size on one torch device,
against OpenCV in the same run (interleaved repeats, medians, ratios per repeat); compile seconds
(first call minus a steady call), memory and inner iterations per pair, end-point difference from
OpenCV and Grove3 end-point error. Each (variant, batch) runs in a fresh process. Where cv2 has no
``optflow``, ``--save-flows DIR`` keeps inputs and flows for ``--compare-flows DIR`` elsewhere.

    python -m tools.bench.flow --quick                           # CPU: OpenCV, eager, one pass
    python -m tools.bench.flow --busy 1 --threads 1              # with one core kept busy
    python -m tools.bench.flow --device cuda:0 --variants triton --batches 1,64,128,256
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from tools.bench.common import (GROVE, REPO, Clock, busy, cycled_pairs, epe, find_clips, finish, grove3, log, median,
                                parse_args, parser, rotated)

SAVED_PAIRS = 8  # pairs whose inputs and flows --save-flows keeps
VARIANTS = {  # name -> TorchTVL1 options: those docs/performance.md reports
    "eager": {"compile": False, "kernel": "torch"},
    "compiled": {"compile": True, "dynamic": True, "kernel": "torch"},
    "triton": {"compile": True, "dynamic": True, "kernel": "triton"},  # CUDA only
    "triton-fast": {"compile": True, "dynamic": True, "kernel": "triton", "exact": False},
}


def solver_options(variant: str) -> dict:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def frame_pairs(videos: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grey pairs as the pipeline decodes them, round robin over the clips (cycled)."""
    from tsn_prep.extraction.params import ExtractParams
    return cycled_pairs(videos, ExtractParams().size, n, n + 1)


def child(spec: dict) -> dict:
    """One (variant, batch) in a fresh process."""
    import torch

    from tsn_prep.extraction.tvl1_torch import TorchTVL1
    dev = torch.device(spec["device"])
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    prev, nxt = frame_pairs(Path(spec["videos"]), max(spec["pairs"], spec["batch"]))
    b = spec["batch"]
    chunks = [(prev[i:i + b], nxt[i:i + b]) for i in range(0, len(prev), b)]
    solver = TorchTVL1(device=dev, threads=spec["threads"], sync_every=spec["sync_every"], **solver_options(spec["variant"]))
    t0 = time.perf_counter()
    solver.batch(*chunks[0])  # compiles (once per shape set), allocator, kernels
    sync()
    first = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, flows, iters = [], [], []
    for call in range(spec["calls"]):
        t0 = time.perf_counter()
        for a, c in chunks:
            f = solver.batch(a, c)
            if call == 0:
                flows.append(f)
                iters.append(solver.last_iterations.sum(axis=(1, 2)))
        sync()
        times.append(time.perf_counter() - t0)
    seconds = median(times)
    out = {"pairs_per_s": len(prev) / seconds, "first_call": first, "compiled": solver.compiled,
           "compile_s": max(0.0, first - seconds / len(chunks)), "iterations": float(np.concatenate(iters).mean())}
    if dev.type == "cuda":
        out.update(gpu_mib=torch.cuda.max_memory_allocated(dev) / b / 2**20, gpu_name=torch.cuda.get_device_name(dev))
    if spec.get("flows"):
        np.savez_compressed(spec["flows"], prev=prev[:SAVED_PAIRS], nxt=nxt[:SAVED_PAIRS],
                            flow=np.concatenate(flows)[:SAVED_PAIRS])
    if spec.get("grove"):
        grey, gt = grove3(Path(spec["grove"]))
        out["grove3"] = epe(solver(*grey), gt)
    return out


def run_child(spec: dict, timeout: float) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-m", "tools.bench.flow", "--child", json.dumps(spec)],
                              capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1][:120] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_flows(folder: Path) -> None:
    """EPE from OpenCV of every ``*.npz`` that ``--save-flows`` wrote (run where cv2 has optflow)."""
    import cv2
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    for f in sorted(Path(folder).glob("*.npz")):
        d = np.load(f)
        diffs = [epe(flow, tvl1.calc(a, b, None)) for a, b, flow in zip(d["prev"], d["nxt"], d["flow"])]
        print(f"{f.stem}: mean end-point difference from OpenCV {np.mean(diffs):.4f} px (max {np.max(diffs):.4f})")


def main(argv: Optional[list[str]] = None) -> int:
    p = parser(__doc__, videos=True)
    p.add_argument("--device", default="cpu", help="torch device for our TV-L1 (default: cpu)")
    p.add_argument("--variants", default="eager,compiled", help=", ".join(VARIANTS))
    p.add_argument("--batches", default="1", help="batch sizes (pairs per call), comma separated")
    p.add_argument("--pairs", type=int, default=8, help="pairs per measurement")
    p.add_argument("--calls", type=int, default=1, help="timed passes over the pairs per process")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--sync-every", type=int, help="TorchTVL1 sync_every (default: its own)")
    p.add_argument("--busy", type=int, default=0, help="keep this many other cores busy meanwhile")
    p.add_argument("--grove", type=Path, default=GROVE, help="Middlebury Grove3 folder ('' to skip)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per child process")
    p.add_argument("--save-flows", type=Path, help="keep inputs and flows of each variant here (npz)")
    p.add_argument("--compare-flows", type=Path, help="only: EPE from OpenCV of flows saved earlier")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = parse_args(p, argv, variants="eager", pairs=2, repeats=1, grove=Path(""))
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.compare_flows:
        compare_flows(args.compare_flows)
        return 0
    import cv2
    import torch
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here (the GPU measurements need one)")
    clock = Clock(argv)
    keys = [(v, int(b)) for v in args.variants.split(",") for b in args.batches.split(",")]
    for v, _ in keys:
        solver_options(v)
    grove = args.grove if str(args.grove) not in ("", ".") and args.grove.is_dir() else None
    with_cv = hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")
    prev, nxt = frame_pairs(args.videos, args.pairs)
    tmp = args.save_flows or Path(tempfile.mkdtemp(prefix="bench_flow_"))
    tmp.mkdir(parents=True, exist_ok=True)
    runs: dict = {k: [] for k in keys}
    opencv: list[float] = []
    cv_flows, cv_epe = None, {}
    with busy(args.busy):
        for r in range(args.repeats):
            cv_s = None
            if with_cv:
                tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
                t = time.perf_counter()
                flows = [tvl1.calc(a, b, None) for a, b in zip(prev, nxt)]
                cv_s = time.perf_counter() - t
                cv_flows = cv_flows or flows
                opencv.append(cv_s)
            for key in rotated(keys, r):
                variant, b = key
                first = not any("error" not in x for (v2, _), xs in runs.items() if v2 == variant for x in xs)
                spec = {"device": args.device, "variant": variant, "batch": b, "pairs": args.pairs, "calls": args.calls,
                        "threads": args.threads, "sync_every": args.sync_every, "videos": str(args.videos),
                        "grove": str(grove) if grove and first else None,
                        "flows": str(tmp / f"{variant}_b{b}.npz") if first else None}
                res = run_child(spec, args.timeout)
                if "error" not in res and cv_s:
                    res["ratio"] = res["pairs_per_s"] * cv_s / args.pairs
                if "error" not in res and first and cv_flows is not None:
                    cv_epe[variant] = float(np.mean([epe(f, c) for f, c in zip(np.load(spec["flows"])["flow"], cv_flows)]))
                runs[key].append(res)
                log(f"[repeat {r + 1}/{args.repeats}] {variant} batch {b}: {res}")
    rows = []
    for (variant, b), rs in runs.items():
        ok = [x for x in rs if "error" not in x]
        row = {"variant": variant, "batch": b, "error": None if ok else rs[0]["error"]}
        if ok:
            ratios = [x["ratio"] for x in ok if "ratio" in x]
            row.update(rate=median(x["pairs_per_s"] for x in ok), ratio=median(ratios) if ratios else None, ratios=ratios,
                       compile_s=median(x["compile_s"] for x in ok) if ok[0]["compiled"] else None,
                       iterations=median(x["iterations"] for x in ok),
                       gpu_mib=median(x["gpu_mib"] for x in ok) if cuda else None, epe_opencv=cv_epe.get(variant),
                       grove3=next((x["grove3"] for x in ok if "grove3" in x), None))
        rows.append(row)
    grove3_opencv = None
    if with_cv and grove:
        grey, gt = grove3(grove)
        grove3_opencv = epe(cv2.optflow.DualTVL1OpticalFlow_create().calc(*grey, None), gt)
    section = "bench_flow" + ("_cuda" if cuda else "") + (f"_busy{args.busy}" if args.busy else "") + \
        (f"_threads{args.threads}" if args.threads else "")
    finish(section, {"section": section, "template": "flow", **clock.stamp("tools.bench.flow"),
                     "cuda": cuda, "device_name": torch.cuda.get_device_name(torch.device(args.device)) if cuda else platform.processor() or "CPU",
                     "torch": torch.__version__, "cv2": cv2.__version__, "usable_cores": len(os.sched_getaffinity(0)),
                     "pairs": args.pairs, "clips": [c.name for c in find_clips(args.videos)], "calls": args.calls,
                     "repeats": args.repeats, "threads": args.threads, "busy": args.busy,
                     "opencv": {"threads": cv2.getNumThreads(), "rate": args.pairs / median(opencv),
                                "ms_per_pair": 1000 * median(opencv) / args.pairs,
                                "per_repeat": [args.pairs / x for x in opencv]} if opencv else None,
                     "rows": rows, "grove3_opencv": grove3_opencv}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
