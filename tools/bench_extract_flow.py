"""End to end: `tsn-prep extract-flow` with --backend torch against --backend opencv on the CPU.

Each run is a fresh process extracting the first N frames of each real clip at 340x256 into a new
store (decoding, TV-L1, quantisation, JPEG, LMDB), exactly as a user runs it; backends are
interleaved within each repeat and the median wall time per backend is reported, as pairs per
second and as the ratio torch / opencv. With --busy K, K other processes spin on a core
throughout (a busy machine). Prints a Markdown table to paste into docs/performance.md.

    python tools/bench_extract_flow.py [--frames 5] [--repeats 3] [--workers 1] [--busy 0]
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
CLIPS = ("armwrestling_kinetics.mp4", "poolcleaning.mp4", "eyemakeup_ucf101like.avi", "carphone.mp4")


def spin() -> None:
    while True:
        pass


def run(backend: str, videos: Path, out: Path, frames: int, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "tsn_prep.cli", "extract-flow", str(videos), str(out), "--backend",
           backend, "--max-frames", str(frames), "--workers", str(workers), "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5, help="frames per clip (frames - 1 pairs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--busy", type=int, default=0, help="cores kept busy by spinning processes")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tsn-bench-extract-"))
    videos = tmp / "videos"
    videos.mkdir()
    for clip in CLIPS:
        (videos / clip).symlink_to(VIDEOS / clip)
    pairs = len(CLIPS) * (args.frames - 1)
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        run("torch", videos, tmp / "warm", 2, args.workers)  # fill inductor's disk cache once
        times: dict[str, list[float]] = {"opencv": [], "torch": []}
        for _ in range(args.repeats):
            for backend in times:
                times[backend].append(run(backend, videos, tmp / backend, args.frames, args.workers))
    finally:
        for p in spinners:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {b: statistics.median(t) for b, t in times.items()}
    print(f"`python tools/bench_extract_flow.py --frames {args.frames} --repeats {args.repeats} "
          f"--workers {args.workers} --busy {args.busy}`: {pairs} pairs at 340x256, medians of "
          f"{args.repeats} interleaved runs\n")
    print("| backend | s per run (per repeat) | pairs/s | ratio to opencv |")
    print("| --- | --- | --- | --- |")
    for b, t in times.items():
        print(f"| {b} | {med[b]:.1f} ({', '.join(f'{x:.1f}' for x in t)}) | {pairs / med[b]:.2f} | "
              f"{med['opencv'] / med[b]:.2f} |")


if __name__ == "__main__":
    main()
