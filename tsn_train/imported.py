"""A tsn-train checkpoint of a model from the zoos (``tsn_train.zoo`` reads their layouts):
``tsn-train import-checkpoint``'s work."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from tsn_core.lists import read_classes

from . import checkpoint
from .checkpoint import Checkpoint, Preprocessing
from .config import resolve
from .models.tsn import build_tsn
from .zoo import ZooError, ZooModel, read_zoo

# How each source trained (what fine-tuning an imported model continues with): mmaction2's TSN
# configs (TSNHead dropout 0.4, BatchNorm trained) and tsn-pytorch's README commands (dropout 0.8
# for RGB, 0.7 for flow: the reference values, which None keeps; partial BN).
TRAINING = {"mmaction2": {"dropout": 0.4, "partial_bn": False},
            "tsn-pytorch": {"dropout": None, "partial_bn": True}}
# The frames both zoos' UCF101/HMDB51 models were trained on: dense_flow/denseflow's 340x256 and
# flow bound 20, which predict repeats on raw videos (the import command can say otherwise).
ZOO_EXTRACTION = {"size": [340, 256], "bound": 20.0}


def load_into(model: torch.nn.Module, zoo: ZooModel, path: Path) -> None:
    """Load ``zoo``'s weights into a TSN built for it, checking every tensor fits (BatchNorm's
    ``num_batches_tracked``, absent from old files, keeps the model's)."""
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **zoo.model}
    wrong = [f"{k} {tuple(v.shape)} (tsn-train {tuple(own[k].shape)})"
             for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        what = (f"{len(wrong)} tensors of another shape ({', '.join(wrong[:2])})" if wrong else
                f"missing {len(missing)} ({', '.join(missing[:2])}), unexpected {len(unexpected)} "
                f"({', '.join(unexpected[:2])})")
        raise ZooError(f"{path}: does not fit a {zoo.arch} TSN: {what}")
    model.load_state_dict(state)


def to_checkpoint(zoo: ZooModel, classes: list[str], path: Path, input_size: int = 224,
                  scale_size: int = 256, extraction: Optional[dict] = None) -> Checkpoint:
    """A tsn-train checkpoint of ``zoo`` (epoch 0 of a run of its own settings), tested at
    ``scale_size`` short side and ``input_size`` crops as both zoos test TSN."""
    if len(classes) != zoo.num_classes:
        raise ZooError(f"{path}: its classifier has {zoo.num_classes} classes, but {len(classes)} "
                       "class names were given")
    training = TRAINING[zoo.source]
    cfg = resolve({"modality": zoo.modality, "store": "", "train_list": "", "out": "", "arch": zoo.arch,
                   "num_classes": zoo.num_classes, "input_size": input_size, **training})
    model = build_tsn(zoo.num_classes, zoo.modality, zoo.arch, cfg.segments, cfg.consensus,
                      cfg.dropout, cfg.partial_bn, cfg.topk)
    load_into(model, zoo, path)
    return Checkpoint(model=model.state_dict(), config=cfg, classes=list(classes),
                      preprocessing=Preprocessing(zoo.modality, input_size, scale_size, zoo.norm),
                      extraction=dict(extraction or ZOO_EXTRACTION), epoch=0)


def import_checkpoint(source: Path, out: Path, classes_file: Optional[Path] = None,
                      modality: Optional[str] = None, input_size: int = 224,
                      scale_size: int = 256) -> tuple[ZooModel, Checkpoint]:
    """Read the zoo checkpoint ``source``, name its classes (``classes_file``, else the
    checkpoint's own) and write it as a tsn-train checkpoint ``out``."""
    zoo = read_zoo(Path(source), modality)
    if classes_file:
        classes = read_classes(Path(classes_file))
    elif zoo.classes:
        classes = zoo.classes
    else:
        raise ZooError(f"{source}: names no classes ({zoo.num_classes} in its classifier): give "
                       "--classes FILE, one name a line in label order")
    ckpt = to_checkpoint(zoo, classes, Path(source), input_size, scale_size)
    checkpoint.save(ckpt, Path(out))
    return zoo, ckpt
