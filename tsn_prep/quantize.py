"""Flow <-> 8-bit images, the TSN way.

Flow is clipped to [-bound, bound] px and mapped linearly onto 0..255 with rounding, so zero motion
lands on 128 (127.5 rounded half up), not on 127 as in mmaction2's flooring CPU script.
"""
from __future__ import annotations

import numpy as np


def quantize(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Map float flow (any shape) to uint8: ``q = round(255 * (clip(v) + bound) / (2 * bound))``.

    Rounding is half-up (``floor(x + 0.5)``) rather than numpy's half-to-even, so that zero motion,
    which falls exactly on 127.5, is 128 as in the reference tools.
    """
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    v = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    q = np.floor(255.0 * (v + bound) / (2.0 * bound) + 0.5)
    return q.astype(np.uint8)


def dequantize(q: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Inverse of :func:`quantize` up to its step of ``2 * bound / 255`` px: uint8 -> float32 px."""
    return (np.asarray(q, dtype=np.float32) * (2.0 * bound / 255.0) - bound).astype(np.float32)
