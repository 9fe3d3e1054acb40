"""The TSN network: a shared backbone scores K snippets, a consensus combines them.

``build_tsn`` builds one (timm style): backbone, optional ImageNet weights, then the TSN changes
(classifier removed, first conv adapted to the modality, new classifier, consensus). Only the
weight loader (``models/pretrained.py``) reads files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from tsn_core import modalities

from .. import archs
from ..archs import PretrainedError
from ..consensus import make_consensus
from .pretrained import load_pretrained


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def cross_modality_conv(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``channels`` inputs, each with the mean of its RGB filters
    (TSN's cross-modality initialisation); the bias is kept."""
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.expand(-1, channels, -1, -1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


class TSN(nn.Module):
    """Temporal Segment Network for one modality around ``base``, a backbone of architecture
    ``arch`` with its ImageNet classifier and RGB first conv (random or ImageNet weights).

    Input ``(N, K, C, H, W)``: K snippets per video. Output ``(N, classes)``: the consensus of the
    snippet scores, before softmax (cross-entropy applies to it, as in the paper).
    """

    def __init__(self, base: nn.Module, arch: str, num_classes: int, modality: str,
                 segments: int = 3, consensus: str = "average", dropout: float = 0.8,
                 partial_bn: bool = True, topk: int = 2):
        super().__init__()
        spec = archs.get(arch)
        self.modality, self.arch, self.segments = modality, arch, segments
        self.partial_bn = partial_bn
        self.first_conv, self.first_bn = spec.first_conv, spec.first_bn
        setattr(base, spec.classifier, nn.Identity())  # the backbone now returns pooled features
        self.base = base
        channels = modalities.get(modality).input_channels
        conv = base.get_submodule(spec.first_conv)
        if channels != conv.in_channels:
            _set_module(base, spec.first_conv, cross_modality_conv(conv, channels))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(spec.feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.001)  # as TSN: a new classifier starts near zero
        nn.init.zeros_(self.fc.bias)
        self.consensus = make_consensus(consensus, segments, spec.feature_dim, topk)
        if partial_bn:
            for bn in self.frozen_bns():
                for p in bn.parameters():
                    p.requires_grad_(False)

    def frozen_bns(self) -> list[nn.Module]:
        """Every BatchNorm except the first: partial BN freezes their statistics and affine."""
        bns = [m for n, m in self.base.named_modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and n != self.first_bn]
        return bns if self.partial_bn else []

    def train(self, mode: bool = True) -> "TSN":
        super().train(mode)
        if mode:
            for bn in self.frozen_bns():
                bn.eval()
        return self

    def snippet_scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(M, C, H, W)`` snippets -> class scores ``(M, classes)`` and pooled features."""
        features = self.base(x)
        return self.fc(self.dropout(features)), features

    def forward(self, x: Tensor) -> Tensor:
        n, k = x.shape[:2]
        scores, features = self.snippet_scores(x.flatten(0, 1))
        return self.consensus(scores.view(n, k, -1), features.view(n, k, -1))


def build_tsn(num_classes: int, modality: str, arch: str = "bn_inception", segments: int = 3,
              consensus: str = "average", dropout: float = 0.8, partial_bn: bool = True,
              topk: int = 2, pretrained: Optional[Path] = None) -> TSN:
    """A TSN with a randomly initialised backbone, or with the ImageNet weights in ``pretrained``.

    The weights go into the RGB backbone before TSN adapts its first conv: cross-modality
    initialisation averages the *pretrained* RGB filters. A pretrained first conv of another
    modality (a zoo's flow TSN) replaces the adapted one when it reads the same channels.
    """
    spec = archs.get(arch)
    base = spec.build()
    first = load_pretrained(base, Path(pretrained), spec) if pretrained is not None else None
    tsn = TSN(base, arch, num_classes, modality, segments, consensus, dropout, partial_bn, topk)
    if first is not None:
        conv = tsn.base.get_submodule(spec.first_conv)
        if conv.weight.shape != first.shape:
            raise PretrainedError(f"{pretrained}: its first convolution reads {first.shape[1]} channels; "
                                  f"a {modality} stream reads {conv.weight.shape[1]}")
        with torch.no_grad():
            conv.weight.copy_(first)
    return tsn


def build_model(cfg, num_classes: int, pretrained: Optional[Path] = None) -> TSN:
    """The TSN a training configuration (a FitConfig) describes; fit and checkpoints use this."""
    return build_tsn(num_classes, cfg.modality, cfg.arch, cfg.segments, cfg.consensus,
                     cfg.dropout, cfg.partial_bn, cfg.topk, pretrained)
