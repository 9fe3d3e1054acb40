"""``tsn-train fit``: the training loop, top to bottom.

One process per device; under torchrun every rank runs this same function on its share of the
videos. Rank 0 writes ``OUT/last.pt`` every epoch (atomically), ``OUT/best.pt`` when validation
improves, and ``OUT/metrics.jsonl``.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from tsn_prep import modalities
from tsn_prep.store import Store

from . import checkpoint, distributed
from .config import FitConfig
from .dataset import ShardSampler, VideoDataset, single_threaded_decoding
from .lists import ListError, Record, num_classes_of, read_classes, read_list, validate
from .models import ARCHS, TSN
from .optim import lr_at, make_optimizer, set_lr
from .transforms import NORMS, EvalCrops, TrainAugment

CHECKPOINT_FORMAT = "tsn-train-checkpoint"


@dataclass
class FitResult:
    model: TSN
    epochs_run: int
    best_val_acc: Optional[float]
    history: list[dict]


def preprocessing(cfg: FitConfig) -> dict:
    """Everything test and predict need to feed the model as it was trained."""
    arch = ARCHS[cfg.arch]
    size = cfg.input_size or arch.input_size
    return {"modality": cfg.modality, "input_size": size, "scale_size": size * 256 // 224,
            "norm": NORMS[arch.norm].to_dict(), "segments": cfg.segments}


def build_model(cfg: FitConfig, num_classes: int, pretrained: Optional[str] = None) -> TSN:
    return TSN(num_classes, cfg.modality, cfg.arch, cfg.segments, cfg.consensus, cfg.dropout,
               cfg.partial_bn, cfg.topk, Path(pretrained) if pretrained else None)


def _load_lists(cfg: FitConfig) -> tuple[list[Record], Optional[list[Record]], list[str], dict, dict, dict]:
    train = read_list(Path(cfg.train_list))
    val = read_list(Path(cfg.val_list)) if cfg.val_list else None
    classes = read_classes(Path(cfg.classes)) if cfg.classes else None
    num_classes = cfg.num_classes or num_classes_of(train + (val or []), classes)
    if classes is None:
        classes = [str(i) for i in range(num_classes)]
    elif cfg.num_classes and cfg.num_classes != len(classes):
        raise ListError(f"--num-classes {cfg.num_classes} disagrees with {cfg.classes} "
                        f"({len(classes)} names)")
    store = Store(Path(cfg.store))
    train_counts = validate(train, store, cfg.modality, num_classes, f"train list {cfg.train_list}")
    val_counts = (validate(val, store, cfg.modality, num_classes, f"val list {cfg.val_list}")
                  if val else {})
    source = modalities.get(cfg.modality).source
    extraction = store.entry(train[0].video_id, source).meta["parameters"]
    store.close()
    return train, val, classes, train_counts, val_counts, extraction


def _loader(ds: VideoDataset, sampler: ShardSampler, cfg: FitConfig, device: torch.device) -> DataLoader:
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda",
                      persistent_workers=False)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _tensorboard(out: Path):
    """A SummaryWriter under ``OUT/tensorboard`` when the tensorboard package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """On resume, drop records of the epoch that was interrupted (it is run again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("epoch", 0) <= epochs_done]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, cfg: FitConfig, dev: distributed.Dist,
                    amp_dtype: Optional[torch.dtype], epoch: int, log_path: Optional[Path]) -> dict:
    """One pass over this rank's videos; gradients of ``accumulate`` batches make one SGD step."""
    model.train()
    steps = len(loader) if cfg.max_steps is None else min(len(loader), cfg.max_steps * cfg.accumulate)
    loss_sum = correct = seen = 0.0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not dev.main,
               leave=False, dynamic_ncols=True)
    memory_format = torch.channels_last if _channels_last(cfg, dev.device) else torch.contiguous_format
    for i, (x, y) in enumerate(loader):
        if i >= steps:
            break
        x = x.to(dev.device, non_blocking=True)
        y = y.to(dev.device, non_blocking=True)
        x = x.flatten(0, 1).contiguous(memory_format=memory_format).unflatten(0, x.shape[:2])
        last_of_group = (i + 1) % cfg.accumulate == 0 or i + 1 == steps
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last_of_group \
            else nullcontext()
        with sync:
            with torch.autocast(dev.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(x)
                loss = F.cross_entropy(out.float(), y)
            scaler.scale(loss / cfg.accumulate).backward()
        if last_of_group:
            scaler.unscale_(optimizer)
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        n = y.numel()
        loss_sum += loss.item() * n
        correct += (out.argmax(1) == y).sum().item()
        seen += n
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if log_path is not None and cfg.log_every and (i + 1) % cfg.log_every == 0:
            _append_jsonl(log_path, {"kind": "step", "epoch": epoch + 1, "step": i + 1,
                                     "loss": loss.item(), "time": time.time()})
    bar.close()
    loss_sum, correct, seen = distributed.all_sum([loss_sum, correct, seen], dev.device)
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "train_videos": int(seen)}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: DataLoader, dev: distributed.Dist,
             amp_dtype: Optional[torch.dtype]) -> dict:
    """Loss and accuracy over every video of the loader, summed over ranks (each video once)."""
    model.eval()
    loss_sum = correct = seen = 0.0
    for x, y in loader:
        x, y = x[:, 0].to(dev.device), y.to(dev.device)  # one centre crop
        with torch.autocast(dev.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x).float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        seen += y.numel()
    loss_sum, correct, seen = distributed.all_sum([loss_sum, correct, seen], dev.device)
    return {"val_loss": loss_sum / max(seen, 1), "val_acc": correct / max(seen, 1),
            "val_videos": int(seen)}


