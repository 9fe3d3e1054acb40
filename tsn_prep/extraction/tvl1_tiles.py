"""The "tiles" kernel (``TilesKernel``): TV-L1's inner loop as tiles that run several iterations
per launch (``kernel="tiles"`` of ``TorchTVL1``), with the median filter and the bicubic warp in
Triton too (the kernels are in ``tvl1_tiles_jit``).

Why: the iteration is memory-bound. ``tvl1_triton`` streams every pair's state (u, p: 6 floats
per pixel) and constants (3) through memory twice per iteration (a u kernel and a p kernel, about
88 bytes per pixel). Here one launch runs up to K iterations on a tile of E = EH x EW pixels:
the state and constants are read once over E, each iteration is computed over all of E (the u
step reads p to the left and above, the p step reads u to the right and below, so each iteration
spoils one more pixel at E's edge), and only the core T = (EH - 2K) x (EW - 2K), still exact after
K iterations, is written. That is about (9 * EH * EW / (TH * TW) + 6) * 4 / K bytes per pixel and
iteration: 20 at E = 32 x 64, K = 4. Neighbours inside a tile go through a per-program scratch
block (each program writes and re-reads its own, so it stays in the cache).

OpenCV stops a pair at the first iteration whose squared u update sums to at most
epsilon^2 * H * W, after that iteration's p update. A launch of K iterations cannot stop in the
middle, so each launch writes its result to the other half of a double buffer (the pair's half is
``par``), keeping the block's input as a checkpoint, and records each tile's error sum for every
iteration. A check kernel then finds the first iteration that met the test; if that was before
the block's last, a replay launch recomputes the pair from the checkpoint for exactly that many
iterations. So every pair runs OpenCV's iteration count, and a stopped pair is never touched
again. Outer iterations start with the 5 x 5 median of u (``cv::medianBlur``, replicated border):
a kernel of its own (25 clamped loads and a selection network on registers; inside the block
kernel it spilled registers, compiled for sm_90) writes it where the outer iteration's first
block reads u. The warp (``cv::remap`` INTER_CUBIC, zero border, as the written-out
``tvl1_ops.warp_constants_gather``) is one fused-gather kernel per warping.

With ``exact`` the arithmetic is the torch iteration's (no fused multiply-adds, IEEE division and
square root), so the flows equal ``TorchTVL1(kernel="torch", remap="gather")`` to float rounding
with the same iteration counts, which the tests check in Triton's CPU interpreter. The error sums
are float64 over fixed tiles: the same for any batch size. On CUDA the launches of
``outer_per_replay`` outer iterations are captured as one CUDA graph, so the host wakes a few
times per warping, not once per launch.

Status: written and tested in Triton's interpreter only; it has never run on a GPU (see
docs/performance.md). ``kernel="auto"`` therefore still picks ``tvl1_triton`` on CUDA.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import tvl1_triton
from .tvl1_kernels import Iteration, LevelCache, LevelConstants, register_kernel
from .tvl1_params import TVL1Params
from .tvl1_tiles_jit import (BLOCK, ELEMENTWISE_WARPS, INTERPRETER_PROGRAMS, ITERATIONS, NUM_WARPS, PLANES,
                             PROGRAMS_PER_SM, block_kernel, check_kernel, check_shape, flip_kernel,
                             median_kernel, warp_kernel)
from .tvl1_triton import FLT_EPSILON, check_available, run_until_stopped, triton


def outer_per_replay(outer_iterations: int, wanted: Optional[int] = None) -> int:
    """Outer iterations per CUDA graph replay: a divisor of ``outer_iterations`` (every replay
    the same graph); by default the one nearest half of them (two host wake-ups per warping)."""
    n = outer_iterations
    target = wanted if wanted else max(1, n // 2)
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


class TilesLevel:
    """One pyramid level of B pairs of H x W with the tile kernels: buffers, launches, and on
    CUDA the CUDA graph of ``outer_per_replay`` outer iterations (captured the second time
    they run; a failed capture falls back to launching, with the same results). ``consts``: the
    level's constants, as the torch iteration uses them."""

    def __init__(self, b: int, h: int, w: int, device: torch.device, params,
                 consts: LevelConstants, graphs: bool, exact: bool = True,
                 k: int = ITERATIONS, block: tuple[int, int] = BLOCK,
                 outer_per_graph: Optional[int] = None):
        if triton is None:
            raise RuntimeError("Triton is not installed")
        if params.median_filtering not in (1, 5):
            raise ValueError(f"kernel='tiles' has the 5x5 median only (median_filtering 1 or 5), "
                             f"got {params.median_filtering}")
        check_shape(block, k)
        self.b, self.h, self.w, self.p, self.k, self.block = b, h, w, params, k, block
        f32 = dict(device=device, dtype=torch.float32)
        i32 = dict(device=device, dtype=torch.int32)
        self.S = torch.zeros((2, PLANES, b, h, w), **f32)
        self.C = torch.zeros((3, b, h, w), **f32)
        self.M = torch.zeros((2, b, h, w), **f32)  # the median of u, per outer iteration
        self.par = torch.zeros(b, **i32)
        self.active = torch.zeros(b, **i32)
        self.replay = torch.zeros(b, **i32)
        self.count = torch.zeros(b, **i32)
        eh, ew = block
        th, tw = eh - 2 * k, ew - 2 * k
        self.ncb = triton.cdiv(w, tw)
        self.nt = triton.cdiv(h, th) * self.ncb  # tiles per pair
        self.partial = torch.zeros((b, k, self.nt), dtype=torch.float64, device=device)
        # the element-wise kernels (warp, median) work on tvl1_triton's tiles
        self.ncb_w = triton.cdiv(w, tvl1_triton.TILE[1])
        self.ni = triton.cdiv(h, tvl1_triton.TILE[0]) * self.ncb_w
        self.cuda = device.type == "cuda"
        self._warps = dict(num_warps=ELEMENTWISE_WARPS) if self.cuda else {}
        if self.cuda:
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            self.programs = min(b * self.nt, sms * PROGRAMS_PER_SM)
        else:
            self.programs = min(b * self.nt, INTERPRETER_PROGRAMS)
        self.scratch = torch.zeros((self.programs, PLANES, eh, ew), **f32)
        inner = params.inner_iterations
        self.blocks = [k] * (inner // k) + ([inner % k] if inner % k else [])
        self.chunk = outer_per_replay(params.outer_iterations, outer_per_graph)
        self.exact = exact
        self.graphs = graphs and self.cuda
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.capture_error: Optional[str] = None
        self.flags = torch.zeros(2, dtype=torch.bool, pin_memory=self.cuda)
        self.runs = 0
        self.launches = 0  # kernel launches queued by the host (a graph replay counts 1)
        self.l_t, self.taut, self.theta = consts.l_t, consts.taut, consts.theta
        self.scaled_eps = consts.scaled_eps

    def _launch(self, todo: torch.Tensor, nblock: int, median: bool) -> None:
        eh, ew = self.block
        launch_kw = dict(enable_fp_fusion=not self.exact)
        if self.cuda:
            launch_kw["num_warps"] = NUM_WARPS
        block_kernel[(self.programs,)](
            self.S, self.C, self.M, self.par, todo, nblock, self.partial, self.scratch, self.b, self.h,
            self.w, self.nt, self.ncb, self.programs, self.l_t, self.taut, self.theta,
            FLT_EPSILON, K=self.k, EH=eh, EW=ew, MEDIAN=median, EXACT=self.exact,
            **launch_kw)

    def _outer(self) -> None:
        """One outer iteration of the active pairs: per block, the launch, the check and the
        replay of the pairs that stopped inside it."""
        nb = max(16, min(1024, triton.next_power_of_2(self.nt)))
        if self.p.median_filtering == 5:
            tr, tw = tvl1_triton.TILE
            median_kernel[(self.b * self.ni,)](self.S, self.M, self.par, self.active, self.b,
                                                self.h, self.w, self.ni, self.ncb_w, TR=tr, TW=tw,
                                                **self._warps)
        for i, n in enumerate(self.blocks):
            median = i == 0 and self.p.median_filtering == 5
            self._launch(self.active, n, median)
            check_kernel[(self.b,)](self.partial, self.par, self.active, self.count,
                                     self.replay, n, self.nt, self.scaled_eps, K=self.k, NB=nb)
            self._launch(self.replay, 1, median)
            flip_kernel[(triton.cdiv(self.b, 256),)](self.par, self.replay, self.b, BLOCK=256)

    def _chunk(self) -> None:
        for _ in range(self.chunk):
            self._outer()

    def _run_chunk(self) -> None:
        self.runs += 1
        if self.graphs and self.graph is None and self.runs >= 2 and self.capture_error is None:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self._chunk()
                self.graph = graph
            except Exception as exc:  # noqa: BLE001  (launching gives the same result)
                self.capture_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.graph is None:
            self._chunk()
            self.launches += (4 * len(self.blocks) + 1) * self.chunk
        else:
            self.graph.replay()
            self.launches += 1

    def _gather(self) -> None:
        """Every pair's state into the first half (where the warp and the caller read it)."""
        second = (self.par != 0).view(1, -1, 1, 1)
        self.S[0].copy_(torch.where(second, self.S[1], self.S[0]))
        self.par.zero_()

    def run(self, i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """procOneScale on this level (``TritonLevel.run`` without the warp and median
        callables: both are kernels here). Returns u1, u2 and the iteration counts (B, warps)."""
        p, s = self.p, self.S
        s[0, 0].copy_(u1)
        s[0, 1].copy_(u2)
        s[0, 2:].zero_()  # p zeroed once per level, as OpenCV
        self.par.zero_()
        i1s = i1_stack.contiguous()
        i0 = i0.contiguous()
        tr, tw = tvl1_triton.TILE
        ncb, ni = self.ncb_w, self.ni
        counts = []
        replays = p.outer_iterations // self.chunk
        for _ in range(p.warps):
            warp_kernel[(self.b * ni,)](i1s, i0, s[0], self.C, self.b, self.h, self.w, ni, ncb,
                                          TR=tr, TW=tw, enable_fp_fusion=not self.exact,
                                          **self._warps)
            self.active.fill_(1)
            self.count.zero_()
            self.replay.zero_()
            run_until_stopped(replays, self._run_chunk, self.active, self.flags, self.cuda)
            self._gather()
            counts.append(self.count.clone())
        return s[0, 0].clone(), s[0, 1].clone(), torch.stack(counts, dim=1)


@register_kernel("tiles")
class TilesKernel:
    """procOneScale with ``TilesLevel``: ``tile_iterations`` iterations per launch on a tile, the
    median and the warp in Triton (the warp written out as cv::remap: ``remap`` "gather"), CUDA
    graphs (``graphs``) of ``outer_per_replay`` outer iterations; ``exact``: the torch
    iteration's arithmetic. Never yet run on a GPU."""

    remap: Optional[str] = "gather"  # its warp kernel is the written-out remap

    def __init__(self, params: TVL1Params, device: torch.device, iteration: Iteration, *,
                 graphs: bool = True, exact: bool = True, tile_iterations: int = ITERATIONS,
                 outer_per_replay: Optional[int] = None):
        if params.median_filtering not in (1, 5):
            raise ValueError(f"kernel='tiles' has the 5x5 median only (median_filtering 1 or "
                             f"5), got {params.median_filtering}")
        check_available("tiles", device)
        check_shape(BLOCK, tile_iterations)
        self.tile_iterations, self.outer_per_replay = tile_iterations, outer_per_replay
        self.cache = LevelCache(lambda b, h, w, consts: TilesLevel(
            b, h, w, device, params, consts, graphs=graphs, exact=exact, k=tile_iterations,
            block=BLOCK, outer_per_graph=outer_per_replay))

    @property
    def levels(self) -> dict:
        """(B, H, W) -> its ``TilesLevel``."""
        return self.cache.levels

    def run(self, i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
            consts: LevelConstants) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, h, w = i0.shape
        return self.cache.get(b, h, w, consts).run(i1_stack, i0, u1, u2)
