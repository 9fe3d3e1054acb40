"""The "triton" kernel (``TritonKernel``): hand-written Triton kernels for TorchTVL1's inner loop
on CUDA, and the driver that runs one pyramid level with them (``TritonLevel``), one outer
iteration per CUDA graph replay.

Why: the torch iteration (compiled or eager) runs every pair of a batch until the slowest one has
stopped -- a stopped pair is frozen with ``torch.where``, its pixels still read and written --,
each iteration is a Python call with dynamo's guards, and the coarse pyramid levels (small
tensors, as many iterations as the finest) are bound by those calls. Here:

* an iteration is three kernels: the u step (thresholding, divergence, u update and each tile's
  share of the pair's squared-update sum), the p step (forward gradient, p update) and the
  per-pair stopping test. u is updated in place (the u step reads u only at its own pixel), then p
  in place (the p step reads p only at its own pixel), so no buffer is swapped;
* the u and p steps run on a fixed grid (``PROGRAMS_PER_SM`` programs per multiprocessor) that
  walks over (pair, tile) items of ``TILE`` pixels; an item of a stopped pair costs one load of
  the pair's flag. (A grid of one program per tile and pair paid for every stopped pair's
  programs: at 256 pairs, where the slowest pair of a warping runs far longer than the mean, that
  was 196 pairs/s against 285 now, on an H100);
* ``lambda*theta*|grad|^2`` and ``1/|grad|^2`` are recomputed from the warped gradient instead of
  read (two fewer reads per pixel and iteration);
* one outer iteration (the median filter, then ``inner_iterations`` iterations) is captured once
  per level shape as a CUDA graph and replayed (the median is the torch function, compiled on
  CUDA; a Triton kernel sorting the 25 neighbours took ~95 s per launch in Triton's
  interpreter, too slow for the tests). The host checks for "every pair stopped" once per outer
  iteration, without stalling the GPU (see ``_outer_loop``); a stopped pair is never touched
  again, so the result does not depend on where the host looks.

With ``exact`` (the default) the arithmetic is the torch iteration's, operation for operation
(no fused multiply-adds, IEEE-rounded division and square root; only the square root of a sum of
squares stands for torch.hypot), so results equal the torch path's to float rounding, and the
squared-update sums are float64 sums over fixed tiles: deterministic, and on an H100 batches of
64 and 256 gave bit-identical flows. Without a GPU the same kernels run in Triton's interpreter
(``TRITON_INTERPRET=1``), which is how the tests check them on a CPU.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch

from .tvl1_kernels import Iteration, LevelCache, LevelConstants, register_kernel
from .tvl1_params import TVL1Params

try:  # pragma: no cover - depends on the install
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001  (no Triton, or a broken one: the torch iteration is used)
    triton = None

TILE = (8, 64)        # rows x columns of pixels per work item of the iteration kernels
PROGRAMS_PER_SM = 8   # the iteration kernels' fixed grid, per multiprocessor
INTERPRETER_PROGRAMS = 4


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def available(device: torch.device) -> bool:
    """Whether these kernels can run on ``device``: CUDA with Triton, or the CPU under Triton's
    interpreter."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


