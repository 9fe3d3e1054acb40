"""Accuracy and CPU speed of the flow algorithms `tsn-prep extract-flow --algorithm` offers.

Accuracy: end-point error on Middlebury Grove3 (640x480) against its ground truth, and on Grove3
resized to 340x256 (flow scaled with it). Speed: seconds per frame pair at 340x256 on the real
clips, with 1 and 2 OpenCV threads; the algorithms are interleaved within each repeat and the
median over repeats is reported. Writes docs/flow-algorithms.md.

    python tools/bench_algorithms.py [--repeats 5] [--pairs 8]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from tsn_prep.flow import ALGORITHMS, make_flow_fn
from tsn_prep.video import VideoReader

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
GROVE = DATA / "flow_gt" / "middlebury_grove3"
CLIPS = ("armwrestling_kinetics.mp4", "poolcleaning.mp4", "eyemakeup_ucf101like.avi", "carphone.mp4")
OUT = REPO / "docs" / "flow-algorithms.md"


def epe(flow: np.ndarray, gt: np.ndarray) -> float:
    return float(np.linalg.norm(flow - gt, axis=2).mean())


def grove_pairs() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    a, b = (cv2.imread(str(GROVE / f"frame{i}.png"), cv2.IMREAD_GRAYSCALE) for i in (10, 11))
    gt = cv2.readOpticalFlow(str(GROVE / "grove3.flo"))
    small = (340, 256)
    scale = np.array([small[0] / a.shape[1], small[1] / a.shape[0]], np.float32)
    gt_small = cv2.resize(gt, small, interpolation=cv2.INTER_LINEAR) * scale
    return {"640x480": (a, b, gt),
            "340x256": (cv2.resize(a, small, interpolation=cv2.INTER_AREA),
                        cv2.resize(b, small, interpolation=cv2.INTER_AREA), gt_small)}


def clip_pairs(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for clip in CLIPS:
        grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
                for f in VideoReader(DATA / "videos" / clip, (340, 256), None, n + 1).frames()]
        pairs += list(zip(grey[:-1], grey[1:]))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=4, help="pairs per clip for the timing")
    args = ap.parse_args()

    accuracy = {name: {size: epe(make_flow_fn(algorithm=name)(a, b), gt)
                       for size, (a, b, gt) in grove_pairs().items()} for name in ALGORITHMS}
    zero = {size: epe(np.zeros_like(gt), gt) for size, (_, _, gt) in grove_pairs().items()}
    pairs = clip_pairs(args.pairs)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for threads in (1, 2):
            cv2.setNumThreads(threads)
            for name in ALGORITHMS:
                fn = make_flow_fn(algorithm=name)
                fn(*pairs[0])  # warm-up (allocations)
                start = time.perf_counter()
                for a, b in pairs:
                    fn(a, b)
                times.setdefault((name, threads), []).append((time.perf_counter() - start) / len(pairs))
    per_pair = {k: statistics.median(v) for k, v in times.items()}

    lines = [
        "# Choosing a flow algorithm",
        "",
        "`tsn-prep extract-flow --algorithm tvl1|farneback|dis` (default `tvl1`, the paper's). The",
        "algorithm and its settings are recorded in every video's metadata and shown by `tsn-prep info`;",
        "`tsn-train predict` extracts with the algorithm its training store used. Farneback and DIS run",
        "on the CPU through OpenCV (`--gpu` and `--backend` choose TV-L1 implementations and are",
        "refused with them).",
        "",
        "Measured with `python tools/bench_algorithms.py "
        f"--repeats {args.repeats} --pairs {args.pairs}` on this project's machine "
        f"({platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} "
        f"usable cores, OpenCV {cv2.__version__}, shared and noisy: medians of {args.repeats} "
        "interleaved repeats).",
        "",
        "| algorithm | Grove3 EPE 640x480 (px) | Grove3 EPE 340x256 (px) | s/pair at 340x256, 1 thread "
        "| 2 threads | pairs/s, 2 threads |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ALGORITHMS:
        t1, t2 = per_pair[(name, 1)], per_pair[(name, 2)]
        lines.append(f"| {name}: {ALGORITHMS[name]} | {accuracy[name]['640x480']:.3f} | "
                     f"{accuracy[name]['340x256']:.3f} | {t1:.4f} | {t2:.4f} | {1 / t2:.1f} |")
    lines += [
        f"| zero flow (for scale) | {zero['640x480']:.3f} | {zero['340x256']:.3f} | | | |",
        "",
        f"Timing pairs: the first {args.pairs} frame pairs of each of {len(CLIPS)} real clips "
        f"({', '.join(CLIPS)}) decoded and resized to 340x256 as extraction does; the flow call "
        "alone (no decoding, quantisation or JPEG). EPE is the mean end-point error against the "
        "ground truth; at 340x256 the ground truth is resized and scaled with the image.",
        "",
        f"TV-L1 has the lowest error ({accuracy['tvl1']['640x480']:.3f} px on Grove3, against "
        f"{accuracy['dis']['640x480']:.3f} for DIS and {accuracy['farneback']['640x480']:.3f} for "
        f"Farneback) and is what TSN was trained and evaluated with; with 2 threads DIS is "
        f"{per_pair[('tvl1', 2)] / per_pair[('dis', 2)]:.0f}x and Farneback "
        f"{per_pair[('tvl1', 2)] / per_pair[('farneback', 2)]:.0f}x faster here. For a CPU-only user "
        "without time for TV-L1, DIS is the more accurate of the fast two; expect flow streams "
        "trained on it to score below the paper's TV-L1 figures.",
        "GPU TV-L1 figures are in [performance.md](performance.md).",
        "",
    ]
    OUT.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
