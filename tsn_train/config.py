"""Training settings: built-in defaults per modality, shipped presets, and command-line overrides."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Optional

MODALITIES = ("rgb", "rgbdiff", "flow", "warped_flow")


@dataclass
class FitConfig:
    modality: str
    store: str
    train_list: str
    out: str
    val_list: Optional[str] = None
    classes: Optional[str] = None
    num_classes: Optional[int] = None
    arch: str = "bn_inception"
    pretrained: Optional[str] = None
    consensus: str = "average"
    topk: int = 2
    segments: int = 3
    dropout: float = 0.8
    partial_bn: bool = True
    input_size: Optional[int] = None          # None: the architecture's (224, or 299 for Inception-v3)
    scales: list[float] = field(default_factory=lambda: [1, .875, .75, .66])
    flip: bool = True                         # off for classes that mirroring changes (left/right)
    lr: float = 0.001
    lr_steps: list[int] = field(default_factory=lambda: [20, 40])
    lr_gamma: float = 0.1
    epochs: int = 47
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad: Optional[float] = 40.0
    batch_size: int = 32
    accumulate: int = 4
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                         # auto = bf16 (or fp16) on CUDA, off on CPU
    channels_last: Optional[bool] = None      # None = on for CUDA
    log_every: int = 20
    max_steps: Optional[int] = None           # per epoch; for smoke runs and benchmarks

    def to_dict(self) -> dict:
        return asdict(self)


# The reference's per-modality settings (SPEC "Reference defaults"); schedules in epochs of
# UCF101 split 1 (9537 videos, 74.5 iterations of 128 per epoch).
MODALITY_DEFAULTS = {
    "rgb": dict(dropout=0.8, scales=[1, .875, .75, .66], lr=0.001, lr_steps=[20, 40], epochs=47,
                clip_grad=40.0),
    "rgbdiff": dict(dropout=0.8, scales=[1, .875, .75], lr=0.001, lr_steps=[20, 40], epochs=47,
                    clip_grad=40.0),
    "flow": dict(dropout=0.7, scales=[1, .875, .75], lr=0.005, lr_steps=[134, 215], epochs=242,
                 clip_grad=20.0),
    "warped_flow": dict(dropout=0.7, scales=[1, .875, .75], lr=0.005, lr_steps=[134, 215],
                        epochs=242, clip_grad=20.0),
}


def preset_names() -> list[str]:
    """Datasets with shipped presets (files are ``<dataset>_<modality>.json``)."""
    longest_first = sorted(MODALITIES, key=len, reverse=True)  # warped_flow before flow
    names = set()
    for f in resources.files("tsn_train.presets").iterdir():
        stem = f.name.removesuffix(".json")
        modality = next((m for m in longest_first if stem.endswith("_" + m)), None)
        if f.name.endswith(".json") and modality:
            names.add(stem[: -len(modality) - 1])
    return sorted(names)


def load_preset(name: str, modality: str) -> dict:
    """Settings of preset ``name`` (e.g. ``ucf101``) for ``modality``; keys starting with ``_``
    are comments."""
    path = resources.files("tsn_train.presets") / f"{name}_{modality}.json"
    if not path.is_file():
        raise ValueError(f"no preset {name!r} for {modality}; presets: {', '.join(preset_names())}")
    data = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(k for k in data if not k.startswith("_") and k not in known)
    if unknown:
        raise ValueError(f"preset {path.name} has unknown settings: {', '.join(unknown)}")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def resolve(options: dict, preset: Optional[str] = None) -> FitConfig:
    """Defaults, then the modality's reference settings, then the preset, then ``options``
    (entries that are None are treated as not given)."""
    modality = options["modality"]
    settings = dict(MODALITY_DEFAULTS[modality])
    if preset:
        settings.update(load_preset(preset, modality))
    settings.update({k: v for k, v in options.items() if v is not None})
    return FitConfig(**settings)
