"""Flow <-> 8-bit images, the TSN way, bit for bit as dense_flow and denseflow write them.

The reference tools (dense_flow's and denseflow's ``convertFlowToImage``) map a float32 flow value
``v`` with ``v > bound -> 255``, ``v < -bound -> 0``, else ``cvRound(255 * (v + bound) / (2 * bound))``
evaluated in double precision; ``cvRound`` rounds half to even. Zero motion lands on 127.5, which
rounds to 128 (mmaction2's CPU script floors instead and writes 127).
"""
from __future__ import annotations

import numpy as np

# The reference tools' flow bound (px): extraction's default, and what a record without one used.
BOUND = 20.0


def quantize(flow: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """Map float flow (any shape) to uint8 exactly as the reference tools do (see module doc).

    The arithmetic is done in float64 on the float32 value, in the reference's order
    (``255 * (v - L) / (H - L)``), and ``np.rint`` rounds half to even like ``cvRound``. Computing
    in float32, or rounding half up, changes about 0.015% of real flow values by one level.
    """
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    lo, hi = -float(bound), float(bound)
    v = np.asarray(flow, dtype=np.float32).astype(np.float64)
    # Clipping first is exact: a value beyond the bound maps to exactly 0 or 255 either way.
    q = np.rint(255.0 * (np.clip(v, lo, hi) - lo) / (hi - lo))
    # NaN (never produced by TV-L1) would be undefined in the cast; call it zero motion.
    return np.nan_to_num(q, nan=128.0).astype(np.uint8)


def quantize_tensor(flow, bound: float = BOUND):
    """:func:`quantize` for a torch tensor on its own device (CPU or CUDA): the same bytes, from
    the same float64 arithmetic (IEEE on both), ``torch.round`` rounding half to even like
    ``np.rint``. The GPU solver quantises before copying flows to the host: a quarter of the
    bytes to copy, and no quantisation left for the host's threads."""
    import torch

    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    lo, hi = -float(bound), float(bound)
    q = torch.round(255.0 * (flow.to(torch.float64).clamp(lo, hi) - lo) / (hi - lo))
    return torch.nan_to_num(q, nan=128.0).to(torch.uint8)


def dequantize(q: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """Inverse of :func:`quantize` up to its step of ``2 * bound / 255`` px: uint8 -> float32 px."""
    return (np.asarray(q, dtype=np.float32) * (2.0 * bound / 255.0) - bound).astype(np.float32)
