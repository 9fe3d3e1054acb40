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
  the image are 0 (remap's default BORDER_CONSTANT); matches cv2.remap to ~1e-4 grey levels;
* the dual variables p are zeroed once per level (not per warping);
* per warping: up to ``outer_iterations`` outer iterations, each starting with a median filter of
  size ``median_filtering`` (replicated border, like ``cv::medianBlur``) on u1 and u2, then up to
  ``inner_iterations`` of thresholding -> divergence -> u update -> forward gradient -> p update.
  Both loops stop once the sum over the image of the squared u update is <= epsilon^2 * H * W,
  checked after each u update (the p update of that iteration still happens), exactly as OpenCV.

In a batch every pair has its own stopping test: a pair that has converged in a warping is frozen
(its updates masked) until the next warping, so a batch gives the one-at-a-time result.
Differences from OpenCV: its error sum is a sequential float32 accumulation (here float64), and
floating-point rounding in resize/remap differs slightly. ``gamma`` (illumination term) is not
supported (OpenCV's default, 0, is what this project uses).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

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


def _remap_cubic(img: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """``cv::remap(img, x + u1, y + u2, INTER_CUBIC, BORDER_CONSTANT 0)`` for img (B, C, H, W)
    and flow (B, H, W)."""
    b, c, h, w = img.shape
    dev = img.device
    gx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    gy = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    # beyond these bounds every tap is outside anyway; clamping keeps the int64 cast safe
    x = (gx + u1).clamp(-4.0, w + 3.0)
    y = (gy + u2).clamp(-4.0, h + 3.0)
    fx_floor, fy_floor = torch.floor(x), torch.floor(y)
    fx, fy = x - fx_floor, y - fy_floor
    ix, iy = fx_floor.to(torch.int64), fy_floor.to(torch.int64)
    wx, wy = _cubic_weights(fx), _cubic_weights(fy)  # (4, B, H, W)
    # one ring of zeros; taps further out are clamped onto it
    wp = w + 2
    padded = F.pad(img, (1, 1, 1, 1)).reshape(b, c, -1)
    off = torch.arange(-1, 3, device=dev).view(4, 1, 1, 1)
    tx = (ix.unsqueeze(0) + off).clamp_(-1, w) + 1  # (4, B, H, W)
    ty = (iy.unsqueeze(0) + off).clamp_(-1, h) + 1
    idx = (ty.unsqueeze(1) * wp + tx.unsqueeze(0))  # (4y, 4x, B, H, W)
    idx = idx.permute(2, 0, 1, 3, 4).reshape(b, 1, -1).expand(b, c, -1)
    vals = padded.gather(2, idx).view(b, c, 4, 4, h, w)
    wx = wx.permute(1, 0, 2, 3).unsqueeze(1).unsqueeze(2)  # (B, 1, 1, 4, H, W)
    wy = wy.permute(1, 0, 2, 3).unsqueeze(1)  # (B, 1, 4, H, W)
    return ((vals * wx).sum(3) * wy).sum(2)


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


def _centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1)),
            F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1)))


