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
default, the hand-written Triton kernels of ``flow_triton`` (``kernel``): same loops and stopping
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
import warnings
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import flow_tiles, flow_triton
from .plan import usable_cores
from tsn_core.quantize import quantize_tensor
from .tvl1_params import TVL1Params

_FLT_EPSILON = float(np.finfo(np.float32).eps)
_CUBIC_A = -0.75  # OpenCV's interpolateCubic

ArrayLike = Union[np.ndarray, torch.Tensor]


def _pyramid_sizes(h: int, w: int, scales: int, step: float) -> list[tuple[int, int]]:
    """OpenCV's level sizes: ``cvRound(size * step)`` per level, stopping below 16 pixels."""
    sizes = [(h, w)]
    for _ in range(1, scales):
        ph, pw = sizes[-1]
        nh, nw = int(np.rint(ph * step)), int(np.rint(pw * step))
        if nh < 16 or nw < 16:
            break
        sizes.append((nh, nw))
    return sizes


def _linear_weights(n_out: int, n_in: int, scale: float, device) -> torch.Tensor:
    """(n_out, n_in) matrix of cv::resize INTER_LINEAR along one axis: source coordinate
    ``(d + 0.5) * scale - 0.5`` clamped to [0, n_in - 1]."""
    d = np.arange(n_out)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    s0 = np.floor(f).astype(np.int64)
    a = (f - s0).astype(np.float32)
    low = s0 < 0
    a[low], s0[low] = 0.0, 0
    high = s0 >= n_in - 1
    a[high], s0[high] = 0.0, n_in - 1
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (d, s0), 1.0 - a)
    np.add.at(m, (d, np.minimum(s0 + 1, n_in - 1)), a)
    return torch.from_numpy(m).to(device)


