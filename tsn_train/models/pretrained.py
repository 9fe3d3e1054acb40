"""Loading ImageNet weights from a local file (nothing is downloaded at run time)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import zoo
from ..archs import Arch, PretrainedError
from ..safe_load import RefusedFile, UnreadableFile, load_plain

__all__ = ["PretrainedError", "load_pretrained", "read_state_dict"]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: a bare state dict, or one under ``state_dict``/``model``; a
    ``module.`` prefix left by DataParallel is removed."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"{path}: no such weights file (download it first; tsn never "
                              "downloads at run time)")
    try:
        obj = load_plain(path)
    except RefusedFile as exc:
        raise PretrainedError(str(exc)) from None
    except UnreadableFile as exc:  # empty, truncated, random bytes: one line, no PyTorch advice
        why = exc.reason.removeprefix("not a PyTorch file: ")
        raise PretrainedError(f"{path}: not a PyTorch weights file ({why})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def zoo_backbone(path: Path, state: dict, arch: Arch) -> dict[str, torch.Tensor]:
    """The backbone of a TSN from the zoos (``tsn_train.zoo``: mmaction2, tsn-pytorch), keyed as
    ``arch``'s backbone; its classifier is left out (a new run has classes of its own)."""
    try:
        found = zoo.from_state(path, state, {})
    except zoo.ZooError as exc:
        raise PretrainedError(str(exc)) from None
    if found.arch != arch.name:
        raise PretrainedError(f"{path}: holds a {found.arch} TSN of {found.source}, not a {arch.name} backbone: "
                              f"give --arch {found.arch}")
    return {k.removeprefix("base."): v for k, v in found.model.items() if k.startswith("base.")}


def load_pretrained(model: nn.Module, path: Path, arch: Arch) -> Optional[torch.Tensor]:
    """Load ImageNet weights into the backbone ``model`` of ``arch`` (its ImageNet classifier still
    attached, first conv still RGB) and check they fit.

    The file may also be a TSN of the zoos (mmaction2, tsn-pytorch; ``tsn_train.zoo``): its
    backbone is loaded. When its first convolution is not RGB's (a flow or RGB-difference
    model), that weight is returned instead of loaded: the TSN puts it in place of the
    cross-modality one (``build_tsn``).

    The classifier's weights are loaded too but TSN replaces it. BatchNorm's
    ``num_batches_tracked`` may be absent (older files, e.g. bn_inception-52deb4733.pth). Keys
    under the ``extra`` prefixes (heads the model does not build, e.g. Inception-v3's auxiliary
    classifier) are skipped.
    """
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(arch.extra)}
    if zoo.is_zoo(state):
        state = zoo_backbone(path, state, arch)
    own = model.state_dict()
    key, first = f"{arch.first_conv}.weight", None
    if key in state and state[key].dim() == 4 and state[key].shape[1] != own[key].shape[1]:
        first = state.pop(key)  # a flow or RGB-difference model's: build_tsn puts it in place
    for k, v in state.items():
        # Some converted Caffe files (tsn-pytorch's BN-Inception) store BN vectors as [1, C].
        if k in own and v.dim() == 2 and v.shape[0] == 1 and own[k].shape == v.shape[1:]:
            state[k] = v[0]
    wrong = [f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})"
             for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise PretrainedError(f"{path}: {len(wrong)} tensors have the wrong shape for this "
                              f"architecture: {', '.join(wrong[:3])}")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not k.startswith(arch.classifier + ".")
               and not (first is not None and k == key)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])})")
        raise PretrainedError(f"{path}: does not match the architecture: {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)
    return first