def _divergence(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence with v(-1) = 0 (OpenCV's ``divergence``)."""
    return v1 - F.pad(v1[:, :, :-1], (1, 0)) + v2 - F.pad(v2[:, :-1, :], (0, 0, 1, 0))


class TorchTVL1:
    """TV-L1 optical flow on a torch device, batched; OpenCV ``DualTVL1OpticalFlow`` semantics."""

    name = "torch"

    def __init__(self, params: TVL1Params = TVL1Params(), device: Union[str, torch.device] = "cpu"):
        if params.gamma != 0:
            raise ValueError("TorchTVL1 does not implement the illumination term (gamma must be 0)")
        self.params = params
        self.device = torch.device(device)

    # -- public API ------------------------------------------------------------------------
    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """One pair: (H, W) uint8 each -> (H, W, 2) float32 flow (dx, dy)."""
        return self.batch(prev[None], nxt[None])[0]

    def batch(self, prev: ArrayLike, nxt: ArrayLike) -> np.ndarray:
        """B pairs: (B, H, W) uint8 (or float 0..255) each -> (B, H, W, 2) float32."""
        i0, i1 = self._to_tensor(prev), self._to_tensor(nxt)
        if i0.shape != i1.shape or i0.dim() != 3:
            raise ValueError(f"expected two (B, H, W) stacks of the same shape, got "
                             f"{tuple(i0.shape)} and {tuple(i1.shape)}")
        with torch.no_grad():
            u1, u2 = self.flow(i0, i1)
        return torch.stack([u1, u2], dim=-1).cpu().numpy()

    def flow(self, i0: torch.Tensor, i1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float (B, H, W) images on the device (0..255) -> (u1, u2), each (B, H, W)."""
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
        for s in range(len(sizes) - 1, -1, -1):
            u1, u2 = self._one_scale(i0s[s], i1s[s], u1, u2)
            if s == 0:
                break
            (hs, ws), (hf, wf) = sizes[s], sizes[s - 1]
            sy, sx = 1.0 / (hf / hs), 1.0 / (wf / ws)
            factor = torch.tensor(1.0 / p.scale_step, dtype=torch.float32)
            u1 = _resize(u1, (hf, wf), sy, sx) * factor
            u2 = _resize(u2, (hf, wf), sy, sx) * factor
        return u1, u2

    # -- internals -------------------------------------------------------------------------
    def _to_tensor(self, x: ArrayLike) -> torch.Tensor:
        t = torch.as_tensor(x)
        return t.to(device=self.device, dtype=torch.float32)

    def _one_scale(self, i0, i1, u1, u2):
        """procOneScale: ``warps`` warpings of the outer/inner iterations at one pyramid level.

        Within a warping the pairs still iterating are kept compacted (a pair that converges is
        written back and dropped), so a converged pair costs nothing and is left untouched."""
        p = self.params
        b, h, w = i0.shape
        scaled_eps = p.epsilon * p.epsilon * h * w
        l_t = float(np.float32(p.lambda_ * p.theta))
        taut = float(np.float32(p.tau / p.theta))
        theta = float(np.float32(p.theta))

        i1x, i1y = _centered_gradient(i1)
        i1_stack = torch.stack([i1, i1x, i1y], dim=1)
        # state: u1, u2, p11, p12, p21, p22 (p zeroed once per level, as OpenCV)
        full = [u1, u2] + [torch.zeros_like(i0) for _ in range(4)]

        for _ in range(p.warps):
            warped = _remap_cubic(i1_stack, full[0], full[1])
            i1w, i1wx, i1wy = warped.unbind(1)
            grad = i1wx * i1wx + i1wy * i1wy
            rho_c = i1w - i1wx * full[0] - i1wy * full[1] - i0
            has_grad = grad > _FLT_EPSILON
            inv_grad = 1.0 / torch.where(has_grad, grad, torch.ones_like(grad))
            const = [i1wx, i1wy, rho_c, l_t * grad, has_grad, inv_grad]

            idx = torch.arange(b, device=i0.device)
            state = list(full)
            done = False
            for _ in range(p.outer_iterations):
                if p.median_filtering > 1:
                    state[0] = _median(state[0], p.median_filtering)
                    state[1] = _median(state[1], p.median_filtering)
                for _ in range(p.inner_iterations):
                    err = self._iterate(state, const, l_t, taut, theta)
                    converged = err <= scaled_eps
                    if bool(converged.any()):
                        keep = ~converged
                        self._write_back(full, state, idx, b)
                        if not bool(keep.any()):
                            done = True
                            break
                        idx = idx[keep]
                        state = [t[keep] for t in state]
                        const = [t[keep] for t in const]
                if done:
                    break
            if not done:
                self._write_back(full, state, idx, b)
        return full[0], full[1]

    @staticmethod
    def _write_back(full, state, idx, b):
        for k, t in enumerate(state):
            full[k] = t if len(idx) == b else full[k].index_copy(0, idx, t)

    @staticmethod
    def _iterate(state, const, l_t, taut, theta) -> torch.Tensor:
        """One inner iteration in place on ``state``; returns the per-pair sum of squared u updates."""
        u1, u2, p11, p12, p21, p22 = state
        i1wx, i1wy, rho_c, lt_grad, has_grad, inv_grad = const
        # thresholding step (TH) -> v
        rho = rho_c + (i1wx * u1 + i1wy * u2)
        fi = torch.where(rho < -lt_grad, l_t,
                         torch.where(rho > lt_grad, -l_t,
                                     torch.where(has_grad, -rho * inv_grad, 0.0)))
        v1 = u1 + fi * i1wx
        v2 = u2 + fi * i1wy
        # u = v + theta * div(p)
        n1 = v1 + theta * _divergence(p11, p12)
        n2 = v2 + theta * _divergence(p21, p22)
        d1, d2 = n1 - u1, n2 - u2
        err = (d1 * d1 + d2 * d2).sum(dim=(1, 2), dtype=torch.float64)
        # p = (p + taut * grad(u)) / (1 + taut * |grad(u)|)
        u1x, u1y = _forward_gradient(n1)
        u2x, u2y = _forward_gradient(n2)
        ng1 = 1.0 + taut * torch.hypot(u1x, u1y)
        ng2 = 1.0 + taut * torch.hypot(u2x, u2y)
        state[:] = [n1, n2, (p11 + taut * u1x) / ng1, (p12 + taut * u1y) / ng1,
                    (p21 + taut * u2x) / ng2, (p22 + taut * u2y) / ng2]
        return err
