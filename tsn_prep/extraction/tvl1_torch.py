"""Batched TV-L1 optical flow in PyTorch, reproducing OpenCV's ``DualTVL1OpticalFlow``.

A re-implementation of the CPU path of opencv_contrib ``modules/optflow/src/tvl1flow.cpp``
(Zach, Pock & Bischof's duality scheme, after Sanchez, Meinhardt-Llopis & Facciolo), vectorised
over a batch of B frame pairs and runnable on any torch device. The details that decide how close
the result is to OpenCV's follow OpenCV:

* 8-bit input is used as float 0..255 (no rescaling);
* the pyramid is ``cv::resize(INTER_LINEAR)`` by ``scale_step`` per level (OpenCV's rounded level
  sizes and its source-coordinate mapping with the nominal factor), stopping before a level narrower
  or shorter than 16 pixels; the flow goes up a level by ``INTER_LINEAR`` resize to the finer size
  and is multiplied by ``1 / scale_step``;
* the gradient of I1 is a centred difference (one-sided halves at the borders, i.e. replicate
  padding) computed once per level, and I1 and its gradient are warped at every warping with
  ``cv::remap(INTER_CUBIC)`` semantics as measured on OpenCV 5.0 float maps: unquantised source
  coordinates (OpenCV 4's 1/32-pixel rounding is gone), Keys cubic with a = -0.75, taps outside
  the image are 0 (remap's default BORDER_CONSTANT); the written-out version
  (``_remap_cubic_gather``) matches cv2.remap to ~1e-4 grey levels, the one used
  (``F.grid_sample``, 8x faster on the CPU) to ~0.01 (its coordinate normalisation rounds);
* the dual variables p are zeroed once per level (not per warping);
* per warping: up to ``outer_iterations`` outer iterations, each starting with a median filter of
  size ``median_filtering`` (replicated border, like ``cv::medianBlur``) on u1 and u2, then up to
  ``inner_iterations`` of thresholding -> divergence -> u update -> forward gradient -> p update.
  Both loops stop once the sum over the image of the squared u update is <= epsilon^2 * H * W,
  checked after each u update (the p update of that iteration still happens), exactly as OpenCV.

In a batch every pair has its own stopping test, kept on the device: inside a pyramid level every
tensor keeps its shape, and a boolean mask per pair freezes a pair (its state is no longer updated,
its median filter skipped) from the iteration at which OpenCV would stop it until the next warping.
So a batch gives the one-at-a-time result (bit for bit on the CPU, tested; on CUDA the compiled
batch-1 and batched kernels round differently, 0.007 px mean difference measured on an H100), and
the host reads the mask only every
``sync_every`` iterations, to leave the loop early once every pair has stopped (the result does not
depend on ``sync_every``: a frozen pair is not touched). The iteration (on CUDA also the median
filter and the warping step: ``COMPILE_PARTS``) is compiled with ``torch.compile`` where that works
(CPU inductor, CUDA), with a fallback to the same functions run eagerly; compiled results equal
eager ones to float rounding (bit for bit on the CPU, measured). On CUDA the inner loop is, by
default, the hand-written Triton kernels of ``tvl1_triton`` (``kernel``): same loops and stopping
rule, stopped pairs skipped rather than frozen, CUDA graphs; there batches of 64 and 256 gave
bit-identical flows, and batch 1 (whose compiled median and warping are specialised) 0.005 px from
them, on an H100.
Differences from OpenCV: its error sum is a sequential float32 accumulation (here float64), and
floating-point rounding in resize/remap differs slightly. Measured: 0.001-0.015 px mean end-point
difference from OpenCV 5.0 on 340x256 pairs of real clips, Grove3 end-point error 0.7544 px
(OpenCV 0.7574). ``gamma`` (illumination term) is not supported (OpenCV's default, 0, is what
this project uses).
"""
from __future__ import annotations

import os
import time
from typing import Optional, Union

import numpy as np
import torch

from tsn_core.machine import usable_cores

from tsn_core.quantize import quantize_tensor
from . import tvl1_kernel_torch, tvl1_tiles, tvl1_triton  # noqa: F401 - each registers its kernel
from .tvl1_compile import COMPILE_PARTS, CompiledFn, compile_default
from .tvl1_kernels import Iteration, LevelConstants, create_kernel, kernel_names
from .tvl1_ops import (REMAPS, centered_gradient, masked_median, masked_median_eager, pyramid_sizes, resize,
                       step)
from .tvl1_params import TVL1Params

ArrayLike = Union[np.ndarray, torch.Tensor]

KERNELS = kernel_names()  # ("torch", "triton", "tiles")


