"""Models: backbones (BN-Inception, torchvision ResNet / Inception-v3) and the TSN wrapper.

Importing this package does not import torch: the architecture table and the weights error come
from ``tsn_train.archs``, and the network code loads on first use of ``TSN``, ``build_tsn``, ...
"""
from __future__ import annotations

import importlib

from ..archs import ARCHS, Arch, PretrainedError

_LAZY = {"TSN": "tsn", "build_tsn": "tsn", "build_model": "tsn",
         "load_pretrained": "pretrained", "read_state_dict": "pretrained"}

__all__ = ["ARCHS", "Arch", "PretrainedError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
