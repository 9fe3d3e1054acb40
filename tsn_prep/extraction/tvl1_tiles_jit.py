"""The Triton kernels of the "tiles" TV-L1 kernel (``tvl1_tiles`` drives them): the block
kernel (K iterations per launch on a tile, with a checkpoint and a replay), the 5 x 5 median, the
bicubic warp, the per-pair stopping check. ``tvl1_tiles``' docstring says why and how."""
from __future__ import annotations

from .tvl1_triton import triton

if triton is not None:
    import triton.language as tl

    from .tvl1_triton import exact_div, tile_indices

# Launch shapes, chosen from what the compiler says for sm_90 (python -m tools.bench.kernel_resources,
# docs/performance.md): 32 x 64 at 16 warps is 4 pixels per thread in 93 registers, no spills
# (8 warps: 211); one such program fits a multiprocessor. Never timed on a GPU.
BLOCK = (32, 64)            # E: rows x columns of one tile's computed block (powers of two)
ITERATIONS = 4              # K: iterations per launch (default of TorchTVL1's tile_iterations)
PROGRAMS_PER_SM = 1         # the block kernel's fixed grid, per multiprocessor
NUM_WARPS = 16              # the block kernel's
ELEMENTWISE_WARPS = 8       # the median's and warp's (4 warps: 140 and 197 registers)
INTERPRETER_PROGRAMS = 4
PLANES = 6                 # u1 u2 p11 p12 p21 p22


def check_shape(block: tuple[int, int], k: int) -> None:
    """A block of EH x EW with K iterations leaves a core of (EH - 2K) x (EW - 2K) pixels."""
    eh, ew = block
    if k < 1 or eh - 2 * k < 1 or ew - 2 * k < 1:
        raise ValueError(f"{k} iterations per launch leave no core in a {eh}x{ew} block "
                         f"(need 1 <= K < {min(eh, ew) // 2 + (min(eh, ew) % 2)})")
    for n in block:
        if n & (n - 1):
            raise ValueError(f"block sides must be powers of two, got {eh}x{ew}")



