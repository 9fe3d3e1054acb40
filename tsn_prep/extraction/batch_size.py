"""How many frame pairs a device's solver takes in one call when ``RunPlan.batch_pairs`` is 0 (auto).

On CUDA the memory of one pair is probed once per (device, frame size) -- the peak memory of a
2-pair batch minus that of a 1-pair batch -- and the batch is
``min(AUTO_MAX_BATCH, AUTO_MEMORY_FRACTION * free / per pair)``. On the CPU, batches hold at most
``AUTO_CPU_PIXELS`` pixels per frame stack (1 pair at 340x256, 8 at 64x48): a batch runs until its
slowest pair has converged (the others are frozen, not removed), which costs nothing on a GPU that
has cores to spare but costs a CPU the frozen pairs' work. Measured here (eager, 2 threads, 8 pairs
of two real clips at 340x256): one at a time 9.8 s, one batch of 4 per clip 9.7 s, one batch of
all 8 across the clips 14.8 s. Small frames gain from batching instead (fixed costs per operation
dominate): 4 pairs at 64x48 took 3.7 s in one batch, 6.3 s one by one.
"""
from __future__ import annotations

import math

import numpy as np

from .solver import BatchSolver

AUTO_CPU_BATCH = 8         # at most, on the CPU
AUTO_CPU_PIXELS = 1 << 16  # pixels per frame stack on the CPU
AUTO_MAX_BATCH = 128       # the fastest per pair on an H100 (docs/performance.md: 407 vs 336 at 256)
AUTO_MEMORY_FRACTION = 0.6


def cpu_batch(size: tuple[int, int]) -> int:
    """Auto batch on the CPU for frames of ``size`` (h, w): see the module's docstring."""
    return max(1, min(AUTO_CPU_BATCH, AUTO_CPU_PIXELS // (size[0] * size[1])))


def probe_batch(solver: BatchSolver, size: tuple[int, int], device: str) -> tuple[int, str]:
    """The auto batch of ``solver`` on ``device`` (CUDA) for frames of ``size`` (h, w), and how it was
    chosen: the largest that fits AUTO_MEMORY_FRACTION of the free memory, from the peak memory
    of a 2-pair batch minus that of a 1-pair batch."""
    import torch

    h, w = size
    dev = torch.device(device)
    frames = np.zeros((2, h, w), np.uint8)  # the memory depends on the shape only
    try:
        probe = eager_twin(solver)
        peaks = []
        for b in (1, 2):
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            probe.batch(np.repeat(frames[:1], b, 0), np.repeat(frames[1:], b, 0))
            torch.cuda.synchronize(dev)
            peaks.append(torch.cuda.max_memory_allocated(dev) - base)
        per_pair = peaks[1] - peaks[0]
        if per_pair <= 0:
            per_pair = max(peaks[0], 1)
        free, _ = torch.cuda.mem_get_info(dev)
        free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)  # torch's cache
        batch = max(1, min(AUTO_MAX_BATCH, math.floor(AUTO_MEMORY_FRACTION * free / per_pair)))
        return batch, (f"{batch} ({per_pair / 2**20:.1f} MiB per pair, {free / 2**30:.1f} GiB free)")
    except Exception as exc:  # noqa: BLE001 - fall back to one pair at a time, and say so
        return 1, f"1 (probing the memory per pair failed: {type(exc).__name__}: {exc})"


def eager_twin(solver: BatchSolver) -> BatchSolver:
    """The solver for probing: an uncompiled twin where the solver allows one (a compiled probe
    would compile two extra shapes; eager code holds more temporaries, so the batch it suggests
    errs on the safe side), else the solver itself."""
    if not solver.compiled:
        return solver
    try:
        return type(solver)(solver.params, solver.device, compile=False)
    except Exception:  # noqa: BLE001 - another solver type: probe with it as it is
        return solver
