"""The "torch" kernel: TV-L1's iterations as the solver's torch functions (compiled or eager),
every pair of a batch kept in fixed-shape tensors and frozen by a mask once it has stopped."""
from __future__ import annotations

from typing import Optional

import torch

from .tvl1_kernels import Iteration, LevelConstants, register_kernel
from .tvl1_params import TVL1Params


@register_kernel("torch")
class TorchKernel:
    """procOneScale with the torch iteration: a pair stops (is frozen by the mask) when OpenCV's
    would; the host reads the mask every ``sync_every`` iterations to leave once all stopped."""

    remap: Optional[str] = None

    def __init__(self, params: TVL1Params, device: torch.device, iteration: Iteration):
        self.params, self.it = params, iteration
        self.levels: dict = {}  # no buffers of its own: every tensor is made per batch

    def run(self, i1_stack: torch.Tensor, i0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
            consts: LevelConstants) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p, it = self.params, self.it
        b = i0.shape[0]
        l_t, taut, theta, scaled_eps = consts.l_t, consts.taut, consts.theta, consts.scaled_eps
        total = p.outer_iterations * p.inner_iterations
        # p zeroed once per level, as OpenCV
        state = (u1, u2) + tuple(torch.zeros_like(i0) for _ in range(4))
        counts = []
        for _ in range(p.warps):
            const = it.warp(i1_stack, i0, state[0], state[1], l_t)
            active = torch.ones(b, dtype=torch.bool, device=i0.device)
            count = torch.zeros(b, dtype=torch.int32, device=i0.device)
            for k in range(total):
                if k % p.inner_iterations == 0 and p.median_filtering > 1:
                    m1, m2 = it.median(state[0], state[1], active, p.median_filtering)
                    state = (m1, m2) + state[2:]
                out = it.step(*state, *const, active, count, l_t, taut, theta, scaled_eps)
                state, active, count = out[:6], out[6], out[7]
                if (k + 1) % it.sync_every == 0 and not bool(active.any()):
                    break
            counts.append(count)
        return state[0], state[1], torch.stack(counts, dim=1)  # counts (B, warps)
