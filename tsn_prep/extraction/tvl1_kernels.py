"""The inner loop of the PyTorch TV-L1 as interchangeable kernels, registered by name the way timm
registers architectures: each kernel module defines one class behind the small ``LevelKernel``
interface and registers it with ``@register_kernel("name")``; ``TorchTVL1`` asks
``create_kernel`` for the one its ``kernel`` names, passing on that kernel's own options.

Kernels: "torch" (``tvl1_kernel_torch``: the iteration as torch functions, compiled or eager),
"triton" (``tvl1_triton``: hand-written Triton u and p kernels, CUDA graphs) and "tiles"
(``tvl1_tiles``: several iterations per launch on a tile; never yet run on a GPU)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from .tvl1_params import TVL1Params

MAX_LEVELS = 16  # level buffers a kernel keeps: 5 levels x a few batch sizes


@dataclass(frozen=True)
class LevelConstants:
    """One pyramid level's float32 constants, as the torch iteration uses them: lambda*theta,
    tau/theta, theta, and the stopping threshold epsilon^2 * H * W."""
    l_t: float
    taut: float
    theta: float
    scaled_eps: float


@dataclass(frozen=True)
class Iteration:
    """What ``TorchTVL1`` gives every kernel: its (compiled or eager) torch functions -- the
    warping's constants ``warp(i1_stack, i0, u1, u2, l_t)``, the masked median
    ``median(u1, u2, active, k)``, one inner iteration ``step(...)`` -- and how often the host
    looks whether every pair has stopped."""
    warp: Callable
    median: Callable
    step: Callable
    sync_every: int


class LevelKernel(Protocol):
    """Runs one pyramid level of TV-L1 (OpenCV's procOneScale) for a batch."""

    # the bicubic warp this kernel computes, where it has its own ("gather": written out as
    # cv::remap); None: the solver's ``remap`` option
    remap: Optional[str]
    # the buffers it keeps per level shape (B, H, W), e.g. ``TritonLevel``s
    levels: dict

    def run(self, i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
            consts: LevelConstants) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``warps`` warpings of the outer and inner iterations on (B, H, W) images from the flow
        (u1, u2): the new (u1, u2) and each pair's inner-iteration count per warping (B, warps)."""


KernelFactory = Callable[..., LevelKernel]
"""``(params, device, iteration, **options) -> LevelKernel``; ``options`` are the kernel's own."""

_REGISTRY: dict[str, KernelFactory] = {}


def register_kernel(name: str) -> Callable[[KernelFactory], KernelFactory]:
    """Class decorator: the kernel ``TorchTVL1(kernel=name)`` runs."""
    def register(factory: KernelFactory) -> KernelFactory:
        _REGISTRY[name] = factory
        return factory
    return register


def kernel_names() -> tuple[str, ...]:
    """The registered kernels, in registration order."""
    return tuple(_REGISTRY)


def create_kernel(name: str, params: TVL1Params, device: torch.device, iteration: Iteration,
                  **options) -> LevelKernel:
    """The kernel registered as ``name`` for ``params`` on ``device``; ``options`` are its own
    (e.g. "triton"'s ``graphs``, "tiles"' ``tile_iterations``)."""
    return _REGISTRY[name](params, device, iteration, **options)


class LevelCache:
    """Buffers (and CUDA graphs) per level shape (B, H, W), kept for the next batches of the same
    shape; the least recently used go beyond ``MAX_LEVELS``."""

    def __init__(self, make: Callable[[int, int, int, LevelConstants], object]):
        self.make = make
        self.levels: dict = {}

    def get(self, b: int, h: int, w: int, consts: LevelConstants):
        key = (b, h, w)
        level = self.levels.pop(key, None)
        if level is None:
            level = self.make(b, h, w, consts)
        self.levels[key] = level
        while len(self.levels) > MAX_LEVELS:
            self.levels.pop(next(iter(self.levels)))
        return level
