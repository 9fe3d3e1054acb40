"""Backbone architectures and consensus names, as plain data: importing this module imports no torch.

The command line reads names and default input sizes from here, so ``tsn-train --help`` stays
instant; ``tsn_train.models`` builds the networks (``Arch.build`` imports the builder lazily).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


class PretrainedError(Exception):
    """A weights file is missing, unreadable, or does not fit the architecture."""


@dataclass(frozen=True)
class Arch:
    """One ImageNet backbone: how to build it, where its parts are, what input it expects."""

    name: str
    builder: str                  # "module:function" returning the network, classifier attached
    kwargs: dict[str, Any]        # keyword arguments of the builder
    classifier: str               # attribute holding the ImageNet classifier (TSN replaces it)
    feature_dim: int              # width of the pooled features the classifier reads
    first_conv: str               # module name of the convolution reading the image (cross-modality init)
    first_bn: str                 # module name of the BatchNorm partial BN keeps training
    norm: str                     # key of tsn_train.transforms.NORMS the ImageNet weights expect
    input_size: int               # default crop side
    extra: tuple[str, ...] = field(default=())  # weight-file prefixes of heads we do not build

    def build(self):
        """The backbone with random weights and its ImageNet classifier (imports torch)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(**self.kwargs)


def _resnet(name: str, feature_dim: int) -> Arch:
    return Arch(name, f"torchvision.models:{name}", {"weights": None}, "fc", feature_dim,
                "conv1", "bn1", "imagenet", 224)


ARCHS: dict[str, Arch] = {
    "bn_inception": Arch("bn_inception", "tsn_train.models.bn_inception:bn_inception", {},
                         "last_linear", 1024, "conv1_7x7_s2", "conv1_7x7_s2_bn", "caffe_bgr", 224),
    **{a.name: a for a in (_resnet("resnet18", 512), _resnet("resnet34", 512),
                           _resnet("resnet50", 2048), _resnet("resnet101", 2048),
                           _resnet("resnet152", 2048))},
    # aux_logits off: TSN trains on the consensus only; transform_input off: we normalise ourselves.
    "inception_v3": Arch("inception_v3", "torchvision.models:inception_v3",
                         {"weights": None, "aux_logits": False, "init_weights": False,
                          "transform_input": False},
                         "fc", 2048, "Conv2d_1a_3x3.conv", "Conv2d_1a_3x3.bn", "imagenet", 299,
                         ("AuxLogits.",)),
}

# Segmental consensus functions (built by tsn_train.consensus.make_consensus).
CONSENSUS = ("average", "max", "weighted", "topk", "attention")


def get(name: str) -> Arch:
    """The architecture ``name``; a ValueError listing the known ones otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHS)}") from None