if triton is not None:  # pragma: no cover - runs on a GPU, or under TRITON_INTERPRET=1
    @triton.jit
    def exact_div(a, b, EXACT: tl.constexpr):
        if EXACT:
            return tl.div_rn(a, b)
        return a / b

    @triton.jit
    def exact_sqrt(x, EXACT: tl.constexpr):
        if EXACT:
            return tl.sqrt_rn(x)
        return tl.sqrt(x)

    @triton.jit
    def tile_indices(it, H, W, NCB, TR: tl.constexpr, TW: tl.constexpr):
        """Row and column indices of tile ``it`` of a pair (TR x TW pixels), and its mask."""
        rb = it // NCB
        cb = it - rb * NCB
        y = rb * TR + tl.arange(0, TR)[:, None]
        x = cb * TW + tl.arange(0, TW)[None, :]
        return y, x, (y < H) & (x < W)

    @triton.jit
    def _item(k, G, B, NI, active):
        """The k-th (pair, tile) item of this program, and whether it is to be computed (it
        exists and its pair has not stopped)."""
        w = tl.program_id(0) + k * G
        b = w // NI
        return b, w - b * NI, tl.load(active + b, mask=w < B * NI, other=0) != 0

    @triton.jit
    def _divergence(pa, pb, o, W, m, left, up):
        """Backward-difference divergence of (pa, pb) with p(-1) = 0, in the torch order."""
        return (tl.load(pa + o, mask=m, other=0.0) - tl.load(pa + o - 1, mask=left, other=0.0)
                + tl.load(pb + o, mask=m, other=0.0) - tl.load(pb + o - W, mask=up, other=0.0))

    @triton.jit
    def _u_kernel(u1, u2, p11, p12, p21, p22, i1wx, i1wy, rhoc, active, partial,
                  B, H, W, NI, NCB, G, l_t, theta, flt_eps, EXACT: tl.constexpr,
                  TR: tl.constexpr, TW: tl.constexpr):
        # a fixed grid walks over (pair, tile) items; a stopped pair's items cost one load
        for k in range(0, tl.cdiv(B * NI, G)):
            b, it, live = _item(k, G, B, NI, active)
            if live:
                y, x, m = tile_indices(it, H, W, NCB, TR, TW)
                o = b.to(tl.int64) * H * W + y * W + x
                a1 = tl.load(u1 + o, mask=m, other=0.0)
                a2 = tl.load(u2 + o, mask=m, other=0.0)
                gx = tl.load(i1wx + o, mask=m, other=0.0)
                gy = tl.load(i1wy + o, mask=m, other=0.0)
                rc = tl.load(rhoc + o, mask=m, other=0.0)
                grad = gx * gx + gy * gy
                lg = l_t * grad
                one = tl.full(grad.shape, 1.0, tl.float32)
                ig = tl.where(grad > flt_eps, exact_div(one, grad, EXACT), 0.0)
                rho = rc + (gx * a1 + gy * a2)
                fi = tl.where(rho < -lg, l_t,
                              tl.where(rho > lg, -l_t, tl.where(ig > 0, -rho * ig, 0.0)))
                v1 = a1 + fi * gx
                v2 = a2 + fi * gy
                left = m & (x > 0)
                up = m & (y > 0)
                n1 = v1 + theta * _divergence(p11, p12, o, W, m, left, up)
                n2 = v2 + theta * _divergence(p21, p22, o, W, m, left, up)
                e1 = n1 - a1
                e2 = n2 - a2
                e = tl.where(m, e1 * e1 + e2 * e2, 0.0).to(tl.float64)
                tl.store(partial + b * NI + it, tl.sum(tl.sum(e, axis=1), axis=0))
                tl.store(u1 + o, n1, mask=m)
                tl.store(u2 + o, n2, mask=m)

    @triton.jit
    def _p_kernel(u1, u2, p11, p12, p21, p22, active, B, H, W, NI, NCB, G, taut,
                  EXACT: tl.constexpr, TR: tl.constexpr, TW: tl.constexpr):
        for k in range(0, tl.cdiv(B * NI, G)):
            b, it, live = _item(k, G, B, NI, active)
            if live:
                y, x, m = tile_indices(it, H, W, NCB, TR, TW)
                o = b.to(tl.int64) * H * W + y * W + x
                right = m & (x < W - 1)
                down = m & (y < H - 1)
                a1 = tl.load(u1 + o, mask=m, other=0.0)
                a2 = tl.load(u2 + o, mask=m, other=0.0)
                u1x = tl.where(right, tl.load(u1 + o + 1, mask=right, other=0.0) - a1, 0.0)
                u1y = tl.where(down, tl.load(u1 + o + W, mask=down, other=0.0) - a1, 0.0)
                u2x = tl.where(right, tl.load(u2 + o + 1, mask=right, other=0.0) - a2, 0.0)
                u2y = tl.where(down, tl.load(u2 + o + W, mask=down, other=0.0) - a2, 0.0)
                ng1 = 1.0 + taut * exact_sqrt(u1x * u1x + u1y * u1y, EXACT)
                ng2 = 1.0 + taut * exact_sqrt(u2x * u2x + u2y * u2y, EXACT)
                q = tl.load(p11 + o, mask=m, other=0.0)
                tl.store(p11 + o, exact_div(q + taut * u1x, ng1, EXACT), mask=m)
                q = tl.load(p12 + o, mask=m, other=0.0)
                tl.store(p12 + o, exact_div(q + taut * u1y, ng1, EXACT), mask=m)
                q = tl.load(p21 + o, mask=m, other=0.0)
                tl.store(p21 + o, exact_div(q + taut * u2x, ng2, EXACT), mask=m)
                q = tl.load(p22 + o, mask=m, other=0.0)
                tl.store(p22 + o, exact_div(q + taut * u2y, ng2, EXACT), mask=m)

    @triton.jit
    def _test_kernel(partial, active, count, NI, scaled_eps, NB: tl.constexpr):
        b = tl.program_id(0)
        i = tl.arange(0, NB)
        act = tl.load(active + b)
        err = tl.sum(tl.load(partial + b * NI + i, mask=i < NI, other=0.0), axis=0)
        tl.store(count + b, tl.load(count + b) + act)
        tl.store(active + b, tl.where((act != 0) & (err > scaled_eps), 1, 0).to(tl.int32))


