"""Items per second of tsn-train's training dataset, for comparing two checkouts of this repository.

    git worktree add /tmp/before 31eff1f
    python tools/bench_items.py --repo /tmp/before --store STORE
    python tools/bench_items.py --repo . --store STORE

One process, one thread, reference settings (3 segments, TrainAugment at 224, the checkout's
default crop positions), items taken straight from the dataset; medians of 5 passes. An item is
what the checkout's loader hands to the training step: before the uint8 change that included the
float conversion and normalisation (``to_input``), after it not (that runs on the device).
STORE needs videos ``a`` and ``b`` with rgb (>= 40 frames) and flow (>= 15 fields), e.g.
``tsn-prep extract-frames V STORE --max-frames 40`` and ``tsn-prep extract-flow V STORE
--max-frames 16`` over two clips linked as V/a.mp4 and V/b.mp4.
"""
from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="the checkout whose tsn_train to measure")
    ap.add_argument("--store", required=True)
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.repo))
    import cv2
    import torch

    from tsn_prep.modalities import MODALITIES
    from tsn_train.dataset import StoreImages, VideoDataset
    from tsn_train.lists import Record
    from tsn_train.transforms import NORMS, TrainAugment

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    records = [Record("a", 0), Record("b", 1)] * 20
    rates = {}
    for modality in ("rgb", "rgbdiff", "flow"):
        spec = MODALITIES[modality]
        counts = {"a": 15 if spec.is_flow else 40, "b": 15 if spec.is_flow else 40}
        extra = [NORMS["caffe_bgr"]] if "norm" in inspect.signature(VideoDataset).parameters else []
        ds = VideoDataset(StoreImages(args.store), records, counts, modality, 3, True,
                          TrainAugment(224, spec.scales, spec.is_flow), *extra)
        for i in range(3):
            ds[i]
        passes = []
        for _ in range(args.passes):
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            passes.append(len(ds) / (time.perf_counter() - t0))
        rates[modality] = statistics.median(passes)
    print(" ".join(f"{m} {r:.0f} items/s" for m, r in rates.items()))


if __name__ == "__main__":
    main()
