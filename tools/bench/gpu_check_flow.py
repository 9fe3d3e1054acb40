"""The solver part of the GPU check (tools/bench/gpu_check.py), in a child process of its own.

Per kernel variant of ``TorchTVL1`` (``VARIANTS``; one the installed code lacks is skipped with
its reason): accuracy (bit identity across batches, iteration counts, end-point difference from
OpenCV's flows in refs.npz), throughput per batch size (pairs/s, inner iterations, the bandwidth
model), Grove3's end-point error; then one profiled call. Each result is a JSON line appended the
moment it is known, so a child stopped at its budget leaves every figure it had.
"""
from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tools.bench.common import cycled_pairs, epe, log, median

PEAK_BYTES_PER_S = 4.8e12   # H200 HBM3e, the vendor's datasheet (the figure)
FUSED_BYTES = 64.0          # bytes per pixel and inner iteration of a fused fp32 iteration (issue 27)
TWO_KERNEL_BYTES = 88.0     # a u kernel and a p kernel per iteration (flow_triton)


def tiles_bytes(k: int, block: Optional[tuple[int, int]] = None) -> float:
    """flow_tiles' own model: K iterations per launch on a block E = EH x EW, of which the core
    (EH - 2K) x (EW - 2K) is written: (9 E / core + 6) * 4 / K bytes per pixel-iteration."""
    if block is None:
        from tsn_prep.extraction import tvl1_tiles as flow_tiles
        block = flow_tiles.BLOCK
    eh, ew = block
    return (9 * eh * ew / ((eh - 2 * k) * (ew - 2 * k)) + 6) * 4 / k


# The kernel variants measured, default first: name, TorchTVL1 options, bytes per
# pixel-iteration of the variant's memory model (a number, or a function of the options).
VARIANTS: tuple = (
    ("triton", {"kernel": "triton"}, TWO_KERNEL_BYTES),
    ("tiles-k4", {"kernel": "tiles", "tile_iterations": 4}, lambda o: tiles_bytes(o["tile_iterations"])),
    ("tiles-k8", {"kernel": "tiles", "tile_iterations": 8}, lambda o: tiles_bytes(o["tile_iterations"])),
)
# On the CPU (--tiny): the eager torch iteration; the GPU variants are tried too and skipped.
CPU_VARIANTS: tuple = (("torch-eager", {"kernel": "torch", "compile": False}, TWO_KERNEL_BYTES),)


def variants_for(device: str) -> tuple:
    return VARIANTS if device.startswith("cuda") else CPU_VARIANTS + VARIANTS


def pixel_iterations(iters: np.ndarray, h: int, w: int, params=None) -> np.ndarray:
    """Pixel-iterations per pair: sum over pyramid levels of the level's pixels times the pair's
    inner iterations there (``last_iterations``: (B, levels, warps), level 0 the finest)."""
    from tsn_prep.extraction.tvl1_ops import pyramid_sizes as _pyramid_sizes
    from tsn_prep.extraction.tvl1_params import TVL1Params
    p = params or TVL1Params()
    sizes = _pyramid_sizes(h, w, p.scales, p.scale_step)[:iters.shape[1]]
    pixels = np.array([a * b for a, b in sizes], np.float64)
    return (iters.sum(axis=2) * pixels).sum(axis=1)


def bandwidth(pairs_per_s: float, pix_iters_per_pair: float, model_bytes: float) -> dict:
    """The memory model of a throughput row: the issue's bound (fused, 64 B per pixel-iteration,
    at the datasheet peak) and what this variant's own model says it moved."""
    bound = PEAK_BYTES_PER_S / (FUSED_BYTES * pix_iters_per_pair)
    moved = pairs_per_s * pix_iters_per_pair * model_bytes
    return {"bound_pairs_per_s": bound, "bandwidth_bound_fraction": pairs_per_s / bound,
            "model_bytes_per_pixel_iteration": model_bytes, "model_tb_per_s": moved / 1e12,
            "model_fraction_of_peak": moved / PEAK_BYTES_PER_S}


class Results:
    """Appends one JSON line per result to ``path`` (flushed at once) and logs it."""

    def __init__(self, path: Path, tag: str = "flow"):
        self.path, self.tag = Path(path), tag

    def __call__(self, kind: str, **fields) -> dict:
        record = {"kind": kind, **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in fields.items()
                 if not isinstance(v, (list, dict))}
        log(f"[{self.tag}] {kind}: {shown}")
        return record