def _channels_last(cfg: FitConfig, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.channels_last is None else cfg.channels_last


def fit(cfg: FitConfig, resume: Optional[str] = None) -> FitResult:
    """Train ``cfg``; with ``resume`` (a checkpoint path) continue after its last full epoch."""
    dev = distributed.setup(cfg.device)
    out = Path(cfg.out)
    metrics_path = out / "metrics.jsonl"
    train, val, classes, train_counts, val_counts, extraction = _load_lists(cfg)

    prep = preprocessing(cfg)
    if cfg.workers > 0:
        single_threaded_decoding()
    norm = NORMS[ARCHS[cfg.arch].norm]
    is_flow = modalities.get(cfg.modality).is_flow
    augment = TrainAugment(prep["input_size"], tuple(cfg.scales), is_flow, flip=cfg.flip)
    train_ds = VideoDataset(Path(cfg.store), train, train_counts, cfg.modality, cfg.segments, True,
                            augment, norm, cfg.seed)
    train_sampler = ShardSampler(len(train), dev.rank, dev.world, shuffle=True, seed=cfg.seed, pad=True)
    train_loader = _loader(train_ds, train_sampler, cfg, dev.device)
    val_loader = None
    if val:
        crops = EvalCrops(prep["input_size"], prep["scale_size"], 1, is_flow)
        val_ds = VideoDataset(Path(cfg.store), val, val_counts, cfg.modality, cfg.segments, False,
                              crops, norm, cfg.seed)
        val_loader = _loader(val_ds, ShardSampler(len(val), dev.rank, dev.world), cfg, dev.device)

    ckpt = checkpoint.load(Path(resume)) if resume else None
    if ckpt and (ckpt["modality"], ckpt["arch"]) != (cfg.modality, cfg.arch):
        raise ValueError(f"{resume} is a {ckpt['modality']} {ckpt['arch']} run; this command trains "
                         f"{cfg.modality} {cfg.arch}")
    if not ckpt and (out / "last.pt").exists():
        raise ValueError(f"{out} already holds a run (last.pt): add --resume to continue it, or "
                         "choose another --out")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, len(classes), None if ckpt else cfg.pretrained).to(dev.device)
    if _channels_last(cfg, dev.device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    amp_dtype = distributed.autocast_dtype(cfg.amp, dev.device)
    scaler = torch.amp.GradScaler(dev.device.type, enabled=amp_dtype == torch.float16)
    start_epoch, best, history = 0, None, []
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        checkpoint.set_rng_state(ckpt["rng"])
        start_epoch, best, history = ckpt["epoch"], ckpt["best_val_acc"], ckpt["history"]
        if dev.main:
            _truncate_metrics(metrics_path, start_epoch)
    net = (DistributedDataParallel(model, device_ids=[dev.device] if dev.device.type == "cuda" else None)
           if dev.world > 1 else model)

    if dev.main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.pt.*.tmp"):  # a checkpoint write cut short by a kill
            stale.unlink()
        if not ckpt:  # step lines of a first epoch that never finished
            metrics_path.unlink(missing_ok=True)
        eff = cfg.batch_size * cfg.accumulate * dev.world
        tqdm.write(f"tsn-train fit: {cfg.modality} {cfg.arch}, {len(train)} train / "
                   f"{len(val or [])} val videos, {len(classes)} classes, device {dev.device}"
                   f"{f' x {dev.world} ranks' if dev.world > 1 else ''}, effective batch {eff}"
                   f"{f', resuming after epoch {start_epoch}' if ckpt else ''}")
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    board = _tensorboard(out) if dev.main else None
    for epoch in range(start_epoch, cfg.epochs):
        started = time.time()
        lr = lr_at(epoch, cfg.lr, cfg.lr_steps, cfg.lr_gamma)
        set_lr(optimizer, lr)
        # Randomness of an epoch depends only on (seed, epoch, rank): a resumed run repeats it.
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + dev.rank)
        train_ds.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        record = {"kind": "epoch", "epoch": epoch + 1, "lr": lr}
        record.update(train_one_epoch(net, train_loader, optimizer, scaler, cfg, dev, amp_dtype, epoch,
                                      metrics_path if dev.main else None))
        if val_loader is not None:
            record.update(evaluate(net, val_loader, dev, amp_dtype))
        record["seconds"] = round(time.time() - started, 3)
        improved = val_loader is not None and (best is None or record["val_acc"] > best)
        if improved:
            best = record["val_acc"]
        history.append(record)
        if dev.main:
            state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "epoch": epoch + 1, "lr": lr, "best_val_acc": best, "history": history,
                     "rng": checkpoint.rng_state(), "config": cfg.to_dict(),
                     "preprocessing": prep, "classes": classes, "arch": cfg.arch,
                     "extraction": extraction,
                     "modality": cfg.modality}
            checkpoint.save_atomic(state, out / "last.pt")
            if improved:
                checkpoint.save_atomic(state, out / "best.pt")
            _append_jsonl(metrics_path, record)
            if board is not None:
                for key, value in record.items():
                    if key not in ("kind", "epoch"):
                        board.add_scalar(key, value, epoch + 1)
                board.flush()
            tqdm.write(_summary(record, cfg.epochs))
        distributed.barrier()
    if board is not None:
        board.close()
    return FitResult(model, cfg.epochs - start_epoch, best, history)


def _summary(r: dict, epochs: int) -> str:
    text = (f"epoch {r['epoch']}/{epochs}  lr {r['lr']:.3g}  loss {r['train_loss']:.4f}  "
            f"train acc {r['train_acc']:.1%}")
    if "val_acc" in r:
        text += f"  val loss {r['val_loss']:.4f}  val acc {r['val_acc']:.1%}"
    return text + f"  ({r['seconds']:.0f} s)"