def _resize(x: torch.Tensor, size: tuple[int, int], scale_y: float, scale_x: float) -> torch.Tensor:
    """cv::resize INTER_LINEAR of (..., H, W) float to ``size`` with source/destination scales."""
    h, w = x.shape[-2:]
    my = _linear_weights(size[0], h, scale_y, x.device)
    mx = _linear_weights(size[1], w, scale_x, x.device)
    return my @ x @ mx.T


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys cubic weights (a = -0.75) of the 4 taps at offsets -1, 0, 1, 2 for fraction ``t``:
    (..., ) -> (4, ...)."""
    a = _CUBIC_A
    x0 = t + 1.0
    c0 = ((a * x0 - 5.0 * a) * x0 + 8.0 * a) * x0 - 4.0 * a
    c1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    x2 = 1.0 - t
    c2 = ((a + 2.0) * x2 - (a + 3.0)) * x2 * x2 + 1.0
    c3 = 1.0 - c0 - c1 - c2
    return torch.stack([c0, c1, c2, c3])


def _remap_cubic_gather(img: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """``cv::remap(img, x + u1, y + u2, INTER_CUBIC, BORDER_CONSTANT 0)`` for img (B, C, H, W)
    and flow (B, H, W), written out (the reference for ``_remap_cubic``): 16 taps, each one gather from the zero-padded image (fused into one
    loop with indirect loads under torch.compile), summed along x per tap row, then along y."""
    b, c, h, w = img.shape
    dev = img.device
    gx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    gy = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    # beyond these bounds every tap is outside anyway; clamping keeps the int64 cast safe
    x = (gx + u1).clamp(-4.0, w + 3.0)
    y = (gy + u2).clamp(-4.0, h + 3.0)
    fx_floor, fy_floor = torch.floor(x), torch.floor(y)
    wx = _cubic_weights(x - fx_floor).unsqueeze(2)  # (4, B, 1, H, W)
    wy = _cubic_weights(y - fy_floor).unsqueeze(2)
    ix, iy = fx_floor.to(torch.int64), fy_floor.to(torch.int64)
    # one ring of zeros; taps further out are clamped onto it
    wp = w + 2
    padded = F.pad(img, (1, 1, 1, 1)).reshape(b, c, -1)
    out = None
    for dy in range(4):
        row_off = ((iy + (dy - 1)).clamp(-1, h) + 1) * wp
        row = None
        for dx in range(4):
            idx = row_off + (ix + (dx - 1)).clamp(-1, w) + 1  # (B, H, W)
            tap = padded.gather(2, idx.view(b, 1, -1).expand(b, c, -1)).view(b, c, h, w)
            row = tap * wx[dx] if row is None else row + tap * wx[dx]
        out = row * wy[dy] if out is None else out + row * wy[dy]
    return out


def _remap_cubic(img: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """``_remap_cubic_gather`` by ``F.grid_sample`` (bicubic is Keys' a = -0.75 there too, zero
    padding gives remap's BORDER_CONSTANT 0, align_corners=True maps pixel centres): 8x faster
    on the CPU. The source coordinates go through grid_sample's [-1, 1] normalisation, whose
    float32 rounding (~1e-5 px at x ~ 340) moves values by up to ~0.01 grey levels."""
    b, c, h, w = img.shape
    dev = img.device
    gx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    gy = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    x = (gx + u1) * (2.0 / (w - 1)) - 1.0
    y = (gy + u2) * (2.0 / (h - 1)) - 1.0
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(img, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


# Devillard's 25-input median selection network ("opt_med25", 99 compare-exchanges): after it,
# element 12 holds the median.
_MED25 = (
    (0, 1), (3, 4), (2, 4), (2, 3), (6, 7), (5, 7), (5, 6), (9, 10), (8, 10), (8, 9), (12, 13),
    (11, 13), (11, 12), (15, 16), (14, 16), (14, 15), (18, 19), (17, 19), (17, 18), (21, 22),
    (20, 22), (20, 21), (23, 24), (2, 5), (3, 6), (0, 6), (0, 3), (4, 7), (1, 7), (1, 4), (11, 14),
    (8, 14), (8, 11), (12, 15), (9, 15), (9, 12), (13, 16), (10, 16), (10, 13), (20, 23), (17, 23),
    (17, 20), (21, 24), (18, 24), (18, 21), (19, 22), (8, 17), (9, 18), (0, 18), (0, 9), (10, 19),
    (1, 19), (1, 10), (11, 20), (2, 20), (2, 11), (12, 21), (3, 21), (3, 12), (13, 22), (4, 22),
    (4, 13), (14, 23), (5, 23), (5, 14), (15, 24), (6, 24), (6, 15), (7, 16), (7, 19), (13, 21),
    (15, 23), (7, 13), (7, 15), (1, 9), (3, 11), (5, 17), (11, 17), (9, 17), (4, 10), (6, 12),
    (7, 14), (4, 6), (4, 7), (12, 14), (10, 14), (6, 7), (10, 12), (6, 10), (6, 17), (12, 17),
    (7, 17), (7, 10), (12, 18), (7, 12), (10, 18), (12, 20), (10, 20), (10, 12),
)


def _live_network(network, result: int):
    """(a, b, min needed, max needed) per compare-exchange: an output nothing reads later is skipped."""
    need, out = {result}, []
    for a, b in reversed(network):
        na, nb = a in need, b in need
        out.append((a, b, na, nb))
        if na or nb:
            need |= {a, b}
    return tuple(reversed(out))


_MED25_LIVE = _live_network(_MED25, 12)


def _median(u: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median of (N, H, W) with replicated borders (cv::medianBlur)."""
    n, h, w = u.shape
    r = k // 2
    padded = F.pad(u.unsqueeze(1), (r, r, r, r), mode="replicate").squeeze(1)
    if k == 5:  # elementwise selection network on the 25 shifted views: no sort, no big copy
        p = [padded[:, dy:dy + h, dx:dx + w] for dy in range(5) for dx in range(5)]
        for a, b in _MED25:
            p[a], p[b] = torch.minimum(p[a], p[b]), torch.maximum(p[a], p[b])
        return p[12]
    patches = F.unfold(padded.unsqueeze(1), k)  # (N, k*k, H*W)
    return patches.median(dim=1).values.view(n, h, w)


def _median_eager(u: torch.Tensor, k: int) -> torch.Tensor:
    """``_median`` for eager runs: the same selection network on contiguous copies of the 25
    shifted views, updated in place, skipping the comparisons whose result is never read.
    Exactly the same values (min and max are exact)."""
    if k != 5:
        return _median(u, k)
    n, h, w = u.shape
    padded = F.pad(u.unsqueeze(1), (2, 2, 2, 2), mode="replicate").squeeze(1)
    p = [padded[:, dy:dy + h, dx:dx + w].contiguous() for dy in range(5) for dx in range(5)]
    tmp = torch.empty_like(u)
    for a, b, need_min, need_max in _MED25_LIVE:
        if need_min:
            torch.minimum(p[a], p[b], out=tmp)
        if need_max:
            torch.maximum(p[a], p[b], out=p[b])
        if need_min:
            p[a], tmp = tmp, p[a]
    return p[12]


def _centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1)),
            F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1)))


