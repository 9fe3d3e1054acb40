"""TSN checkpoints of other tools, turned into tsn-train checkpoints.

Two layouts are read, from their documented key names (the files load code-free, as every
checkpoint here does):

- **mmaction2** (0.x and 1.x): a ``Recognizer2D`` with a ResNet-50/101 ``backbone`` (``ConvModule``
  blocks: ``conv1.conv``, ``conv1.bn``, ``layerI.J.convK.conv``, ``downsample.conv``) and a
  ``TSNHead`` (``cls_head.fc_cls``); RGB (3 input channels) or flow (10: x0, y0, ..., x4, y4).
  Its input: RGB in 0-255, ImageNet mean and std in 0-255 units; flow minus 128, over 128.
- **tsn-pytorch** (yjxiong): ``base_model`` a BN-Inception in the layout ``tsn_train.models.
  bn_inception`` shares, and ``new_fc`` (or ``base_model.fc`` when it trained without dropout);
  RGB (3), flow (10) or RGB difference (15). Its input: BGR in 0-255 minus 104, 117, 128; flow
  minus 128; differences as they are.

The input a source expects travels in the checkpoint (:class:`~tsn_train.transforms.InputNorm`),
so test, predict and features give the source's scores on the same frames.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from tsn_core import modalities

from .safe_load import RefusedFile, UnreadableFile, load_plain
from .transforms import InputNorm

MMACTION2 = InputNorm(False, 1.0, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 128.0, 128.0, 1.0)
TSN_PYTORCH = InputNorm(True, 1.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), 128.0, 1.0, 1.0)

SUPPORTED = ("mmaction2 TSN (Recognizer2D, ResNet-50/101 backbone, TSNHead; RGB or flow) or "
             "tsn-pytorch TSN (BN-Inception; RGB, RGB difference or flow)")


class ZooError(ValueError):
    """A file that is not a checkpoint of a supported layout: one line, what was found."""


@dataclass(frozen=True)
class ZooModel:
    """A source checkpoint in tsn-train's terms: a TSN state dict and what its input must be."""

    source: str                    # "mmaction2" or "tsn-pytorch"
    arch: str                      # a tsn_train.archs name
    modality: str
    num_classes: int
    model: dict                    # state dict of tsn_train.models.tsn.TSN (base.*, fc.*)
    norm: InputNorm
    classes: Optional[list[str]]   # from the checkpoint's own metadata, when it has them


def read_state(path: Path) -> tuple[dict, dict]:
    """The state dict of tensors in ``path`` (without a DataParallel ``module.`` prefix) and the
    checkpoint's other top-level entries."""
    try:
        obj = load_plain(Path(path))
    except RefusedFile as exc:
        raise ZooError(str(exc)) from None
    except UnreadableFile as exc:
        raise ZooError(f"{path}: unreadable checkpoint ({exc.reason})") from None
    if not isinstance(obj, dict):
        raise ZooError(f"{path}: holds a {type(obj).__name__}, not a checkpoint; supported: {SUPPORTED}")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZooError(f"{path}: holds no state dict of tensors; supported: {SUPPORTED}")
    rest = {k: v for k, v in obj.items() if k != "state_dict"} if "state_dict" in obj else {}
    return {k.removeprefix("module."): v for k, v in state.items()}, rest


def _first_conv_modality(path: Path, weight: torch.Tensor, allowed: dict[int, str],
                         modality: Optional[str]) -> str:
    if weight.dim() != 4:
        raise ZooError(f"{path}: its first convolution has a {weight.dim()}-D weight (a 3D model?); "
                       f"supported: {SUPPORTED}")
    channels = weight.shape[1]
    if channels not in allowed:
        raise ZooError(f"{path}: its first convolution reads {channels} channels; this layout is "
                       f"supported with {', '.join(f'{c} ({m})' for c, m in allowed.items())}")
    found = allowed[channels]
    if modality is None:
        return found
    if modalities.get(modality).input_channels != channels:
        raise ZooError(f"{path}: its first convolution reads {channels} channels ({found}), not the "
                       f"{modalities.get(modality).input_channels} of {modality}")
    return modality


_MM_BLOCK = re.compile(r"backbone\.(layer\d+\.\d+)\.(conv(\d)|downsample)\.(conv|bn)\.(.+)")


def _mmaction2_key(key: str) -> Optional[str]:
    """Our TSN's name for an mmaction2 TSN key (None: not a key of the supported layout)."""
    if key.startswith("cls_head.fc_cls."):
        return "fc." + key.removeprefix("cls_head.fc_cls.")
    m = re.fullmatch(r"backbone\.conv1\.(conv|bn)\.(.+)", key)
    if m:
        return f"base.{'conv1' if m[1] == 'conv' else 'bn1'}.{m[2]}"
    m = _MM_BLOCK.fullmatch(key)
    if not m:
        return None
    block, part, k, kind, rest = m.groups()
    if part == "downsample":
        return f"base.{block}.downsample.{0 if kind == 'conv' else 1}.{rest}"
    return f"base.{block}.{'conv' if kind == 'conv' else 'bn'}{k}.{rest}"