def default_kernel(device: torch.device) -> str:
    """``kernel="auto"``: "triton" on CUDA where Triton is installed (the kernels measured on a
    GPU), else "torch". The environment variable TSN_TVL1_KERNEL (one of ``KERNELS``) overrides
    it, so a whole ``tsn-prep extract-flow`` run can be measured with another kernel; the
    flows agree to float rounding whichever runs."""
    env = os.environ.get("TSN_TVL1_KERNEL", "").strip().lower()
    if env:
        if env not in KERNELS:
            raise ValueError(f"TSN_TVL1_KERNEL must be one of {', '.join(KERNELS)}, got {env!r}")
        return env
    return "triton" if device.type == "cuda" and tvl1_triton.available(device) else "torch"


class TorchTVL1:
    """TV-L1 optical flow on a torch device, batched; OpenCV ``DualTVL1OpticalFlow`` semantics.

    ``compile``: None (default) compiles with torch.compile where a compiler is available (see
    ``compile_default``), True/False force it on/off (a failing compile falls back to eager with
    one warning). ``compile_parts``: which of "step", "median", "warp" are compiled (default
    ``COMPILE_PARTS`` for the device type). ``compile_mode``: torch.compile's mode (None: its
    default; on CUDA e.g. "max-autotune-no-cudagraphs"). ``dynamic``: torch.compile's
    ``dynamic`` (True, the default: one compile serves every pyramid level and every batch size
    above 1, batch 1 gets its own; False: one specialised compile per level size and batch size).
    Compiles are paid once per process and shape set, and cached on disk by inductor.
    ``sync_every``: the host checks whether every pair has stopped every this many iterations
    (None: 1 on the CPU, where reading the mask costs nothing, 16 on a GPU, not tuned); the
    result does not depend on it. ``threads``: CPU threads for torch while solving (capped at the usable
    cores; None: torch's current setting, capped likewise).

    After each call ``last_iterations`` holds each pair's inner-iteration count per pyramid level
    and warping, an int array (B, levels, warps), level 0 the finest.

    ``kernel``: the registered kernel (``tvl1_kernels``) that runs each pyramid level: "torch"
    (the iteration above, compiled or eager), "triton" (``tvl1_triton``: a u and a p kernel per
    iteration; what "auto" picks on CUDA) or "tiles" (``tvl1_tiles``: several iterations per
    launch on a tile; never yet run on a GPU); ``kernel_options`` are that kernel's own (e.g.
    ``graphs``, ``exact``, ``tile_iterations``, ``outer_per_replay``). ``remap``: the bicubic
    warp of the torch iteration, "grid_sample" (default, fast) or "gather" (written out, as
    cv::remap; what "tiles" computes)."""

    name = "torch"
    batches = True
    quantizes = True  # batch() takes a bound

    def __init__(self, params: TVL1Params = TVL1Params(), device: Union[str, torch.device] = "cpu",
                 *, compile: Optional[bool] = None, compile_mode: Optional[str] = None,
                 dynamic: Optional[bool] = True, sync_every: Optional[int] = None,
                 threads: Optional[int] = None, compile_parts: Optional[tuple] = None,
                 kernel: str = "auto", remap: str = "grid_sample", **kernel_options):
        if params.gamma != 0:
            raise ValueError("TorchTVL1 does not implement the illumination term (gamma must be 0)")
        self.params = params
        self.device = torch.device(device)
        if sync_every is not None and sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}")
        self.sync_every = sync_every or (1 if self.device.type == "cpu" else 16)
        self.threads = threads
        self.compile = compile_default(self.device) if compile is None else bool(compile)
        self.compile_mode = compile_mode
        parts = COMPILE_PARTS.get(self.device.type, ()) if compile_parts is None else compile_parts
        unknown = set(parts) - {"step", "median", "warp"}
        if unknown:
            raise ValueError(f"unknown compile parts: {sorted(unknown)}")
        self.compile_parts = tuple(parts) if self.compile else ()
        on = self.compile_parts
        if remap not in REMAPS:
            raise ValueError(f"remap must be one of {sorted(REMAPS)}, got {remap!r}")
        self._warp = CompiledFn(REMAPS[remap], self.device, "warp" in on, compile_mode, dynamic)
        self._step = CompiledFn(step, self.device, "step" in on, compile_mode, dynamic)
        self._median = CompiledFn(masked_median, self.device, "median" in on, compile_mode, dynamic,
                                  eager=masked_median_eager)
        if kernel != "auto" and kernel not in KERNELS:
            raise ValueError(f"kernel must be 'auto' or one of {', '.join(KERNELS)}, got {kernel!r}")
        self.kernel = default_kernel(self.device) if kernel == "auto" else kernel
        self.kernel_impl = create_kernel(self.kernel, params, self.device,
                                         Iteration(self._warp, self._median, self._step, self.sync_every),
                                         **kernel_options)
        self.remap = self.kernel_impl.remap or remap
        self.last_iterations: Optional[np.ndarray] = None
        self.last_seconds: Optional[float] = None

    @property
    def levels(self) -> dict:
        """A Triton kernel's level buffers by shape (B, H, W); empty for the torch kernel."""
        return self.kernel_impl.levels

    @property
    def compiled(self) -> bool:
        """Whether any compiled function is (still) in use: False when eager or after a fallback."""
        return any(f.compiled is not None for f in (self._warp, self._step, self._median))

    def close(self, wait: bool = True) -> None:
        """Nothing to end: the solver holds only tensors (``BatchSolver``)."""

    # -- public API ------------------------------------------------------------------------
    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """One pair: (H, W) uint8 each -> (H, W, 2) float32 flow (dx, dy)."""
        return self.batch(prev[None], nxt[None])[0]

    def batch(self, prev: ArrayLike, nxt: ArrayLike, bound: Optional[float] = None) -> np.ndarray:
        """B pairs: (B, H, W) uint8 (or float 0..255) each -> (B, H, W, 2) float32; with ``bound``,
        quantised on the device (``quantize_tensor``, the bytes ``quantize`` gives): uint8."""
        i0, i1 = self._to_tensor(prev), self._to_tensor(nxt)
        if i0.shape != i1.shape or i0.dim() != 3:
            raise ValueError(f"expected two (B, H, W) stacks of the same shape, got "
                             f"{tuple(i0.shape)} and {tuple(i1.shape)}")
        u1, u2 = self.flow(i0, i1)
        flow = torch.stack([u1, u2], dim=-1)
        if bound is not None:
            flow = quantize_tensor(flow, bound)
        if flow.device.type != "cuda":
            return flow.cpu().numpy()
        # into page-locked memory (torch caches such blocks): a pageable copy ran at ~3 GB/s on an
        # H100 machine, 19 % of a 128-pair call; the array is a view of the block, kept alive by it
        host = torch.empty(flow.shape, dtype=flow.dtype, pin_memory=True)
        host.copy_(flow)
        return host.numpy()

    def flow(self, i0: torch.Tensor, i1: torch.Tensor, return_iterations: bool = False):
        """Float (B, H, W) images on the device (0..255) -> (u1, u2), each (B, H, W); with
        ``return_iterations`` also the iteration counts (see ``last_iterations``)."""
        start = time.perf_counter()
        saved = None
        if self.device.type == "cpu":
            want = min(self.threads or torch.get_num_threads(), usable_cores())
            if want != torch.get_num_threads():
                saved = torch.get_num_threads()
                torch.set_num_threads(want)
        try:
            with torch.no_grad():
                u1, u2, iters = self._flow(i0, i1)
        finally:
            if saved is not None:
                torch.set_num_threads(saved)
        self.last_iterations = iters
        self.last_seconds = time.perf_counter() - start
        return (u1, u2, iters) if return_iterations else (u1, u2)

    # -- internals -------------------------------------------------------------------------
    def _to_tensor(self, x: ArrayLike) -> torch.Tensor:
        # to the device first, then to float: 8-bit frames travel as 1 byte per pixel, not 4
        return torch.as_tensor(x).to(self.device).to(torch.float32)

    def _flow(self, i0, i1):
        p = self.params
        b, h, w = i0.shape
        sizes = pyramid_sizes(h, w, p.scales, p.scale_step)
        down = 1.0 / p.scale_step
        i0s, i1s = [i0], [i1]
        for size in sizes[1:]:
            i0s.append(resize(i0s[-1], size, down, down))
            i1s.append(resize(i1s[-1], size, down, down))
        u1 = torch.zeros((b, *sizes[-1]), device=i0.device, dtype=torch.float32)
        u2 = torch.zeros_like(u1)
        counts = [None] * len(sizes)
        for s in range(len(sizes) - 1, -1, -1):
            u1, u2, counts[s] = self._one_scale(i0s[s], i1s[s], u1, u2)
            if s == 0:
                break
            (hs, ws), (hf, wf) = sizes[s], sizes[s - 1]
            sy, sx = 1.0 / (hf / hs), 1.0 / (wf / ws)
            factor = torch.tensor(1.0 / p.scale_step, dtype=torch.float32)
            u1 = resize(u1, (hf, wf), sy, sx) * factor
            u2 = resize(u2, (hf, wf), sy, sx) * factor
        iters = torch.stack(counts, dim=0).permute(1, 0, 2).cpu().numpy()  # (B, levels, warps)
        return u1, u2, iters

    def _one_scale(self, i0, i1, u1, u2):
        """procOneScale: ``warps`` warpings of the outer/inner iterations at one pyramid level,
        run by the kernel; a pair stops when OpenCV's would."""
        p = self.params
        b, h, w = i0.shape
        consts = LevelConstants(l_t=float(np.float32(p.lambda_ * p.theta)),
                                taut=float(np.float32(p.tau / p.theta)),
                                theta=float(np.float32(p.theta)),
                                scaled_eps=float(p.epsilon * p.epsilon * h * w))
        i1x, i1y = centered_gradient(i1)
        i1_stack = torch.stack([i1, i1x, i1y], dim=1)
        return self.kernel_impl.run(i1_stack, i0, u1, u2, consts)
