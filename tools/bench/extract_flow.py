"""End to end: ``tsn-prep extract-flow --backend torch`` against ``--backend opencv`` on the CPU.

Each run is a fresh ``tsn-prep extract-flow`` process over the first N frames of four real clips
at 340x256 (decoding, TV-L1, quantisation, JPEG, LMDB), after one warm-up run that fills
inductor's disk cache; backends interleaved within each repeat; medians, pairs/s and torch /
opencv. ``--busy K`` keeps K other cores busy throughout.

    python -m tools.bench.extract_flow [--frames 5] [--repeats 3] [--workers 1] [--busy 0] [--quick]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from tools.bench.common import VIDEOS, Busy, finish, log, median, now, parse_args, stamp

CLIPS = ("armwrestling_kinetics.mp4", "poolcleaning.mp4", "eyemakeup_ucf101like.avi", "carphone.mp4")
BACKENDS = ("opencv", "torch")


def run(backend: str, videos: Path, out: Path, frames: int, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tsn_prep.cli", "extract-flow", str(videos), str(out), "--backend", backend,
                    "--max-frames", str(frames), "--workers", str(workers), "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=5, help="frames per clip (frames - 1 pairs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--busy", type=int, default=0, help="cores kept busy by spinning processes")
    args = parse_args(p, argv, frames=2, repeats=1)
    started, t0 = now(), time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tsn-bench-extract-"))
    (tmp / "videos").mkdir()
    for clip in CLIPS:
        (tmp / "videos" / clip).symlink_to(VIDEOS / clip)
    times: dict = {b: [] for b in BACKENDS}
    try:
        with Busy(args.busy):
            run("torch", tmp / "videos", tmp / "warm", 2, args.workers)  # fill inductor's disk cache once
            for _ in range(args.repeats):
                for b in BACKENDS:
                    times[b].append(run(b, tmp / "videos", tmp / b, args.frames, args.workers))
                    log(f"[extract-flow] {b}: {times[b][-1]:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pairs = len(CLIPS) * (args.frames - 1)
    rates = {b: pairs / median(t) for b, t in times.items()}
    finish("extract_flow", {"section": "extract_flow", "template": "extract_flow",
                            **stamp("tools.bench.extract_flow", sys.argv[1:] if argv is None else argv, started, t0),
                            "pairs": pairs, "repeats": args.repeats, "workers": args.workers, "busy": args.busy,
                            "rows": [{"backend": b, "seconds": times[b], "rate": rates[b], "ratio": rates[b] / rates["opencv"]}
                                     for b in BACKENDS]}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
