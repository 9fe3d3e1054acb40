"""Accuracy and CPU speed of the flow algorithms ``tsn-prep extract-flow --algorithm`` offers.

Accuracy: end-point error on Middlebury Grove3 (640x480) against its ground truth, and on Grove3
resized to 340x256 (flow scaled with it). Speed: seconds per pair at 340x256 on the real clips
with 1 and 2 OpenCV threads, algorithms interleaved within each repeat, medians. Its page is
docs/flow-algorithms.md (a whole page rendered from docs/bench/flow_algorithms.json).

    python -m tools.bench.algorithms [--repeats 5] [--pairs 4] [--quick]
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Optional

import cv2
import numpy as np

from tools.bench.common import VIDEOS, epe, finish, grey_pairs, grove3, median, parse_args, parser
from tsn_prep.extraction.backends import ALGORITHMS, make_flow_fn
from tsn_prep.extraction.params import ExtractParams

CLIPS = ("armwrestling_kinetics.mp4", "poolcleaning.mp4", "eyemakeup_ucf101like.avi", "carphone.mp4")


def main(argv: Optional[list[str]] = None) -> int:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pairs", type=int, default=4, help="pairs per clip for the timing")
    args = parse_args(p, argv, repeats=1, pairs=1)
    size = ExtractParams().size
    (a, b), gt = grove3()
    scale = np.array([size[0] / a.shape[1], size[1] / a.shape[0]], np.float32)
    small = [cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b)]
    grove = {"full": (a, b, gt), "small": (*small, cv2.resize(gt, size, interpolation=cv2.INTER_LINEAR) * scale)}
    pairs = [p for c in CLIPS for p in grey_pairs(VIDEOS / c, size, args.pairs + 1)]
    times: dict = {}
    for _ in range(args.repeats):
        for threads in (1, 2):
            cv2.setNumThreads(threads)
            for name in ALGORITHMS:
                fn = make_flow_fn(algorithm=name)
                fn(*pairs[0])  # warm-up (allocations)
                t0 = time.perf_counter()
                for x, y in pairs:
                    fn(x, y)
                times.setdefault((name, threads), []).append((time.perf_counter() - t0) / len(pairs))
    rows = [{"name": name, "description": desc,
             **{f"epe_{k}": epe(make_flow_fn(algorithm=name)(x, y), g) for k, (x, y, g) in grove.items()},
             "s1": median(times[(name, 1)]), "s2": median(times[(name, 2)]), "rate2": 1 / median(times[(name, 2)])}
            for name, desc in ALGORITHMS.items()]
    by = {r["name"]: r for r in rows}
    finish("flow_algorithms", {
        "section": None, "page": "docs/flow-algorithms.md", "template": "algorithms",
        "script": "python -m tools.bench.algorithms", "args": sys.argv[1:] if argv is None else argv,
        "processor": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
        "cv2": cv2.__version__, "repeats": args.repeats, "rows": rows, "by": by, "pairs": args.pairs, "clips": list(CLIPS),
        "zero_full": epe(np.zeros_like(gt), gt), "zero_small": epe(np.zeros_like(grove["small"][2]), grove["small"][2]),
        "dis_speedup": by["tvl1"]["s2"] / by["dis"]["s2"], "farneback_speedup": by["tvl1"]["s2"] / by["farneback"]["s2"]}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
