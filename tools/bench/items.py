"""Items per second of tsn-train's training dataset, for comparing two checkouts.

    git worktree add /tmp/before 31eff1f
    python -m tools.bench.items --repo /tmp/before --store STORE
    python -m tools.bench.items --repo . --store STORE

One process, one thread, the reference settings of the checkout measured (segments, TrainAugment
at 224 with its scales and crop positions), items straight from the dataset; medians of
``--passes`` passes. STORE needs videos ``a`` and ``b`` with rgb (>= 40 frames) and flow
(>= 15 fields), e.g. ``tsn-prep extract-frames V STORE --max-frames 40`` and ``tsn-prep
extract-flow V STORE --max-frames 16`` over two clips linked as V/a.mp4 and V/b.mp4.
"""
from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from typing import Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")


def reference(modality: str):
    """(scales, is_flow) as the checkout measured defines them (before and after the modality
    spec moved to tsn_core, and its training settings to tsn_train.config)."""
    try:
        from tsn_core.modalities import MODALITIES
        from tsn_train.config import REFERENCE
        return REFERENCE[modality].scales, MODALITIES[modality].is_flow
    except ImportError:
        from tsn_prep.modalities import MODALITIES
        return MODALITIES[modality].scales, MODALITIES[modality].is_flow


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True, help="the checkout whose tsn_train to measure")
    p.add_argument("--store", required=True)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one pass")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.repo))  # the checkout measured, not the installed one
    for name in [m for m in sys.modules if m.split(".")[0] in ("tsn_core", "tsn_prep", "tsn_train")]:
        del sys.modules[name]
    import cv2
    import torch

    from tsn_train.dataset import StoreImages, VideoDataset
    from tsn_train.lists import Record
    from tsn_train.transforms import NORMS, TrainAugment

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    records = [Record("a", 0), Record("b", 1)] * 20
    rates = {}
    for modality in ("rgb", "rgbdiff", "flow"):
        scales, is_flow = reference(modality)
        counts = dict.fromkeys("ab", 15 if is_flow else 40)
        extra = [NORMS["caffe_bgr"]] if "norm" in inspect.signature(VideoDataset).parameters else []
        ds = VideoDataset(StoreImages(args.store), records, counts, modality, 3, True, TrainAugment(224, scales, is_flow), *extra)
        for i in range(3):
            ds[i]
        passes = []
        for _ in range(1 if args.quick else args.passes):
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            passes.append(len(ds) / (time.perf_counter() - t0))
        rates[modality] = statistics.median(passes)
    print(" ".join(f"{m} {r:.0f} items/s" for m, r in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
