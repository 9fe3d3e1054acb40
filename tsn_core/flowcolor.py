"""The flow colours of every picture of flow: the Middlebury colour wheel (hue = direction,
saturation = speed) on a FIXED scale, full saturation at a given bound in px, so the same motion
has the same colour in every video of a store. Pure NumPy."""
from __future__ import annotations

import numpy as np


def make_colorwheel() -> np.ndarray:
    """The Middlebury flow colour wheel, (55, 3) uint8 RGB: 55 hues, red -> yellow (15), yellow ->
    green (6), green -> cyan (4), cyan -> blue (11), blue -> magenta (13), magenta -> red (6).

    From Baker et al., "A Database and Evaluation Methodology for Optical Flow" (ICCV 2007) and
    its ``flowToColor.m``, as torchvision.utils.flow_to_image draws it (its private
    ``_make_colorwheel``, re-implemented here in NumPy, value for value).
    """
    wheel = []
    for n, start, ramp in ((15, (255, 0, 0), (0, 1, 0)), (6, (255, 255, 0), (-1, 0, 0)),
                           (4, (0, 255, 0), (0, 0, 1)), (11, (0, 255, 255), (0, -1, 0)),
                           (13, (0, 0, 255), (1, 0, 0)), (6, (255, 0, 255), (0, 0, -1))):
        for i in range(n):
            step = np.floor(255 * i / n)
            wheel.append([s + r * step for s, r in zip(start, ramp)])
    return np.array(wheel, dtype=np.uint8)


_WHEEL = make_colorwheel().astype(np.float32) / 255.0


def flow_colors(fx: np.ndarray, fy: np.ndarray, bound: float) -> np.ndarray:
    """Flow (px, any equal shapes) -> uint8 RGB, shape + (3,), on a fixed scale.

    The colour computation is torchvision.utils.flow_to_image's (the Middlebury wheel, see
    :func:`make_colorwheel`; hue from ``atan2(-fy, -fx)``, interpolated between wheel entries,
    then blended towards white), except for the radius: torchvision divides by the largest
    magnitude in the field, here it is ``|v| / bound`` clipped to 1. Zero motion is white, motion
    of ``bound`` px or more fully saturated (``+bound`` along x: the wheel's first colour, red).
    """
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    fx = np.asarray(fx, dtype=np.float32)
    fy = np.asarray(fy, dtype=np.float32)
    radius = np.minimum(np.sqrt(fx * fx + fy * fy) / np.float32(bound), 1.0)
    angle = np.arctan2(-fy, -fx) / np.float32(np.pi)
    fk = (angle + 1) / 2 * (len(_WHEEL) - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = np.where(k0 + 1 == len(_WHEEL), 0, k0 + 1)
    f = (fk - k0)[..., None]
    col = (1 - f) * _WHEEL[k0] + f * _WHEEL[k1]
    col = 1 - radius[..., None] * (1 - col)
    return np.floor(255 * col).astype(np.uint8)