FLT_EPSILON = float(torch.finfo(torch.float32).eps)


def run_until_stopped(n: int, run_once: Callable[[], None], active: torch.Tensor,
                      flags: torch.Tensor, cuda: bool) -> None:
    """``run_once`` up to ``n`` times, leaving once no pair is ``active``. On CUDA the host does
    not wait for run k before queueing k + 1: it reads k's flag (copied into ``flags``, two
    pinned slots) while k + 1 runs, so the GPU never idles on the host. When k stopped every
    pair, k + 1 touches nothing (all its work is masked), so the result does not depend on
    where the host looks."""
    if not cuda:
        for _ in range(n):
            run_once()
            if not bool(active.any()):
                return
        return
    pending = None
    for k in range(n):
        run_once()
        slot = flags[k % 2:k % 2 + 1]
        slot.copy_(active.any().view(1), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        if pending is not None:
            pending[0].synchronize()
            if not bool(pending[1]):
                return
        pending = (event, slot)


class TritonLevel:
    """Static buffers for one (batch, height, width) and the launches of one outer iteration;
    on CUDA (``graphs``) those are captured as a CUDA graph the second time they run (the first
    run compiles the kernels) and replayed from then on. A failed capture falls back to launching
    the kernels, with the same results. ``consts``: the level's constants, as the torch
    iteration uses them."""

    def __init__(self, b: int, h: int, w: int, device: torch.device, params,
                 consts: LevelConstants, graphs: bool, exact: bool = True):
        if triton is None:
            raise RuntimeError("Triton is not installed")
        self.b, self.h, self.w, self.p = b, h, w, params
        f32 = dict(device=device, dtype=torch.float32)
        self.state = [torch.zeros((b, h, w), **f32) for _ in range(6)]  # u1 u2 p11 p12 p21 p22
        self.const = [torch.zeros((b, h, w), **f32) for _ in range(3)]  # i1wx i1wy rho_c
        self.active = torch.zeros(b, dtype=torch.int32, device=device)
        self.count = torch.zeros(b, dtype=torch.int32, device=device)
        self.tile = TILE
        self.ncb = triton.cdiv(w, TILE[1])
        self.ni = triton.cdiv(h, TILE[0]) * self.ncb  # work items (tiles) per pair
        self.partial = torch.zeros((b, self.ni), dtype=torch.float64, device=device)
        if device.type == "cuda":
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            self.programs = min(b * self.ni, sms * PROGRAMS_PER_SM)
        else:
            self.programs = min(b * self.ni, INTERPRETER_PROGRAMS)
        self.exact = exact
        self.graphs = graphs and device.type == "cuda"
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.graph_part: Optional[str] = None  # "outer" or "inner": what the graph holds
        self.cuda = device.type == "cuda"
        # where the host reads "is any pair still running?" (pinned, two slots: see _outer_loop)
        self.flags = torch.zeros(2, dtype=torch.bool, pin_memory=self.cuda)
        self.runs = 0
        self.capture_error: Optional[str] = None
        self.l_t, self.taut, self.theta = consts.l_t, consts.taut, consts.theta
        self.scaled_eps = consts.scaled_eps

    def _inner(self) -> None:
        """The inner iterations of one outer iteration, for the active pairs (the stopping
        test inside each)."""
        p, (b, h, w), s = self.p, (self.b, self.h, self.w), self.state
        grid = (self.programs,)
        nb = max(16, triton.next_power_of_2(self.ni))
        tr, tw = self.tile
        fuse = not self.exact  # fused multiply-adds round differently from torch's separate ops
        shape = (b, h, w, self.ni, self.ncb, self.programs)
        for _ in range(p.inner_iterations):
            _u_kernel[grid](*s, *self.const, self.active, self.partial, *shape, self.l_t,
                            self.theta, FLT_EPSILON, EXACT=self.exact, TR=tr, TW=tw,
                            enable_fp_fusion=fuse)
            _p_kernel[grid](*s, self.active, *shape, self.taut, EXACT=self.exact, TR=tr, TW=tw,
                            enable_fp_fusion=fuse)
            _test_kernel[(b,)](self.partial, self.active, self.count, self.ni, self.scaled_eps,
                               NB=nb)

    def _outer(self, median: Callable) -> None:
        """One outer iteration of the active pairs: median filter, then the inner iterations."""
        self._median(median)
        self._inner()

    def _median(self, median: Callable) -> None:
        s = self.state
        if self.p.median_filtering > 1:
            m1, m2 = median(s[0], s[1], self.active != 0, self.p.median_filtering)
            s[0].copy_(m1)
            s[1].copy_(m2)

    def _run_outer(self, median: Callable) -> None:
        """``_outer``, from its second run on replayed as a CUDA graph where one can be captured
        (the whole outer iteration, else its inner iterations only)."""
        self.runs += 1
        if self.graphs and self.graph is None and self.runs >= 2 and self.capture_error is None:
            for part in ("outer", "inner"):
                try:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        if part == "outer":
                            self._outer(median)
                        else:
                            self._inner()
                    self.graph, self.graph_part = graph, part
                    break
                except Exception as exc:  # noqa: BLE001  (launching gives the same result)
                    self.capture_error = f"{part}: {type(exc).__name__}: {exc}"[:300]
            if self.graph is not None:
                self.capture_error = None
        if self.graph is None:
            self._outer(median)
        elif self.graph_part == "outer":
            self.graph.replay()
        else:
            self._median(median)
            self.graph.replay()

    def _outer_loop(self, median: Callable) -> None:
        """Up to ``outer_iterations`` outer iterations, leaving once every pair has stopped
        (``run_until_stopped``)."""
        run_until_stopped(self.p.outer_iterations, lambda: self._run_outer(median), self.active,
                          self.flags, self.cuda)

    def run(self, i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
            warp: Callable, median: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """procOneScale on this level: ``warp(i1_stack, i0, u1, u2, l_t)`` gives the warped
        constants (i1wx, i1wy, rho_c first) per warping, ``median(u1, u2, active, k)`` the
        median-filtered u of the active pairs (the others unchanged). Returns u1, u2 and the
        inner-iteration counts (B, warps)."""
        p, s = self.p, self.state
        s[0].copy_(u1)
        s[1].copy_(u2)
        for t in s[2:]:  # p zeroed once per level, as OpenCV
            t.zero_()
        counts = []
        for _ in range(p.warps):
            const = warp(i1_stack, i0, s[0], s[1], self.l_t)
            for buf, value in zip(self.const, const[:3]):
                buf.copy_(value)
            self.active.fill_(1)
            self.count.zero_()
            self._outer_loop(median)
            counts.append(self.count.clone())
        return s[0].clone(), s[1].clone(), torch.stack(counts, dim=1)

def check_available(kernel: str, device: torch.device) -> None:
    """A ValueError unless Triton kernels (``kernel``, for the message) can run on ``device``."""
    if not available(device):
        found = "found" if triton else "not installed"
        raise ValueError(f"kernel={kernel!r} needs Triton and a CUDA device (or TRITON_INTERPRET=1 "
                         f"on the CPU); here: Triton {found}, device {device}")


@register_kernel("triton")
class TritonKernel:
    """procOneScale with ``TritonLevel`` (a u and a p kernel per iteration; what "auto" picks on
    CUDA). ``graphs``: capture an outer iteration as a CUDA graph; ``exact``: the torch
    iteration's arithmetic, operation for operation. The warp and the median are the solver's
    torch functions (``Iteration``)."""

    remap: Optional[str] = None

    def __init__(self, params: TVL1Params, device: torch.device, iteration: Iteration, *,
                 graphs: bool = True, exact: bool = True):
        check_available("triton", device)
        self.it = iteration
        self.cache = LevelCache(lambda b, h, w, consts: TritonLevel(b, h, w, device, params, consts,
                                                                    graphs=graphs, exact=exact))

    @property
    def levels(self) -> dict:
        """(B, H, W) -> its ``TritonLevel``."""
        return self.cache.levels

    def run(self, i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
            consts: LevelConstants) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, h, w = i0.shape
        return self.cache.get(b, h, w, consts).run(i1_stack, i0, u1, u2, self.it.warp, self.it.median)
