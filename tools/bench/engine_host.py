"""How fast the flow engine's host side can go: ``tsn-prep extract-flow --backend torch`` through
the batching engine (real decoding workers, pairing, quantisation and JPEG threads, store writes)
with a solver that answers at once with real TV-L1 flows, so the GPU is taken out of the picture.

If end-to-end extraction on a GPU runs well below this figure on the same machine while the GPU
is not busy, the pipeline (batch formation, pairs in flight) is what holds it back, not the CPUs.

    python -m tools.bench.engine_host VIDEOS OUT --workers 2 [--flows FLOWS.npz] [--batch 128]
                                     [--solver-rate 407] [--quick]

``--solver-rate R`` models a GPU solver of R pairs/s (it sleeps n/R per batch of n): then the run's
pairs/s against R, and how busy the modelled solver was, show whether the pipeline keeps a solver
of that speed fed.

``--flows``: an npz with a ``flow`` array (N, H, W, 2) of real flows at the clips' frame size (e.g.
one saved by ``python -m tools.bench.flow --save-flows``); without it, smooth synthetic flows are used.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from tools.bench.common import add_output_options, finish, now, stamp


def synthetic_flows(h: int, w: int, n: int = 8) -> np.ndarray:
    """Smooth flows of a few pixels (JPEG costs what it costs on real flow, not on noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([np.stack([3 * np.sin(x / 40 + k) + 0.5 * np.cos(y / 17),
                               2 * np.cos(y / 30 + k) - 0.3 * np.sin(x / 23)], axis=-1)
                     for k in range(n)]).astype(np.float32)


class CannedSolver:
    """Stands for the torch TV-L1: returns stored flows (cycled) for a batch, instantly or, with
    ``rate``, after ``n / rate`` seconds of sleep (a GPU solver of that many pairs/s: the solver
    thread waits without using a core, as it does while a GPU computes)."""

    name = "torch"
    batches = True
    compiled = False

    def __init__(self, flows: np.ndarray, rate: float = 0.0, steps: int = 1, quantizes: bool = True):
        self.flows, self.rate, self.steps = flows, rate, steps
        self.quantizes = quantizes  # as the torch solver: on the device, before the copy to the host
        self.levels: dict = {}      # bound -> the canned flows quantised
        self.busy = 0.0  # seconds spent "solving"

    def batch(self, prev, cur, bound=None) -> np.ndarray:
        n, h, w = np.asarray(prev).shape
        if self.rate:
            for _ in range(self.steps):  # each wake-up needs the GIL back, as each launch does
                time.sleep(n / self.rate / self.steps)
            self.busy += n / self.rate
        f = self.flows
        if f.shape[1:3] != (h, w):
            f = synthetic_flows(h, w)
            self.flows = f
        if bound is not None:
            if bound not in self.levels:
                from tsn_prep.quantize import quantize
                self.levels[bound] = quantize(f, bound)
            f = self.levels[bound]
        return [f[i % len(f)] for i in range(n)]  # views: the real solver's output is not copied either


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", type=Path)
    p.add_argument("out", type=Path, help="store to write (deleted first)")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--batch", type=int, help="pairs per solver call (default: the engine's AUTO_MAX_BATCH)")
    p.add_argument("--flows", type=Path, help="npz with real flows ('flow': N, H, W, 2)")
    p.add_argument("--solver-rate", type=float, default=0.0,
                   help="pairs/s of a modelled GPU solver (sleeps n/rate per batch); 0: instant")
    p.add_argument("--solver-steps", type=int, default=1,
                   help="the modelled solve as this many sleeps, each a return to Python that needs the GIL")
    p.add_argument("--quantize-on", choices=("device", "host"), default="device",
                   help="where flows are quantised: by the solver (the torch solver's way) or by the host")
    p.add_argument("--encode-threads", type=int, help="the engine's encoding threads (default: one per usable core)")
    p.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (s) for the run")
    p.add_argument("--quick", action="store_true", help="only the first 8 frames of each video")
    add_output_options(p)
    args = p.parse_args(argv)

    import tsn_prep.engine as engine
    from tsn_prep.extract import ExtractParams
    from tsn_prep.plan import RunPlan
    from tsn_prep.run import run_extraction

    size = ExtractParams().size
    flows = np.load(args.flows)["flow"] if args.flows else synthetic_flows(size[1], size[0])
    solvers = []

    def make(gpu):
        solvers.append(CannedSolver(flows, args.solver_rate, args.solver_steps, args.quantize_on == "device"))
        return solvers[-1]

    engine.solvers = lambda params, plan: ((None,), make)  # the modelled GPU: one solver
    if args.encode_threads:
        engine.usable_cores = lambda: args.encode_threads
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    shutil.rmtree(args.out, ignore_errors=True)
    params = ExtractParams(modalities=("flow",), max_frames=8 if args.quick else None)
    plan = RunPlan(workers=args.workers, backend="torch", batch_pairs=args.batch or engine.AUTO_MAX_BATCH)
    started, t0 = now(), time.perf_counter()
    summary = run_extraction(args.videos, args.out, params, plan, 0, 1, progress=False)
    wall = time.perf_counter() - t0
    finish("engine_host", {"section": "engine_host", "template": "engine_host",
                           **stamp("tools.bench.engine_host", sys.argv[1:] if argv is None else argv, started, t0),
                           "pairs": summary.pairs, "videos": summary.done, "failed": len(summary.failed), "wall": wall,
                           "rate": summary.pairs / wall, "solver_rate": args.solver_rate,
                           "solver_busy": sum(s.busy for s in solvers) / wall, "workers": args.workers,
                           "batch": plan.batch_pairs, "quantize_on": args.quantize_on}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