if triton is not None:  # pragma: no cover - runs on a GPU, or under TRITON_INTERPRET=1
    @triton.jit
    def _median5(src, y, x, H, W):
        """5 x 5 median at (y, x) of the (H, W) plane at ``src``, replicated border: Devillard's
        selection network (``tvl1_ops._MED25``), the comparisons whose result nobody reads
        left out; written out, since Triton keeps no list of tensors (and a call per
        compare-exchange costs the interpreter a millisecond). tests/test_flow_tiles.py checks
        this text against ``tvl1_ops._MED25_LIVE``."""
        r0 = tl.minimum(tl.maximum(y - 2, 0), H - 1) * W
        r1 = tl.minimum(tl.maximum(y - 1, 0), H - 1) * W
        r2 = tl.minimum(tl.maximum(y, 0), H - 1) * W
        r3 = tl.minimum(tl.maximum(y + 1, 0), H - 1) * W
        r4 = tl.minimum(tl.maximum(y + 2, 0), H - 1) * W
        c0 = src + tl.minimum(tl.maximum(x - 2, 0), W - 1)
        c1 = src + tl.minimum(tl.maximum(x - 1, 0), W - 1)
        c2 = src + tl.minimum(tl.maximum(x, 0), W - 1)
        c3 = src + tl.minimum(tl.maximum(x + 1, 0), W - 1)
        c4 = src + tl.minimum(tl.maximum(x + 2, 0), W - 1)
        p0, p1, p2, p3, p4 = tl.load(c0 + r0), tl.load(c1 + r0), tl.load(c2 + r0), tl.load(c3 + r0), tl.load(c4 + r0)
        p5, p6, p7, p8, p9 = tl.load(c0 + r1), tl.load(c1 + r1), tl.load(c2 + r1), tl.load(c3 + r1), tl.load(c4 + r1)
        p10, p11, p12, p13, p14 = tl.load(c0 + r2), tl.load(c1 + r2), tl.load(c2 + r2), tl.load(c3 + r2), tl.load(c4 + r2)
        p15, p16, p17, p18, p19 = tl.load(c0 + r3), tl.load(c1 + r3), tl.load(c2 + r3), tl.load(c3 + r3), tl.load(c4 + r3)
        p20, p21, p22, p23, p24 = tl.load(c0 + r4), tl.load(c1 + r4), tl.load(c2 + r4), tl.load(c3 + r4), tl.load(c4 + r4)
        # -- network begin
        p0, p1 = tl.minimum(p0, p1), tl.maximum(p0, p1)
        p3, p4 = tl.minimum(p3, p4), tl.maximum(p3, p4)
        p2, p4 = tl.minimum(p2, p4), tl.maximum(p2, p4)
        p2, p3 = tl.minimum(p2, p3), tl.maximum(p2, p3)
        p6, p7 = tl.minimum(p6, p7), tl.maximum(p6, p7)
        p5, p7 = tl.minimum(p5, p7), tl.maximum(p5, p7)
        p5, p6 = tl.minimum(p5, p6), tl.maximum(p5, p6)
        p9, p10 = tl.minimum(p9, p10), tl.maximum(p9, p10)
        p8, p10 = tl.minimum(p8, p10), tl.maximum(p8, p10)
        p8, p9 = tl.minimum(p8, p9), tl.maximum(p8, p9)
        p12, p13 = tl.minimum(p12, p13), tl.maximum(p12, p13)
        p11, p13 = tl.minimum(p11, p13), tl.maximum(p11, p13)
        p11, p12 = tl.minimum(p11, p12), tl.maximum(p11, p12)
        p15, p16 = tl.minimum(p15, p16), tl.maximum(p15, p16)
        p14, p16 = tl.minimum(p14, p16), tl.maximum(p14, p16)
        p14, p15 = tl.minimum(p14, p15), tl.maximum(p14, p15)
        p18, p19 = tl.minimum(p18, p19), tl.maximum(p18, p19)
        p17, p19 = tl.minimum(p17, p19), tl.maximum(p17, p19)
        p17, p18 = tl.minimum(p17, p18), tl.maximum(p17, p18)
        p21, p22 = tl.minimum(p21, p22), tl.maximum(p21, p22)
        p20, p22 = tl.minimum(p20, p22), tl.maximum(p20, p22)
        p20, p21 = tl.minimum(p20, p21), tl.maximum(p20, p21)
        p23, p24 = tl.minimum(p23, p24), tl.maximum(p23, p24)
        p2, p5 = tl.minimum(p2, p5), tl.maximum(p2, p5)
        p3, p6 = tl.minimum(p3, p6), tl.maximum(p3, p6)
        p0, p6 = tl.minimum(p0, p6), tl.maximum(p0, p6)
        p0, p3 = tl.minimum(p0, p3), tl.maximum(p0, p3)
        p4, p7 = tl.minimum(p4, p7), tl.maximum(p4, p7)
        p1, p7 = tl.minimum(p1, p7), tl.maximum(p1, p7)
        p1, p4 = tl.minimum(p1, p4), tl.maximum(p1, p4)
        p11, p14 = tl.minimum(p11, p14), tl.maximum(p11, p14)
        p8, p14 = tl.minimum(p8, p14), tl.maximum(p8, p14)
        p8, p11 = tl.minimum(p8, p11), tl.maximum(p8, p11)
        p12, p15 = tl.minimum(p12, p15), tl.maximum(p12, p15)
        p9, p15 = tl.minimum(p9, p15), tl.maximum(p9, p15)
        p9, p12 = tl.minimum(p9, p12), tl.maximum(p9, p12)
        p13, p16 = tl.minimum(p13, p16), tl.maximum(p13, p16)
        p10, p16 = tl.minimum(p10, p16), tl.maximum(p10, p16)
        p10, p13 = tl.minimum(p10, p13), tl.maximum(p10, p13)
        p20, p23 = tl.minimum(p20, p23), tl.maximum(p20, p23)
        p17, p23 = tl.minimum(p17, p23), tl.maximum(p17, p23)
        p17, p20 = tl.minimum(p17, p20), tl.maximum(p17, p20)
        p21, p24 = tl.minimum(p21, p24), tl.maximum(p21, p24)
        p18, p24 = tl.minimum(p18, p24), tl.maximum(p18, p24)
        p18, p21 = tl.minimum(p18, p21), tl.maximum(p18, p21)
        p19, p22 = tl.minimum(p19, p22), tl.maximum(p19, p22)
        p17 = tl.maximum(p8, p17)
        p9, p18 = tl.minimum(p9, p18), tl.maximum(p9, p18)
        p0, p18 = tl.minimum(p0, p18), tl.maximum(p0, p18)
        p9 = tl.maximum(p0, p9)
        p10, p19 = tl.minimum(p10, p19), tl.maximum(p10, p19)
        p1, p19 = tl.minimum(p1, p19), tl.maximum(p1, p19)
        p1, p10 = tl.minimum(p1, p10), tl.maximum(p1, p10)
        p11, p20 = tl.minimum(p11, p20), tl.maximum(p11, p20)
        p2, p20 = tl.minimum(p2, p20), tl.maximum(p2, p20)
        p11 = tl.maximum(p2, p11)
        p12, p21 = tl.minimum(p12, p21), tl.maximum(p12, p21)
        p3, p21 = tl.minimum(p3, p21), tl.maximum(p3, p21)
        p3, p12 = tl.minimum(p3, p12), tl.maximum(p3, p12)
        p13, p22 = tl.minimum(p13, p22), tl.maximum(p13, p22)
        p4 = tl.minimum(p4, p22)
        p4, p13 = tl.minimum(p4, p13), tl.maximum(p4, p13)
        p14, p23 = tl.minimum(p14, p23), tl.maximum(p14, p23)
        p5, p23 = tl.minimum(p5, p23), tl.maximum(p5, p23)
        p5, p14 = tl.minimum(p5, p14), tl.maximum(p5, p14)
        p15, p24 = tl.minimum(p15, p24), tl.maximum(p15, p24)
        p6 = tl.minimum(p6, p24)
        p6, p15 = tl.minimum(p6, p15), tl.maximum(p6, p15)
        p7 = tl.minimum(p7, p16)
        p7 = tl.minimum(p7, p19)
        p13 = tl.minimum(p13, p21)
        p15 = tl.minimum(p15, p23)
        p7 = tl.minimum(p7, p13)
        p7 = tl.minimum(p7, p15)
        p9 = tl.maximum(p1, p9)
        p11 = tl.maximum(p3, p11)
        p17 = tl.maximum(p5, p17)
        p17 = tl.maximum(p11, p17)
        p17 = tl.maximum(p9, p17)
        p4, p10 = tl.minimum(p4, p10), tl.maximum(p4, p10)
        p6, p12 = tl.minimum(p6, p12), tl.maximum(p6, p12)
        p7, p14 = tl.minimum(p7, p14), tl.maximum(p7, p14)
        p4, p6 = tl.minimum(p4, p6), tl.maximum(p4, p6)
        p7 = tl.maximum(p4, p7)
        p12, p14 = tl.minimum(p12, p14), tl.maximum(p12, p14)
        p10 = tl.minimum(p10, p14)
        p6, p7 = tl.minimum(p6, p7), tl.maximum(p6, p7)
        p10, p12 = tl.minimum(p10, p12), tl.maximum(p10, p12)
        p6, p10 = tl.minimum(p6, p10), tl.maximum(p6, p10)
        p17 = tl.maximum(p6, p17)
        p12, p17 = tl.minimum(p12, p17), tl.maximum(p12, p17)
        p7 = tl.minimum(p7, p17)
        p7, p10 = tl.minimum(p7, p10), tl.maximum(p7, p10)
        p12, p18 = tl.minimum(p12, p18), tl.maximum(p12, p18)
        p12 = tl.maximum(p7, p12)
        p10 = tl.minimum(p10, p18)
        p12, p20 = tl.minimum(p12, p20), tl.maximum(p12, p20)
        p10 = tl.minimum(p10, p20)
        p12 = tl.maximum(p10, p12)
        # -- network end
        return p12

    @triton.jit
    def _cubic(t):
        """Keys cubic weights (a = -0.75) of the taps at -1, 0, 1, 2, in
        ``tvl1_ops``' cubic weights' order of operations."""
        x0 = t + 1.0
        c0 = ((-0.75 * x0 - -3.75) * x0 + -6.0) * x0 - -3.0
        c1 = ((1.25 * t) - 2.25) * t * t + 1.0
        x2 = 1.0 - t
        c2 = ((1.25 * x2) - 2.25) * x2 * x2 + 1.0
        c3 = 1.0 - c0 - c1 - c2
        return c0, c1, c2, c3

    @triton.jit
    def _row(plane, yy, vy, ix, W, w0, w1, w2, w3):
        """One tap row of the bicubic remap: taps outside the image are 0 (BORDER_CONSTANT)."""
        o = yy * W
        x = ix - 1
        r = tl.load(plane + o + x, mask=vy & (x >= 0) & (x < W), other=0.0) * w0
        x = ix
        r = r + tl.load(plane + o + x, mask=vy & (x >= 0) & (x < W), other=0.0) * w1
        x = ix + 1
        r = r + tl.load(plane + o + x, mask=vy & (x >= 0) & (x < W), other=0.0) * w2
        x = ix + 2
        r = r + tl.load(plane + o + x, mask=vy & (x >= 0) & (x < W), other=0.0) * w3
        return r

    @triton.jit
    def _remap(plane, iy, ix, H, W, m, wx0, wx1, wx2, wx3, wy0, wy1, wy2, wy3):
        y = iy - 1
        out = _row(plane, y, m & (y >= 0) & (y < H), ix, W, wx0, wx1, wx2, wx3) * wy0
        y = iy
        out = out + _row(plane, y, m & (y >= 0) & (y < H), ix, W, wx0, wx1, wx2, wx3) * wy1
        y = iy + 1
        out = out + _row(plane, y, m & (y >= 0) & (y < H), ix, W, wx0, wx1, wx2, wx3) * wy2
        y = iy + 2
        out = out + _row(plane, y, m & (y >= 0) & (y < H), ix, W, wx0, wx1, wx2, wx3) * wy3
        return out

    @triton.jit
    def warp_kernel(i1s, i0, S, C, B, H, W, NI, NCB, TR: tl.constexpr, TW: tl.constexpr):
        """Per pixel of the (B, H, W) flow in ``S``'s first half: I1 and its gradient (``i1s``,
        (B, 3, H, W)) remapped by the flow, then the constants of the thresholding step,
        written to ``C`` (3, B, H, W): i1wx, i1wy, rho_c (``tvl1_ops.warp_constants``)."""
        w = tl.program_id(0)
        b = w // NI
        y, x, m = tile_indices(w - b * NI, H, W, NCB, TR, TW)
        plane = (H * W).to(tl.int64)
        o = b.to(tl.int64) * plane + y * W + x
        n = plane * B
        u1 = tl.load(S + o, mask=m, other=0.0)
        u2 = tl.load(S + n + o, mask=m, other=0.0)
        fx = tl.minimum(tl.maximum(x.to(tl.float32) + u1, -4.0), W + 3.0)
        fy = tl.minimum(tl.maximum(y.to(tl.float32) + u2, -4.0), H + 3.0)
        flx = tl.floor(fx)
        fly = tl.floor(fy)
        wx0, wx1, wx2, wx3 = _cubic(fx - flx)
        wy0, wy1, wy2, wy3 = _cubic(fy - fly)
        ix = flx.to(tl.int32)
        iy = fly.to(tl.int32)
        base = i1s + b.to(tl.int64) * 3 * plane
        i1w = _remap(base, iy, ix, H, W, m, wx0, wx1, wx2, wx3, wy0, wy1, wy2, wy3)
        gx = _remap(base + plane, iy, ix, H, W, m, wx0, wx1, wx2, wx3, wy0, wy1, wy2, wy3)
        gy = _remap(base + 2 * plane, iy, ix, H, W, m, wx0, wx1, wx2, wx3, wy0, wy1, wy2, wy3)
        rc = i1w - gx * u1 - gy * u2 - tl.load(i0 + o, mask=m, other=0.0)
        tl.store(C + o, gx, mask=m)
        tl.store(C + n + o, gy, mask=m)
        tl.store(C + 2 * n + o, rc, mask=m)

    @triton.jit
    def block_kernel(S, C, M, par, todo, nblock, partial, scratch, B, H, W, NT, NCB, G,
                      l_t, taut, theta, flt_eps, K: tl.constexpr, EH: tl.constexpr,
                      EW: tl.constexpr, MEDIAN: tl.constexpr, EXACT: tl.constexpr):
        """Up to K iterations (``todo[b] * nblock`` of them) of every (pair, tile) item, from
        the pair's half ``par[b]`` of ``S`` (2, 6, B, H, W) into the other half; each
        iteration's squared-update sum of the tile's core into ``partial`` (B, K, NT)."""
        pid = tl.program_id(0)
        TH: tl.constexpr = EH - 2 * K
        TW: tl.constexpr = EW - 2 * K
        EHW: tl.constexpr = EH * EW
        r = tl.arange(0, EH)[:, None]
        c = tl.arange(0, EW)[None, :]
        sc = scratch + pid.to(tl.int64) * 6 * EHW + r * EW + c
        core_rc = (r >= K) & (r < EH - K) & (c >= K) & (c < EW - K)
        plane = (H * W).to(tl.int64) * B
        for k in range(0, tl.cdiv(B * NT, G)):
            w = pid + k * G
            b = w // NT
            n = tl.load(todo + b, mask=w < B * NT, other=0) * nblock
            if n > 0:
                it = w - b * NT
                rb = it // NCB
                cb = it - rb * NCB
                y = rb * TH - K + r
                x = cb * TW - K + c
                inimg = (y >= 0) & (y < H) & (x >= 0) & (x < W)
                half = tl.load(par + b).to(tl.int64)
                pair = b.to(tl.int64) * H * W
                src = S + half * 6 * plane + pair
                dst = S + (1 - half) * 6 * plane + pair
                o = y * W + x
                if MEDIAN:  # the outer iteration's first block starts from the median of u
                    a1 = tl.load(M + pair + o, mask=inimg, other=0.0)
                    a2 = tl.load(M + plane + pair + o, mask=inimg, other=0.0)
                else:
                    a1 = tl.load(src + o, mask=inimg, other=0.0)
                    a2 = tl.load(src + plane + o, mask=inimg, other=0.0)
                q11 = tl.load(src + 2 * plane + o, mask=inimg, other=0.0)
                q12 = tl.load(src + 3 * plane + o, mask=inimg, other=0.0)
                q21 = tl.load(src + 4 * plane + o, mask=inimg, other=0.0)
                q22 = tl.load(src + 5 * plane + o, mask=inimg, other=0.0)
                gx = tl.load(C + pair + o, mask=inimg, other=0.0)
                gy = tl.load(C + plane + pair + o, mask=inimg, other=0.0)
                rc = tl.load(C + 2 * plane + pair + o, mask=inimg, other=0.0)
                grad = gx * gx + gy * gy
                lg = l_t * grad
                one = tl.full(grad.shape, 1.0, tl.float32)
                ig = tl.where(grad > flt_eps, exact_div(one, grad, EXACT), 0.0)
                core = inimg & core_rc
                # p(-1) = 0 at the image's left and top; beyond the block's edge: unknown
                left = (c >= 1) & (x > 0)
                up = (r >= 1) & (y > 0)
                right = (c < EW - 1) & (x < W - 1)
                down = (r < EH - 1) & (y < H - 1)
                for j in range(0, n):
                    rho = rc + (gx * a1 + gy * a2)
                    fi = tl.where(rho < -lg, l_t,
                                  tl.where(rho > lg, -l_t, tl.where(ig > 0, -rho * ig, 0.0)))
                    v1 = a1 + fi * gx
                    v2 = a2 + fi * gy
                    tl.store(sc, q11)
                    tl.store(sc + EHW, q12)
                    tl.store(sc + 2 * EHW, q21)
                    tl.store(sc + 3 * EHW, q22)
                    tl.debug_barrier()
                    d1 = (q11 - tl.load(sc - 1, mask=left, other=0.0)
                          + q12 - tl.load(sc + EHW - EW, mask=up, other=0.0))
                    d2 = (q21 - tl.load(sc + 2 * EHW - 1, mask=left, other=0.0)
                          + q22 - tl.load(sc + 3 * EHW - EW, mask=up, other=0.0))
                    n1 = v1 + theta * d1
                    n2 = v2 + theta * d2
                    e1 = n1 - a1
                    e2 = n2 - a2
                    e = tl.where(core, e1 * e1 + e2 * e2, 0.0).to(tl.float64)
                    tl.store(partial + (b * K + j) * NT + it, tl.sum(tl.sum(e, axis=1), axis=0))
                    tl.store(sc + 4 * EHW, n1)
                    tl.store(sc + 5 * EHW, n2)
                    tl.debug_barrier()
                    u1x = tl.where(right, tl.load(sc + 4 * EHW + 1, mask=right, other=0.0) - n1, 0.0)
                    u1y = tl.where(down, tl.load(sc + 4 * EHW + EW, mask=down, other=0.0) - n1, 0.0)
                    u2x = tl.where(right, tl.load(sc + 5 * EHW + 1, mask=right, other=0.0) - n2, 0.0)
                    u2y = tl.where(down, tl.load(sc + 5 * EHW + EW, mask=down, other=0.0) - n2, 0.0)
                    # written out, not tvl1_triton's exact_div/exact_sqrt: a call costs the interpreter 1 ms
                    if EXACT:
                        ng1 = 1.0 + taut * tl.sqrt_rn(u1x * u1x + u1y * u1y)
                        ng2 = 1.0 + taut * tl.sqrt_rn(u2x * u2x + u2y * u2y)
                        q11 = tl.div_rn(q11 + taut * u1x, ng1)
                        q12 = tl.div_rn(q12 + taut * u1y, ng1)
                        q21 = tl.div_rn(q21 + taut * u2x, ng2)
                        q22 = tl.div_rn(q22 + taut * u2y, ng2)
                    else:
                        ng1 = 1.0 + taut * tl.sqrt(u1x * u1x + u1y * u1y)
                        ng2 = 1.0 + taut * tl.sqrt(u2x * u2x + u2y * u2y)
                        q11 = (q11 + taut * u1x) / ng1
                        q12 = (q12 + taut * u1y) / ng1
                        q21 = (q21 + taut * u2x) / ng2
                        q22 = (q22 + taut * u2y) / ng2
                    a1 = n1
                    a2 = n2
                tl.store(dst + o, a1, mask=core)
                tl.store(dst + plane + o, a2, mask=core)
                tl.store(dst + 2 * plane + o, q11, mask=core)
                tl.store(dst + 3 * plane + o, q12, mask=core)
                tl.store(dst + 4 * plane + o, q21, mask=core)
                tl.store(dst + 5 * plane + o, q22, mask=core)

    @triton.jit
    def median_kernel(S, M, par, active, B, H, W, NI, NCB, TR: tl.constexpr, TW: tl.constexpr):
        """The 5 x 5 median of u1 and u2 of the active pairs, from their half of ``S`` into
        ``M`` (2, B, H, W), where the outer iteration's first block (and its replay) reads it.
        A kernel of its own, once per outer iteration: inside the block kernel its 25 values per
        pixel spilled registers (compiled for sm_90)."""
        w = tl.program_id(0)
        b = w // NI
        if tl.load(active + b) != 0:
            y, x, m = tile_indices(w - b * NI, H, W, NCB, TR, TW)
            plane = (H * W).to(tl.int64)
            n = plane * B
            pair = b.to(tl.int64) * plane
            src = S + tl.load(par + b).to(tl.int64) * 6 * n + pair
            o = pair + y * W + x
            tl.store(M + o, _median5(src, y, x, H, W), mask=m)
            tl.store(M + n + o, _median5(src + n, y, x, H, W), mask=m)

    @triton.jit
    def check_kernel(partial, par, active, count, replay, nblock, NT, scaled_eps,
                      K: tl.constexpr, NB: tl.constexpr):
        """After a block of ``nblock`` iterations: the first that met OpenCV's test stops the
        pair there (replayed from the checkpoint unless it was the block's last)."""
        b = tl.program_id(0)
        if tl.load(active + b) != 0:
            i = tl.arange(0, NB)
            stop = tl.full((), 0, tl.int32)
            for j in range(0, nblock):
                err = tl.zeros((NB,), tl.float64)
                for s in range(0, NT, NB):
                    err += tl.load(partial + (b * K + j) * NT + s + i, mask=s + i < NT, other=0.0)
                hit = (stop == 0) & (tl.sum(err, axis=0) <= scaled_eps)
                stop = tl.where(hit, j + 1, stop)
            tl.store(count + b, tl.load(count + b) + tl.where(stop > 0, stop, nblock))
            done = (stop == 0) | (stop == nblock)  # the block's result is the pair's state
            half = tl.load(par + b)
            tl.store(par + b, tl.where(done, 1 - half, half))
            tl.store(replay + b, tl.where(done, 0, stop))
            tl.store(active + b, tl.where(stop == 0, 1, 0).to(tl.int32))

    @triton.jit
    def flip_kernel(par, replay, B, BLOCK: tl.constexpr):
        """After a replay: the replayed pairs' state is in their other half."""
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < B
        rp = tl.load(replay + i, mask=m, other=0)
        half = tl.load(par + i, mask=m, other=0)
        tl.store(par + i, tl.where(rp > 0, 1 - half, half), mask=m)
        tl.store(replay + i, tl.zeros_like(rp), mask=m)