def make_solver(opts: dict, device, params):
    """A TorchTVL1 with ``opts``, or the reason this code cannot make one (an option or kernel
    the installed TorchTVL1 does not have, a kernel this device cannot run)."""
    from tsn_prep.extraction.tvl1_torch import TorchTVL1
    try:
        return TorchTVL1(params, device=device, **opts), None
    except (TypeError, ValueError, ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def timed_pass(solver, prev, nxt, batch: int, sync: Callable, event: Optional[Callable]):
    """One pass over all pairs in calls of ``batch``: (wall s, GPU s by CUDA events or None,
    iterations (N, levels, warps))."""
    iters = []
    start = event() if event else None
    t0 = time.perf_counter()
    for i in range(0, len(prev), batch):
        solver.batch(prev[i:i + batch], nxt[i:i + batch])
        iters.append(solver.last_iterations)
    end = event() if event else None
    sync()
    wall = time.perf_counter() - t0
    gpu = start.elapsed_time(end) / 1000 if event else None
    return wall, gpu, np.concatenate(iters)


def accuracy(name, solver, prev, nxt, refs, nref, spec, emit) -> dict:
    """Batch a, then batch b over the same first pairs: compile time, bit identity, iteration
    counts, EPE of batch a's flows of the reference pairs against OpenCV's; the flows saved."""
    a, b = spec["accuracy_batches"]
    nref = min(nref, a)
    t0 = time.perf_counter()
    fa = solver.batch(prev[:a], nxt[:a])
    first = time.perf_counter() - t0
    ia = solver.last_iterations.copy()
    t0 = time.perf_counter()
    fb = solver.batch(prev[:b], nxt[:b])
    second = time.perf_counter() - t0
    ib = solver.last_iterations
    per_pair = [epe(fa[i], refs[i]) for i in range(nref)]
    saved = Path(spec["flows_dir"]) / f"{name}.npz"
    saved.parent.mkdir(parents=True, exist_ok=True)
    # what tools.bench.flow --compare-flows reads (about 0.8 MB a pair: 10 pairs stay far below
    # the 16 MiB a file that comes back from $OUT); OpenCV's flows are refs.npz's
    np.savez_compressed(saved, prev=prev[:nref], nxt=nxt[:nref], flow=fa[:nref], batch=np.int64(a))
    return emit("accuracy", variant=name, batches=[a, b], first_call_s=first, second_call_s=second,
                bit_identical=bool(np.array_equal(fa, fb[:a])),
                max_abs_difference_px=float(np.abs(fa - fb[:a]).max()),
                iterations_equal=bool(np.array_equal(ia, ib[:a])),
                mean_epe_vs_opencv_px=float(np.mean(per_pair)), max_epe_vs_opencv_px=float(np.max(per_pair)),
                epe_per_pair=per_pair, reference_pairs=nref, flows_file=saved.name)


def throughput(name, solver, prev, nxt, model_bytes, spec, deadline, emit, sync, event, dev) -> list:
    """Pairs/s at every batch size over the same pairs (median of timed passes after a warm-up
    call at that size), with inner iterations and the bandwidth model; stops at ``deadline``."""
    import torch
    h, w = prev.shape[1:]
    rows = []
    for k, batch in enumerate(spec["batches"]):
        if k and time.monotonic() > deadline:  # the first batch size is always measured
            emit("stopped", variant=name, at=f"batch {batch}", reason="the variant's time was up")
            break
        n = (len(prev) // batch) * batch
        if n == 0:
            emit("skipped", variant=name, batch=batch, reason=f"fewer than {batch} pairs")
            continue
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        solver.batch(prev[:batch], nxt[:batch])  # a new shape: level buffers, CUDA graphs
        sync()
        warm = time.perf_counter() - t0
        walls, gpus, iters = [], [], None
        while len(walls) < spec["max_passes"] and (len(walls) < spec["min_passes"]
                                                   or sum(walls) < spec["min_seconds"]):
            if walls and time.monotonic() > deadline:
                break
            wall, gpu, iters = timed_pass(solver, prev[:n], nxt[:n], batch, sync, event)
            walls.append(wall)
            gpus.append(gpu)
        rate = n / median(walls)
        pix = float(pixel_iterations(iters, h, w, solver.params).mean())
        row = emit("throughput", variant=name, batch=batch, pairs=n, pairs_per_s=rate, warm_up_call_s=warm,
                   pass_s=walls, gpu_s_by_events=gpus if event else None,
                   gpu_fraction_of_wall=(sum(gpus) / sum(walls)) if event else None,
                   inner_iterations_per_pair=float(iters.sum(axis=(1, 2)).mean()),
                   finest_equivalent_iterations=pix / (h * w), pixel_iterations_per_pair=pix,
                   gpu_mib_per_pair=(torch.cuda.max_memory_allocated(dev) / batch / 2**20
                                     if dev.type == "cuda" else None),
                   **bandwidth(rate, pix, model_bytes))
        rows.append(row)
    return rows


def grove(name, solver, spec, emit) -> dict:
    """Grove3 in a batch of two copies (a batch of one would compile another graph on CUDA):
    end-point error against the ground truth and against OpenCV's."""
    from tools.bench.gpu_check_prepare import grove3_at
    refs = np.load(spec["refs"])
    grey, gt = grove3_at(Path(spec["grove"]), float(refs["grove3_scale"]))
    t0 = time.perf_counter()
    f = solver.batch(np.stack([grey[0]] * 2), np.stack([grey[1]] * 2))
    opencv = float(refs["grove3_opencv_epe"])
    e = epe(f[0], gt)
    return emit("grove3", variant=name, size=list(grey[0].shape[::-1]), epe_px=e, opencv_epe_px=opencv,
                relative_to_opencv=(e - opencv) / opencv, within_1_percent=abs(e - opencv) <= 0.01 * opencv,
                copies_identical=bool(np.array_equal(f[0], f[1])), seconds=time.perf_counter() - t0)


def profile(name, solver, prev, nxt, batch: int, dev, emit, top: int = 12) -> dict:
    """One call at ``batch`` under torch.profiler: the kernels (CPU: ops) taking the most time."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        solver.batch(prev[:batch], nxt[:batch])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    cuda = dev.type == "cuda"

    def t(e):  # self time on the device (renamed from cuda_* in torch 2.4), else on the CPU
        if cuda:
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        return e.self_cpu_time_total
    events = sorted(prof.key_averages(), key=t, reverse=True)
    total = sum(t(e) for e in events)
    rows = [{"name": e.key[:80], "calls": e.count, "ms": t(e) / 1000, "share": t(e) / total if total else None}
            for e in events[:top] if t(e) > 0]
    return emit("profile", variant=name, batch=batch, on="device" if cuda else "cpu", total_ms=total / 1000,
                top=rows)


def run(spec: dict, emit: Results) -> None:
    import torch
    dev = torch.device(spec["device"])
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)

    def event():
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e
    deadline = time.monotonic() + spec["budget_s"]
    t0 = time.perf_counter()
    from tsn_prep.extraction.tvl1_params import TVL1Params
    carried = np.load(spec["refs"])
    params = TVL1Params.from_dict(json.loads(str(carried["tvl1"])))  # as OpenCV's refs
    # the carried reference pairs first, then pairs of the clips in turn, as the pipeline decodes them
    n = spec["solver_pairs"]
    prev, nxt = cycled_pairs(Path(spec["videos"]), tuple(spec["size"]), n, n // 5 + 2,
                             list(zip(carried["prev"], carried["nxt"])))
    refs, nref = carried["flow"], len(carried["flow"])
    emit("pairs", pairs=len(prev), reference_pairs=nref, size=list(prev.shape[:0:-1]),
         tvl1=params.as_dict(), seconds=time.perf_counter() - t0)
    variants = variants_for(spec["device"])
    wanted = spec.get("variants")
    if wanted:
        variants = tuple(v for v in variants if v[0] in wanted)
    usable = []  # the solvers this code can make here; the others are skipped with its reason
    for name, opts, model in variants:
        solver, why = make_solver(opts, dev, params)
        if solver is None:
            emit("skipped", variant=name, options=opts, reason=why)
        else:
            usable.append((name, opts, model, solver))
    made = []
    for i, (name, opts, model, solver) in enumerate(usable):
        # the default gets what the others' reserve leaves; each later one an equal share
        left = deadline - time.monotonic()
        share = left - spec["variant_reserve_s"] * (len(usable) - 1) if i == 0 else left / (len(usable) - i)
        variant_deadline = time.monotonic() + max(0.0, share)
        if time.monotonic() > deadline:
            emit("stopped", variant=name, at="start", reason="the part's time was up")
            break
        try:
            model_bytes = model(opts) if callable(model) else model
            emit("variant", variant=name, options=opts, kernel=solver.kernel, compiled=solver.compiled,
                 model_bytes_per_pixel_iteration=model_bytes)
            accuracy(name, solver, prev, nxt, refs, nref, spec, emit)
            throughput(name, solver, prev, nxt, model_bytes, spec, variant_deadline, emit, sync,
                       event if cuda else None, dev)
            # Grove3 is one of the exactness goals: the default's is measured while the part has time
            if time.monotonic() < (deadline - 5 if i == 0 else variant_deadline):
                grove(name, solver, spec, emit)
            made.append((name, solver))
        except Exception as exc:  # noqa: BLE001 - one variant failing must not end the others
            emit("failed", variant=name, error=f"{type(exc).__name__}: {str(exc)[:400]}",
                 traceback=traceback.format_exc()[-2000:])
        if cuda:
            torch.cuda.empty_cache()
    for name, solver in made:
        if time.monotonic() > deadline - spec["variant_reserve_s"] / 2:
            break
        try:
            profile(name, solver, prev, nxt, spec["profile_batch"], dev, emit)
        except Exception as exc:  # noqa: BLE001
            emit("failed", variant=name, step="profile", error=f"{type(exc).__name__}: {str(exc)[:400]}")
    emit("done", seconds=time.perf_counter() - t0)