def _divergence(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence with v(-1) = 0 (OpenCV's ``divergence``)."""
    return v1 - F.pad(v1[:, :, :-1], (1, 0)) + v2 - F.pad(v2[:, :-1, :], (0, 0, 1, 0))


def _warp_constants(i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
                    l_t: float) -> tuple[torch.Tensor, ...]:
    """Per warping: I1 and its gradient warped by the current flow, and the constant parts of the
    thresholding step: (i1wx, i1wy, rho_c, lambda*theta*|grad|^2, 1/|grad|^2 or 0 where the
    gradient is below FLT_EPSILON)."""
    return _constants(_remap_cubic(i1_stack, u1, u2), i0, u1, u2, l_t)


def _warp_constants_gather(i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor,
                           u2: torch.Tensor, l_t: float) -> tuple[torch.Tensor, ...]:
    """``_warp_constants`` with the written-out remap (``remap="gather"``): what the tile
    kernels' warp computes, operation for operation."""
    return _constants(_remap_cubic_gather(i1_stack, u1, u2), i0, u1, u2, l_t)


REMAPS = {"grid_sample": _warp_constants, "gather": _warp_constants_gather}


def _constants(warped: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
               l_t: float) -> tuple[torch.Tensor, ...]:
    i1w, i1wx, i1wy = warped.unbind(1)
    grad = i1wx * i1wx + i1wy * i1wy
    rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
    inv_grad = torch.where(grad > _FLT_EPSILON, 1.0 / grad, 0.0)
    return i1wx, i1wy, rho_c, l_t * grad, inv_grad


def _step(u1, u2, p11, p12, p21, p22, i1wx, i1wy, rho_c, lt_grad, inv_grad, active, count,
          l_t: float, taut: float, theta: float, scaled_eps: float):
    """One inner iteration of every pair (TH -> divergence -> u -> forward gradient -> p), applied
    only to the pairs still ``active``; then OpenCV's stopping test on the u update.

    Returns the new (u1, u2, p11, p12, p21, p22), the new mask (a pair whose sum of squared u
    updates is <= ``scaled_eps`` stops, after its p update) and the iteration counts."""
    rho = rho_c + (i1wx * u1 + i1wy * u2)
    fi = torch.where(rho < -lt_grad, l_t,
                     torch.where(rho > lt_grad, -l_t,
                                 torch.where(inv_grad > 0, -rho * inv_grad, 0.0)))
    v1 = u1 + fi * i1wx
    v2 = u2 + fi * i1wy
    n1 = v1 + theta * _divergence(p11, p12)
    n2 = v2 + theta * _divergence(p21, p22)
    d1, d2 = n1 - u1, n2 - u2
    err = (d1 * d1 + d2 * d2).sum(dim=(1, 2), dtype=torch.float64)
    u1x, u1y = _forward_gradient(n1)
    u2x, u2y = _forward_gradient(n2)
    ng1 = 1.0 + taut * torch.hypot(u1x, u1y)
    ng2 = 1.0 + taut * torch.hypot(u2x, u2y)
    new = (n1, n2, (p11 + taut * u1x) / ng1, (p12 + taut * u1y) / ng1,
           (p21 + taut * u2x) / ng2, (p22 + taut * u2y) / ng2)
    a = active.view(-1, 1, 1)
    old = (u1, u2, p11, p12, p21, p22)
    out = tuple(torch.where(a, n, o) for n, o in zip(new, old))
    return out + (active & ~(err <= scaled_eps), count + active.to(count.dtype))


def _masked_median(u1: torch.Tensor, u2: torch.Tensor, active: torch.Tensor, k: int):
    """The outer iteration's median filter of u1 and u2, for the active pairs only."""
    a = active.view(-1, 1, 1)
    return torch.where(a, _median(u1, k), u1), torch.where(a, _median(u2, k), u2)


def _masked_median_eager(u1: torch.Tensor, u2: torch.Tensor, active: torch.Tensor, k: int):
    a = active.view(-1, 1, 1)
    return torch.where(a, _median_eager(u1, k), u1), torch.where(a, _median_eager(u2, k), u2)


_COMPILED: dict = {}  # (function, device type, mode, dynamic) -> the torch.compile'd callable
_WARNED: set = set()


def _compiled(fn, device_type: str, mode: Optional[str], dynamic: Optional[bool]):
    key = (fn.__name__, device_type, mode, dynamic)
    if key not in _COMPILED:
        import torch._dynamo.config as dcfg

        # every pyramid level (and batch size) is a new shape: 5 levels x a few batch sizes must
        # not hit dynamo's default limit of 8 recompiles and silently run eagerly
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dcfg, name):
                setattr(dcfg, name, max(getattr(dcfg, name), 256))
        for name in ("accumulated_cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(dcfg, name):
                setattr(dcfg, name, max(getattr(dcfg, name), 2048))
        _COMPILED[key] = torch.compile(fn, mode=mode, dynamic=dynamic, fullgraph=True)
    return _COMPILED[key]


class _Fn:
    """A solver function compiled with torch.compile where that works, else run eagerly: the
    first failure (no C++ compiler, no Triton, an unsupported op...) is caught once, warned about
    once per process, and from then on the eager function runs (both are pure functions of their
    arguments, so nothing is lost). ``eager`` may be a faster eager formulation of ``fn``."""

    def __init__(self, fn, device: torch.device, compile: bool, mode: Optional[str],
                 dynamic: Optional[bool], eager=None):
        self.eager = eager or fn
        self.key = (fn.__name__, device.type, mode, dynamic)
        self.compiled = _compiled(fn, device.type, mode, dynamic) if compile else None
        if compile and _COMPILED.get(self.key, 0) is None:  # failed before in this process
            self.compiled = None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001  (any compiler failure: fall back)
                self.compiled = None
                _COMPILED[self.key] = None
                if self.key not in _WARNED:
                    _WARNED.add(self.key)
                    warnings.warn(f"torch.compile of the TV-L1 function {self.key[0]} failed on "
                                  f"{self.key[1]} ({type(exc).__name__}: {str(exc)[:300]}); "
                                  f"running it eagerly", RuntimeWarning, stacklevel=2)
        return self.eager(*args)


# What is compiled by default, per device type (measured, see docs/performance.md): on the CPU
# inductor makes the iteration ~3.5x faster than eager, but its code for the 25-input median
# network was 3x slower than the eager ops (and for the written-out gather remap 3.5x slower; the
# remap is one grid_sample call now, 4 % of the time), so those stay eager there.
COMPILE_PARTS = {"cpu": ("step",), "cuda": ("step", "median", "warp")}


def compile_default(device: torch.device) -> bool:
    """Compile by default where torch.compile can work: CUDA, or a CPU with a C++ compiler.
    The environment variable TSN_TORCH_COMPILE=0 (or 1) overrides this."""
    env = os.environ.get("TSN_TORCH_COMPILE", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        import shutil

        return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))
    return False


KERNELS = ("torch", "triton", "tiles")


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
    return "triton" if device.type == "cuda" and flow_triton.available(device) else "torch"


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

    ``kernel``: "torch" (the iteration above, compiled or eager), "triton" (``flow_triton``: a
    u and a p kernel per iteration; what "auto" picks on CUDA) or "tiles" (``flow_tiles``:
    ``tile_iterations`` iterations per launch on a tile, median and warp in Triton, CUDA graphs
    of ``outer_per_replay`` outer iterations; never yet run on a GPU). ``remap``: the bicubic
    warp of the torch iteration, "grid_sample" (default, fast) or "gather" (written out, as
    cv::remap; what "tiles" computes)."""

    name = "torch"
    batches = True
    quantizes = True  # batch() takes a bound
    MAX_LEVELS = 16  # Triton level buffers kept: 5 levels x a few batch sizes

    def __init__(self, params: TVL1Params = TVL1Params(), device: Union[str, torch.device] = "cpu",
                 *, compile: Optional[bool] = None, compile_mode: Optional[str] = None,
                 dynamic: Optional[bool] = True, sync_every: Optional[int] = None,
                 threads: Optional[int] = None, compile_parts: Optional[tuple] = None,
                 kernel: str = "auto", graphs: bool = True, exact: bool = True,
                 remap: str = "grid_sample", tile_iterations: int = flow_tiles.ITERATIONS,
                 outer_per_replay: Optional[int] = None):
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
        self.remap = remap
        self._warp = _Fn(REMAPS[remap], self.device, "warp" in on, compile_mode, dynamic)
        self._step = _Fn(_step, self.device, "step" in on, compile_mode, dynamic)
        self._median = _Fn(_masked_median, self.device, "median" in on, compile_mode, dynamic,
                           eager=_masked_median_eager)
        if kernel != "auto" and kernel not in KERNELS:
            raise ValueError(f"kernel must be 'auto' or one of {', '.join(KERNELS)}, got {kernel!r}")
        if kernel == "auto":
            kernel = default_kernel(self.device)
        if kernel == "tiles" and params.median_filtering not in (1, 5):
            raise ValueError(f"kernel='tiles' has the 5x5 median only (median_filtering 1 or "
                             f"5), got {params.median_filtering}")
        if kernel != "torch" and not flow_triton.available(self.device):
            found = "found" if flow_triton.triton else "not installed"
            raise ValueError(f"kernel={kernel!r} needs Triton and a CUDA device (or TRITON_INTERPRET=1 "
                             f"on the CPU); here: Triton {found}, device {self.device}")
        if kernel == "tiles":
            flow_tiles.check_shape(flow_tiles.BLOCK, tile_iterations)
            self.remap = "gather"  # its warp kernel is the written-out remap
        self.kernel = kernel
        self.tile_iterations = tile_iterations
        self.outer_per_replay = outer_per_replay
        self.graphs = graphs
        self.exact = exact
        self._levels: dict = {}  # (B, H, W) -> flow_triton.TritonLevel
        self.last_iterations: Optional[np.ndarray] = None
        self.last_seconds: Optional[float] = None

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
        sizes = _pyramid_sizes(h, w, p.scales, p.scale_step)
        down = 1.0 / p.scale_step
        i0s, i1s = [i0], [i1]
        for size in sizes[1:]:
            i0s.append(_resize(i0s[-1], size, down, down))
            i1s.append(_resize(i1s[-1], size, down, down))
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
            u1 = _resize(u1, (hf, wf), sy, sx) * factor
            u2 = _resize(u2, (hf, wf), sy, sx) * factor
        iters = torch.stack(counts, dim=0).permute(1, 0, 2).cpu().numpy()  # (B, levels, warps)
        return u1, u2, iters

    def _one_scale(self, i0, i1, u1, u2):
        """procOneScale: ``warps`` warpings of the outer/inner iterations at one pyramid level, all
        tensors of fixed shape; a pair stops (is frozen by the mask) when OpenCV's would."""
        p = self.params
        b, h, w = i0.shape
        scaled_eps = float(p.epsilon * p.epsilon * h * w)
        l_t = float(np.float32(p.lambda_ * p.theta))
        taut = float(np.float32(p.tau / p.theta))
        theta = float(np.float32(p.theta))
        total = p.outer_iterations * p.inner_iterations

        i1x, i1y = _centered_gradient(i1)
        i1_stack = torch.stack([i1, i1x, i1y], dim=1)
        if self.kernel == "triton":
            level = self._level(b, h, w, (l_t, taut, theta, scaled_eps))
            return level.run(i1_stack, i0, u1, u2, self._warp, self._median)
        if self.kernel == "tiles":
            return self._level(b, h, w, (l_t, taut, theta, scaled_eps)).run(i1_stack, i0, u1, u2)
        # p zeroed once per level, as OpenCV
        state = (u1, u2) + tuple(torch.zeros_like(i0) for _ in range(4))
        counts = []
        for _ in range(p.warps):
            const = self._warp(i1_stack, i0, state[0], state[1], l_t)
            active = torch.ones(b, dtype=torch.bool, device=i0.device)
            count = torch.zeros(b, dtype=torch.int32, device=i0.device)
            for k in range(total):
                if k % p.inner_iterations == 0 and p.median_filtering > 1:
                    m1, m2 = self._median(state[0], state[1], active, p.median_filtering)
                    state = (m1, m2) + state[2:]
                out = self._step(*state, *const, active, count, l_t, taut, theta, scaled_eps)
                state, active, count = out[:6], out[6], out[7]
                if (k + 1) % self.sync_every == 0 and not bool(active.any()):
                    break
            counts.append(count)
        return state[0], state[1], torch.stack(counts, dim=1)  # counts (B, warps)

    def _level(self, b: int, h: int, w: int, consts: tuple):
        """The Triton buffers (and CUDA graph) of one level shape (a ``flow_triton.TritonLevel``
        or a ``flow_tiles.TilesLevel``), kept for the next batches of the same shape; the least
        recently used go beyond ``MAX_LEVELS``."""
        key = (b, h, w)
        level = self._levels.pop(key, None)
        if level is None and self.kernel == "tiles":
            level = flow_tiles.TilesLevel(b, h, w, self.device, self.params, consts,
                                          graphs=self.graphs, exact=self.exact,
                                          k=self.tile_iterations, block=flow_tiles.BLOCK,
                                          outer_per_graph=self.outer_per_replay)
        elif level is None:
            level = flow_triton.TritonLevel(b, h, w, self.device, self.params, consts,
                                            graphs=self.graphs, exact=self.exact)
        self._levels[key] = level
        while len(self._levels) > self.MAX_LEVELS:
            self._levels.pop(next(iter(self._levels)))
        return level
