"""The pure tensor functions of the PyTorch TV-L1 (``tvl1_torch``): OpenCV's pyramid, resize and
bicubic remap, the median filter, the gradients and divergence, and one inner iteration
(``step``). The module docstring of ``tvl1_torch`` says how each follows OpenCV."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_FLT_EPSILON = float(np.finfo(np.float32).eps)
_CUBIC_A = -0.75  # OpenCV's interpolateCubic


def pyramid_sizes(h: int, w: int, scales: int, step: float) -> list[tuple[int, int]]:
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


def resize(x: torch.Tensor, size: tuple[int, int], scale_y: float, scale_x: float) -> torch.Tensor:
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


def centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1)),
            F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1)))


def _divergence(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence with v(-1) = 0 (OpenCV's ``divergence``)."""
    return v1 - F.pad(v1[:, :, :-1], (1, 0)) + v2 - F.pad(v2[:, :-1, :], (0, 0, 1, 0))


def warp_constants(i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
                    l_t: float) -> tuple[torch.Tensor, ...]:
    """Per warping: I1 and its gradient warped by the current flow, and the constant parts of the
    thresholding step: (i1wx, i1wy, rho_c, lambda*theta*|grad|^2, 1/|grad|^2 or 0 where the
    gradient is below FLT_EPSILON)."""
    return _constants(_remap_cubic(i1_stack, u1, u2), i0, u1, u2, l_t)


def warp_constants_gather(i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor,
                           u2: torch.Tensor, l_t: float) -> tuple[torch.Tensor, ...]:
    """``warp_constants`` with the written-out remap (``remap="gather"``): what the tile
    kernels' warp computes, operation for operation."""
    return _constants(_remap_cubic_gather(i1_stack, u1, u2), i0, u1, u2, l_t)


REMAPS = {"grid_sample": warp_constants, "gather": warp_constants_gather}


def _constants(warped: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
               l_t: float) -> tuple[torch.Tensor, ...]:
    i1w, i1wx, i1wy = warped.unbind(1)
    grad = i1wx * i1wx + i1wy * i1wy
    rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
    inv_grad = torch.where(grad > _FLT_EPSILON, 1.0 / grad, 0.0)
    return i1wx, i1wy, rho_c, l_t * grad, inv_grad


def step(u1, u2, p11, p12, p21, p22, i1wx, i1wy, rho_c, lt_grad, inv_grad, active, count,
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


def masked_median(u1: torch.Tensor, u2: torch.Tensor, active: torch.Tensor, k: int):
    """The outer iteration's median filter of u1 and u2, for the active pairs only."""
    a = active.view(-1, 1, 1)
    return torch.where(a, _median(u1, k), u1), torch.where(a, _median(u2, k), u2)


def masked_median_eager(u1: torch.Tensor, u2: torch.Tensor, active: torch.Tensor, k: int):
    a = active.view(-1, 1, 1)
    return torch.where(a, _median_eager(u1, k), u1), torch.where(a, _median_eager(u2, k), u2)


