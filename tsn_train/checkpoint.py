"""The checkpoint format of ``tsn-train fit``: what is saved, written atomically, read back checked.

A checkpoint file is a plain dict of built-in types and tensors: ``format`` and ``version`` tags
plus the fields of :class:`Checkpoint` (the config and preprocessing as dicts). It is read with
:func:`~tsn_train.safe_load.load_plain` (``torch.load(weights_only=True)``), so a file from
elsewhere cannot run code when tsn-train opens it. No RNG state is
saved: fit reseeds every epoch from ``(seed, epoch, rank)`` and the data order and augmentation
depend only on ``(seed, epoch, item)``, so a resumed run repeats the interrupted epoch exactly
without it.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from tsn_core.diskspace import DiskFull, is_disk_full

from .config import FitConfig
from .models.tsn import TSN, build_model
from .safe_load import RefusedFile, UnreadableFile, load_plain
from .transforms import InputNorm

FORMAT = "tsn-train-checkpoint"
VERSION = 2  # 1: the unversioned dict of tsn-train before issue 9 (still readable)

# Settings a checkpoint's config may lack, written before they existed, with the value such a run
# used (not today's default): training crops came from the five corner-and-centre places.
LEGACY_CONFIG = {"crop_positions": 5}


@dataclass(frozen=True)
class Preprocessing:
    """How test and predict must turn images into the model's input, as in training."""

    modality: str
    input_size: int     # crop side
    scale_size: int     # short side validation and test rescale to before cropping
    norm: InputNorm

    @classmethod
    def of(cls, cfg: FitConfig, arch_input_size: int, norm: InputNorm) -> "Preprocessing":
        size = cfg.input_size or arch_input_size
        return cls(cfg.modality, size, size * 256 // 224, norm)

    def to_dict(self) -> dict:
        return {"modality": self.modality, "input_size": self.input_size,
                "scale_size": self.scale_size, "norm": self.norm.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(d["modality"], int(d["input_size"]), int(d["scale_size"]),
                   InputNorm.from_dict(d["norm"]))


@dataclass
class Checkpoint:
    """A trained (or partly trained) stream and everything needed to test it or resume it."""

    model: dict                      # the TSN's state dict
    config: FitConfig                # the run's settings (architecture, modality, segments, ...)
    classes: list[str]
    preprocessing: Preprocessing
    extraction: dict                 # tsn-prep parameters of the training store (predict repeats them)
    epoch: int                       # full epochs done
    best_val_acc: Optional[float] = None
    history: list[dict] = field(default_factory=list)   # metrics.jsonl's epoch records
    optimizer: Optional[dict] = None
    scaler: Optional[dict] = None

    @property
    def modality(self) -> str:
        return self.config.modality

    @property
    def arch(self) -> str:
        return self.config.arch

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in ("model", "classes", "extraction", "epoch", "best_val_acc",
                                           "history", "optimizer", "scaler")}
        return {"format": FORMAT, "version": VERSION, **d, "config": self.config.to_dict(),
                "preprocessing": self.preprocessing.to_dict()}


def save(ckpt: Checkpoint, path: Path) -> None:
    """Write ``ckpt`` to ``path`` atomically: serialise in memory, write a temporary file in the
    same folder, fsync, rename over ``path`` (a crash mid-write never leaves a half file).

    A full file system raises :class:`~tsn_core.diskspace.DiskFull` naming ``path`` and the space
    the checkpoint needs; the temporary file is removed and any earlier ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised first: torch.save's zip writer reports a full disk as an opaque RuntimeError,
    # a plain write reports ENOSPC, and the size is known for the message.
    buf = io.BytesIO()
    torch.save(ckpt.to_dict(), buf)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFull(path, buf.tell(), "free some space and run the same command again (with "
                                             "--resume if an earlier epoch's last.pt is there)") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path: Path) -> Checkpoint:
    """The checkpoint at ``path``; a one-line ValueError naming the path if it is not one this
    version of tsn-train can read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        d = load_plain(path)
    except RefusedFile:
        raise
    except UnreadableFile as exc:  # empty, truncated, random bytes: one line, no PyTorch advice
        raise ValueError(f"{path}: unreadable checkpoint ({exc.reason})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tsn-train checkpoint")
    version = d.get("version", 1)
    if version not in (1, VERSION):
        raise ValueError(f"{path}: checkpoint format version {version}; this tsn-train reads "
                         f"versions 1 to {VERSION}")
    try:
        config = FitConfig(**{**LEGACY_CONFIG, **d["config"]})
        return Checkpoint(model=d["model"], config=config, classes=list(d["classes"]),
                          preprocessing=Preprocessing.from_dict(d["preprocessing"]),
                          extraction=d.get("extraction") or {}, epoch=int(d["epoch"]),
                          best_val_acc=d.get("best_val_acc"), history=list(d.get("history") or []),
                          optimizer=d.get("optimizer"), scaler=d.get("scaler"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: damaged tsn-train checkpoint ({type(exc).__name__}: {exc})") from None


def model_from_checkpoint(ckpt: Checkpoint, device: Optional[torch.device] = None) -> TSN:
    """The checkpoint's TSN with its trained weights, in eval mode, on ``device``."""
    model = build_model(ckpt.config, len(ckpt.classes))
    model.load_state_dict(ckpt.model)
    return model.to(device or "cpu").eval()
