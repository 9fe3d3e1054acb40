"""Segmental consensus G: combine K snippet score vectors into one video score (TSN, TPAMI).

Every module maps ``scores (N, K, C)`` (and, for attention, the snippets' pooled features
``(N, K, D)``) to ``(N, C)``. All are differentiable; max and top-k pass sub-gradients to the
snippets they selected.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .archs import CONSENSUS

__all__ = ["CONSENSUS", "Attention", "Average", "Max", "TopK", "Weighted", "make_consensus"]


class Average(nn.Module):
    def forward(self, scores: Tensor, features: Optional[Tensor] = None) -> Tensor:
        return scores.mean(dim=1)


class Max(nn.Module):
    def forward(self, scores: Tensor, features: Optional[Tensor] = None) -> Tensor:
        return scores.amax(dim=1)


class Weighted(nn.Module):
    """``G = sum_k w_k F_k`` with one learned weight per segment position, starting at 1/K."""

    def __init__(self, segments: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((segments,), 1.0 / segments))

    def forward(self, scores: Tensor, features: Optional[Tensor] = None) -> Tensor:
        if scores.shape[1] != self.weight.shape[0]:
            raise ValueError(f"weighted consensus was built for {self.weight.shape[0]} segments, "
                             f"got {scores.shape[1]}; use average consensus to test with other counts")
        return torch.einsum("nkc,k->nc", scores, self.weight)


class TopK(nn.Module):
    """Per class, the mean of the ``k`` largest snippet scores (``k`` capped at K)."""

    def __init__(self, k: int):
        super().__init__()
        if k < 1:
            raise ValueError(f"top-k consensus needs k >= 1, got {k}")
        self.k = k

    def forward(self, scores: Tensor, features: Optional[Tensor] = None) -> Tensor:
        k = min(self.k, scores.shape[1])
        return scores.topk(k, dim=1).values.mean(dim=1)


class Attention(nn.Module):
    """``A_k = softmax_k(w . R(T_k))`` from each snippet's features R; ``G = sum_k A_k F_k``."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.attend = nn.Linear(feature_dim, 1)
        nn.init.zeros_(self.attend.weight)  # start as the average, learn away from it
        nn.init.zeros_(self.attend.bias)

    def weights(self, features: Tensor) -> Tensor:
        return torch.softmax(self.attend(features).squeeze(-1), dim=1)

    def forward(self, scores: Tensor, features: Optional[Tensor] = None) -> Tensor:
        if features is None:
            raise ValueError("attention consensus needs the snippets' features")
        return torch.einsum("nkc,nk->nc", scores, self.weights(features))


def make_consensus(name: str, segments: int, feature_dim: int, topk: int = 2) -> nn.Module:
    """Build consensus ``name`` (one of CONSENSUS)."""
    if name == "average":
        return Average()
    if name == "max":
        return Max()
    if name == "weighted":
        return Weighted(segments)
    if name == "topk":
        return TopK(topk)
    if name == "attention":
        return Attention(feature_dim)
    raise ValueError(f"unknown consensus {name!r}; choose from {', '.join(CONSENSUS)}")
