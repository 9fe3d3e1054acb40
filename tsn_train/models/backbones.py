"""Backbone factory: an ImageNet architecture with its classifier removed, returning pooled features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torchvision
from torch import nn

from .bn_inception import bn_inception


@dataclass(frozen=True)
class Arch:
    build: Callable[[], nn.Module]
    classifier: str      # attribute holding the ImageNet classifier (dropped; TSN adds its own)
    feature_dim: int
    norm: str            # key of tsn_train.transforms.NORMS the ImageNet weights expect
    input_size: int
    extra: tuple[str, ...] = ()  # weight-file prefixes of heads we do not build


def _tv(name: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, **kwargs)


ARCHS = {
    "bn_inception": Arch(bn_inception, "last_linear", 1024, "caffe_bgr", 224),
    "resnet18": Arch(_tv("resnet18"), "fc", 512, "imagenet", 224),
    "resnet34": Arch(_tv("resnet34"), "fc", 512, "imagenet", 224),
    "resnet50": Arch(_tv("resnet50"), "fc", 2048, "imagenet", 224),
    "resnet101": Arch(_tv("resnet101"), "fc", 2048, "imagenet", 224),
    "resnet152": Arch(_tv("resnet152"), "fc", 2048, "imagenet", 224),
    # aux_logits off: TSN trains on the consensus only; transform_input off: we normalise ourselves.
    "inception_v3": Arch(_tv("inception_v3", aux_logits=False, init_weights=False,
                             transform_input=False), "fc", 2048, "imagenet", 299, ("AuxLogits.",)),
}


def build_backbone(arch: str) -> nn.Module:
    """The architecture with randomly initialised weights and its classifier kept (for loading)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[arch].build()


def strip_classifier(model: nn.Module, arch: str) -> nn.Module:
    """Replace the ImageNet classifier by identity, so the model returns pooled features."""
    setattr(model, ARCHS[arch].classifier, nn.Identity())
    return model