def _mmaction2_classes(rest: dict) -> Optional[list[str]]:
    meta = rest.get("meta") if isinstance(rest.get("meta"), dict) else {}
    dataset = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    names = dataset.get("classes") or meta.get("CLASSES")
    return [str(n) for n in names] if isinstance(names, (list, tuple)) and names else None


def from_mmaction2(path: Path, state: dict, rest: dict, modality: Optional[str]) -> ZooModel:
    blocks = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    depth = {6: "resnet50", 23: "resnet101"}.get(len(blocks))
    if depth is None or "backbone.layer1.0.conv3.conv.weight" not in state:
        raise ZooError(f"{path}: an mmaction2 backbone with {len(blocks)} blocks in layer3"
                       f"{'' if 'backbone.layer1.0.conv3.conv.weight' in state else ' and no bottlenecks'}; "
                       f"supported: {SUPPORTED}")
    if "cls_head.fc_cls.weight" not in state:
        raise ZooError(f"{path}: an mmaction2 backbone without a TSNHead (no cls_head.fc_cls); "
                       f"supported: {SUPPORTED}")
    modality = _first_conv_modality(path, state["backbone.conv1.conv.weight"],
                                    {3: "rgb", 10: "flow"}, modality)
    model, unknown = {}, []
    for k, v in state.items():
        ours = _mmaction2_key(k)
        if ours is None:
            unknown.append(k)
        else:
            model[ours] = v
    if unknown:
        raise ZooError(f"{path}: {len(unknown)} keys outside the mmaction2 TSN layout "
                       f"({', '.join(unknown[:3])}); supported: {SUPPORTED}")
    return ZooModel("mmaction2", depth, modality, state["cls_head.fc_cls.weight"].shape[0], model,
                    MMACTION2, _mmaction2_classes(rest))


def from_tsn_pytorch(path: Path, state: dict, rest: dict, modality: Optional[str]) -> ZooModel:
    if "base_model.conv1_7x7_s2.weight" not in state:
        raise ZooError(f"{path}: a tsn-pytorch base model other than BN-Inception "
                       f"(arch {rest.get('arch', 'unknown')!r}); supported: {SUPPORTED}")
    fc = "new_fc" if "new_fc.weight" in state else "base_model.fc"
    if f"{fc}.weight" not in state:
        raise ZooError(f"{path}: a tsn-pytorch BN-Inception without its classifier (no new_fc); "
                       f"supported: {SUPPORTED}")
    modality = _first_conv_modality(path, state["base_model.conv1_7x7_s2.weight"],
                                    {3: "rgb", 10: "flow", 15: "rgbdiff"}, modality)
    model = {}
    for k, v in state.items():
        if k.startswith(fc + "."):
            model["fc." + k.removeprefix(fc + ".")] = v
        elif k.startswith("base_model."):
            if v.dim() == 2 and v.shape[0] == 1 and "_bn." in k:  # Caffe-converted BN vectors [1, C]
                v = v[0]
            model["base." + k.removeprefix("base_model.")] = v
        else:
            raise ZooError(f"{path}: key {k} is outside the tsn-pytorch TSN layout; supported: {SUPPORTED}")
    return ZooModel("tsn-pytorch", "bn_inception", modality, state[f"{fc}.weight"].shape[0], model,
                    TSN_PYTORCH, None)


def is_zoo(state: dict) -> bool:
    """Keys of one of the layouts read here (not a plain backbone's)."""
    return any(k.startswith(("backbone.", "base_model.")) for k in state)


def read_zoo(path: Path, modality: Optional[str] = None) -> ZooModel:
    """The checkpoint at ``path`` in tsn-train's terms; ``modality`` picks among those with the
    same input channels (flow or warped_flow). A :class:`ZooError` line otherwise."""
    state, rest = read_state(path)
    return from_state(path, state, rest, modality)


def from_state(path: Path, state: dict, rest: dict, modality: Optional[str] = None) -> ZooModel:
    """:func:`read_zoo` of a state dict already read from ``path``."""
    if any(k.startswith("backbone.") for k in state):
        return from_mmaction2(path, state, rest, modality)
    if any(k.startswith("base_model.") for k in state):
        return from_tsn_pytorch(path, state, rest, modality)
    raise ZooError(f"{path}: neither layout (first keys: {', '.join(list(state)[:3])}); "
                   f"supported: {SUPPORTED}")
