"""``tsn-train fit``: the training loop, top to bottom.

One process per device; under torchrun every rank runs this same code on its share of the
videos. Rank 0 writes ``OUT/last.pt`` every epoch (atomically), ``OUT/best.pt`` when validation
improves, and ``OUT/metrics.jsonl``.

Reading order: ``fit`` (setup, then one line per stage), ``load_data``, ``train_one_epoch``,
``validate_epoch``, ``RunLog``.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from tsn_core import modalities
from tsn_core.frames import parse_decoders, parse_size

from . import archs, checkpoint, distributed
from .checkpoint import Checkpoint, Preprocessing
from .config import FitConfig
from .curves import write_curves
from .outputs import OutputError, writable_folder
from .dataset import ShardSampler, VideoDataset, single_threaded_decoding
from .device_decode import EncodedDataset, collate, decode_batch
from tsn_core import interrupts
from tsn_core.machine import usable_cores
from tsn_core.progress import bar as progress_bar
from tsn_core.lists import ListError, read_classes, read_list

from .lists import num_classes_of
from .models import TSN, build_model
from .optim import lr_at, make_optimizer, set_lr
from .sources import DataSource, open_source
from .transforms import NORMS, EvalCrops, InputNorm, TrainAugment, to_input
from .video_source import FrameSettings, left_out_text


@dataclass
class FitResult:
    model: Optional[TSN]  # None when there was nothing to train (a finished run resumed)
    history: list[dict]


class Meter:
    """Summed loss, correct predictions and count of videos; ``reduced`` sums them over ranks."""

    def __init__(self) -> None:
        self.loss_sum = self.correct = self.count = 0.0

    def add(self, loss_sum: float, out: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss_sum
        self.correct += (out.argmax(1) == y).sum().item()
        self.count += y.numel()

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def acc(self) -> float:
        return self.correct / max(self.count, 1)

    def reduced(self, device: torch.device) -> "Meter":
        total = Meter()
        total.loss_sum, total.correct, total.count = distributed.all_sum(
            [self.loss_sum, self.correct, self.count], device)
        return total

    def record(self, prefix: str) -> dict:
        return {f"{prefix}_loss": self.loss, f"{prefix}_acc": self.acc, f"{prefix}_videos": int(self.count)}


@dataclass
class Data:
    """The lists, loaders and facts about them that the rest of fit needs."""

    train_loader: DataLoader
    train_inputs: Callable[[object], torch.Tensor]  # a train batch -> the network's input, on the device
    val_loader: Optional[DataLoader]
    classes: list[str]
    extraction: dict          # how the frames were made: the store's extraction parameters (predict repeats them)
    preprocessing: Preprocessing
    train_videos: int
    val_videos: int


def load_data(cfg: FitConfig, dev: distributed.Dist, norm: Optional[InputNorm] = None) -> Data:
    """Read and check the lists against the store (or the video files), and build the training
    (and validation) loaders. ``norm``: the input scaling of the checkpoint resumed (an imported
    model keeps its source's); by default the architecture's."""
    source = data_source(cfg, dev)
    known = source.known(cfg.modality)  # every line resolved against the source's ids
    train = read_list(Path(cfg.train_list), known, f"train list {cfg.train_list}")
    val = read_list(Path(cfg.val_list), known, f"val list {cfg.val_list}") if cfg.val_list else None
    classes = read_classes(Path(cfg.classes)) if cfg.classes else None
    num_classes = cfg.num_classes or num_classes_of(train + (val or []), classes)
    if classes is None:
        classes = [str(i) for i in range(num_classes)]
    elif cfg.num_classes and cfg.num_classes != len(classes):
        raise ListError(f"--num-classes {cfg.num_classes} disagrees with {cfg.classes} "
                        f"({len(classes)} names)")
    # the videos as arrays from here on (Videos): loader workers share them for the whole run
    checked = [source.checked(records, cfg.modality, num_classes, f"{name} list {path}", Path(path))
               for records, name, path in ((train, "train", cfg.train_list), (val, "val", cfg.val_list))
               if records]
    for c, name in zip(checked, ("train", "val")):
        if c.left_out and dev.main:
            tqdm.write(f"{name} list: {left_out_text(c.left_out)}", file=sys.stderr)
    train_videos, val_videos = checked[0].videos, (checked[1].videos if val else None)
    spec = modalities.get(cfg.modality)
    extraction = source.parameters(train[0].video_id, cfg.modality)
    source.close()

    arch = archs.get(cfg.arch)
    prep = Preprocessing.of(cfg, arch.input_size, norm or NORMS[arch.norm])
    if cfg.workers > 0:
        single_threaded_decoding()
    images = source.images()
    augment = TrainAugment(prep.input_size, tuple(cfg.scales), spec.is_flow, flip=cfg.flip,
                           crop_positions=cfg.crop_positions)
    on_device = cfg.decode_on == "device"
    train_ds = (EncodedDataset if on_device else VideoDataset)(
        images, train_videos, None, cfg.modality, cfg.segments, True, augment, cfg.seed)
    train_sampler = ShardSampler(len(train_videos), dev.rank, dev.world, shuffle=True, seed=cfg.seed, pad=True)

    def train_inputs(batch) -> torch.Tensor:
        images = (decode_batch(batch, cfg.modality, prep.input_size, dev.device) if on_device
                  else batch.to(dev.device, non_blocking=True))
        return to_input(images, cfg.modality, prep.norm)

    val_loader = None
    if val:
        crops = EvalCrops(prep.input_size, prep.scale_size, 1, spec.is_flow)
        val_ds = VideoDataset(images, val_videos, None, cfg.modality, cfg.segments, False, crops,
                              cfg.seed)
        val_loader = _loader(val_ds, ShardSampler(len(val_videos), dev.rank, dev.world), cfg, dev.device)
    train_loader = _loader(train_ds, train_sampler, cfg, dev.device, collate if on_device else None)
    return Data(train_loader, train_inputs, val_loader, classes, extraction, prep, len(train_videos),
                len(val_videos) if val_videos is not None else 0)


def data_source(cfg: FitConfig, dev: distributed.Dist) -> DataSource:
    """The run's store, or its video files (``--videos``, with the frame settings checked)."""
    if not cfg.videos:
        return open_source(store=Path(cfg.store))
    if cfg.decode_on == "device":
        raise ValueError("--decode-on device decodes a store's JPEGs; with --videos the loader "
                         "workers decode the frames (drop --decode-on)")
    try:
        settings = FrameSettings(None if cfg.video_short_side else parse_size(cfg.video_size),
                                 cfg.video_short_side, parse_decoders(cfg.decoders))
    except ValueError as exc:
        raise ValueError(f"--video-size/--decoders: {exc}") from None
    return open_source(videos=Path(cfg.videos), settings=settings, scan_threads=max(cfg.workers, 2),
                       progress=dev.main)



def _loader(ds: VideoDataset, sampler: ShardSampler, cfg: FitConfig, device: torch.device,
            collate_fn: Optional[Callable] = None) -> DataLoader:
    # Persistent workers (unless the source asks for fresh ones, ``FrameSource.fresh_workers``):
    # no new processes (and store handles) every epoch; the sampler's
    # (epoch, item) keys carry the epoch to them. A generator of its own: a DataLoader draws its
    # workers' base seed when it makes an iterator, which persistent workers do in the first epoch
    # of a run only; drawn from the global generator, that draw moved the dropout of every later
    # epoch, so a resumed run (a new iterator in its first epoch) trained otherwise than one never
    # interrupted. Our data's randomness is keyed by (seed, epoch, item), never by that seed.
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda" and collate_fn is None,
                      persistent_workers=cfg.workers > 0 and not ds.source.fresh_workers,
                      collate_fn=collate_fn,
                      worker_init_fn=interrupts.loader_worker,
                      generator=torch.Generator().manual_seed(cfg.seed))


def channels_last(cfg: FitConfig, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.channels_last is None else cfg.channels_last


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, cfg: FitConfig, dev: distributed.Dist,
                    amp_dtype: Optional[torch.dtype], epoch: int, log: Optional["RunLog"],
                    inputs: Callable[[object], torch.Tensor]) -> dict:
    """One pass over this rank's videos; gradients of ``accumulate`` batches make one SGD step.

    ``inputs`` turns a loader batch into the network's input on the device (``Data.train_inputs``).
    Per step, ``data`` is the time spent waiting for the loader and in ``inputs`` (copying the
    uint8 images to the device, or decoding them there, and scaling them); ``compute`` the
    forward, backward and SGD step."""
    model.train()
    steps = len(loader) if cfg.max_steps is None else min(len(loader), cfg.max_steps * cfg.accumulate)
    meter = Meter()
    data_time = compute_time = 0.0
    since_log = [0.0, 0.0]  # data and compute seconds since the last step record
    optimizer.zero_grad(set_to_none=True)
    bar = progress_bar(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", quiet=not dev.main,
                       leave=False)
    memory_format = torch.channels_last if channels_last(cfg, dev.device) else torch.contiguous_format
    batches = iter(loader)
    for i in range(steps):
        t0 = time.perf_counter()
        x, y = next(batches)
        x = inputs(x)
        y = y.to(dev.device, non_blocking=True)
        x = x.flatten(0, 1).contiguous(memory_format=memory_format).unflatten(0, x.shape[:2])
        t1 = time.perf_counter()
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
        step_loss = loss.item()  # waits for the device, so the compute time below is real
        meter.add(step_loss * y.numel(), out, y)
        t2 = time.perf_counter()
        data_time += t1 - t0
        compute_time += t2 - t1
        since_log[0] += t1 - t0
        since_log[1] += t2 - t1
        bar.update(1)
        bar.set_postfix(loss=f"{meter.loss:.3f}", acc=f"{meter.acc:.3f}",
                        data=f"{data_time / (i + 1):.3f}s", compute=f"{compute_time / (i + 1):.3f}s")
        if log is not None and cfg.log_every and (i + 1) % cfg.log_every == 0:
            log.step({"kind": "step", "epoch": epoch + 1, "step": i + 1, "loss": step_loss,
                      "data_seconds": round(since_log[0], 4), "compute_seconds": round(since_log[1], 4),
                      "time": time.time()})
            since_log = [0.0, 0.0]
    bar.close()
    return {**meter.reduced(dev.device).record("train"), "data_seconds": round(data_time, 3),
            "compute_seconds": round(compute_time, 3)}


@torch.inference_mode()
def validate_epoch(model: torch.nn.Module, loader: DataLoader, dev: distributed.Dist,
                   amp_dtype: Optional[torch.dtype], modality: str, norm: InputNorm) -> dict:
    """Validation after an epoch: loss and accuracy over every video of the loader (one centre
    crop at segment centres, not the test protocol of tsn_train/protocol.py), summed over ranks
    (each video once)."""
    model.eval()
    meter = Meter()
    for x, y in loader:
        x, y = to_input(x[:, 0].to(dev.device), modality, norm), y.to(dev.device)  # one centre crop
        with torch.autocast(dev.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x).float()
        meter.add(F.cross_entropy(out, y, reduction="sum").item(), out, y)
    return meter.reduced(dev.device).record("val")


class RunLog:
    """Rank 0's outputs besides checkpoints: metrics.jsonl, curves.png (redrawn every epoch),
    TensorBoard (when installed), the console. Other ranks get a RunLog that writes nothing."""

    def __init__(self, out: Path, main: bool, resumed_after: Optional[int]):
        self.path = out / "metrics.jsonl"
        self.main = main
        self.board = None
        if not main:
            return
        if resumed_after is None:
            self.path.unlink(missing_ok=True)  # step lines of a first epoch that never finished
        elif self.path.exists():  # drop records of the epoch that was interrupted (it runs again)
            keep = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("epoch", 0) <= resumed_after]
            self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            pass
        else:
            self.board = SummaryWriter(str(out / "tensorboard"))

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def step(self, record: dict) -> None:
        if self.main:
            self._append(record)

    def epoch(self, record: dict, epochs: int) -> None:
        if not self.main:
            return
        self._append(record)
        epochs_so_far = [r for r in map(json.loads, self.path.read_text(encoding="utf-8").splitlines())
                         if r.get("kind") == "epoch"]
        write_curves(epochs_so_far, self.path.with_name("curves.png"))
        if self.board is not None:
            for key, value in record.items():
                if key not in ("kind", "epoch"):
                    self.board.add_scalar(key, value, record["epoch"])
            self.board.flush()
        tqdm.write(_summary(record, epochs))

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _summary(r: dict, epochs: int) -> str:
    text = (f"epoch {r['epoch']}/{epochs}  lr {r['lr']:.3g}  loss {r['train_loss']:.4f}  "
            f"train acc {r['train_acc']:.1%}")
    if "val_acc" in r:
        text += f"  val loss {r['val_loss']:.4f}  val acc {r['val_acc']:.1%}"
    return text + f"  ({r['seconds']:.0f} s, data {r['data_seconds']:.0f} s)"


def _check_output(cfg: FitConfig, resume: Optional[str], ckpt: Optional[Checkpoint]) -> None:
    """Never overwrite a run by accident, and resume only the stream a checkpoint holds."""
    if ckpt and (ckpt.modality, ckpt.arch) != (cfg.modality, cfg.arch):
        raise ValueError(f"{resume} is a {ckpt.modality} {ckpt.arch} run; this command trains "
                         f"{cfg.modality} {cfg.arch}")
    if not ckpt and (Path(cfg.out) / "last.pt").exists():
        raise ValueError(f"{cfg.out} already holds a run (last.pt): add --resume to continue it, or "
                         "choose another --out")


def advice(cfg: FitConfig) -> list[str]:
    """Settings that work against each other, each said in a line (the run goes on)."""
    lines = []
    if cfg.partial_bn and not cfg.pretrained:
        lines.append("partial BN (on by default) freezes the statistics of every BatchNorm layer "
                     "but the first, which assumes ImageNet weights: training from scratch, add "
                     "--no-partial-bn (or give --pretrained)")
    if cfg.workers > usable_cores():
        lines.append(f"--workers {cfg.workers}: more DataLoader processes than the {usable_cores()} "
                     "usable cores; they will take turns")
    return lines


def same_classes(resume, trained: list[str], class_file: Optional[str], classes: list[str]) -> None:
    """``--resume`` continues a run only with the class names it was trained on, in their order:
    a class that moved would silently take another's weights."""
    if list(trained) == list(classes):
        return
    given = f"the class file {class_file}" if class_file else "the lists' labels (no --classes)"
    if len(trained) != len(classes):
        raise ValueError(f"{resume} was trained on {len(trained)} classes, but {given} give "
                         f"{len(classes)}: --resume continues a run only with its own classes; "
                         "train a new run (another --out) for other classes")
    i = next(i for i, (a, b) in enumerate(zip(trained, classes)) if a != b)
    what = "the same names in another order" if sorted(trained) == sorted(classes) else "other names"
    raise ValueError(f"{resume} was trained on other classes than {given} give ({what}: label {i} "
                     f"is {trained[i]!r} in the checkpoint, {classes[i]!r} now): --resume continues "
                     "a run only with its classes in their order")


def _saved(out: Path, epoch: int, epochs: int) -> None:
    """What an interrupt leaves: the run as of its last saved epoch."""
    if epoch:
        interrupts.safe(f"epoch {epoch} of {epochs} is saved in {out / 'last.pt'}; continue with "
                        "the same command and --resume")
    else:
        interrupts.safe("no epoch had finished, so nothing was saved; run the same command again")


def check_run_folder(out: Path, dev: distributed.Dist) -> None:
    """Before the data, the model and the first step: rank 0 (the one that writes) proves it can
    write in ``out``, and every rank stops with its one-line error if it cannot (no rank is left
    waiting in a collective for a rank that has quit)."""
    problem = None
    if dev.main:
        try:
            writable_folder(out)
        except OutputError as exc:
            problem = exc
    if distributed.all_sum([float(problem is not None)], dev.device)[0]:
        raise problem or OutputError(f"{out}: cannot write here (rank 0 cannot; see its message)")


def fit(cfg: FitConfig, resume: Optional[str] = None) -> FitResult:
    """Train ``cfg``; with ``resume`` (a checkpoint path) continue after its last full epoch."""
    dev = distributed.setup(cfg.device)
    out = Path(cfg.out)
    ckpt = checkpoint.load(Path(resume)) if resume else None
    _check_output(cfg, resume, ckpt)
    if ckpt and ckpt.epoch >= cfg.epochs:
        if dev.main:
            tqdm.write(f"nothing to do: {resume} has finished epoch {ckpt.epoch} of {cfg.epochs}; to "
                       f"train on, give --epochs N (more than {ckpt.epoch}) with --resume")
        return FitResult(None, list(ckpt.history))
    check_run_folder(out, dev)
    data = load_data(cfg, dev, ckpt.preprocessing.norm if ckpt else None)
    if ckpt:
        same_classes(resume, ckpt.classes, cfg.classes, data.classes)
    for line in advice(cfg):  # after every check that can stop the run: an error stays one line
        if dev.main:
            tqdm.write(f"warning: {line}", file=sys.stderr)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, len(data.classes), None if ckpt else cfg.pretrained).to(dev.device)
    if channels_last(cfg, dev.device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    amp_dtype = distributed.autocast_dtype(cfg.amp, dev.device)
    scaler = torch.amp.GradScaler(dev.device.type, enabled=amp_dtype == torch.float16)
    start_epoch, best, history = 0, None, []
    if ckpt:
        model.load_state_dict(ckpt.model)
        if ckpt.optimizer is not None:  # an imported model (tsn-train import-checkpoint) has none yet
            optimizer.load_state_dict(ckpt.optimizer)
        if ckpt.scaler is not None:
            scaler.load_state_dict(ckpt.scaler)
        start_epoch, best, history = ckpt.epoch, ckpt.best_val_acc, ckpt.history
    net = (DistributedDataParallel(model, device_ids=[dev.device] if dev.device.type == "cuda" else None)
           if dev.world > 1 else model)

    if dev.main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.pt.*.tmp"):  # a checkpoint write cut short by a kill
            stale.unlink()
        eff = cfg.batch_size * cfg.accumulate * dev.world
        tqdm.write(f"tsn-train fit: {cfg.modality} {cfg.arch}, {data.train_videos} train / "
                   f"{data.val_videos} val videos, {len(data.classes)} classes, device {dev.device}"
                   f"{f' x {dev.world} ranks' if dev.world > 1 else ''}, effective batch {eff}"
                   f"{f', resuming after epoch {start_epoch}' if ckpt else ''}")
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    log = RunLog(out, dev.main, start_epoch if ckpt else None)
    _saved(out, start_epoch, cfg.epochs)

    for epoch in range(start_epoch, cfg.epochs):
        started = time.time()
        lr = lr_at(epoch, cfg.lr, cfg.lr_steps, cfg.lr_gamma)
        set_lr(optimizer, lr)
        # Randomness of an epoch depends only on (seed, epoch, rank): a resumed run repeats it
        # (dropout here; data order and augmentation by the sampler's and dataset's own seeds).
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + dev.rank)
        data.train_loader.dataset.set_epoch(epoch)
        data.train_loader.sampler.set_epoch(epoch)
        record = {"kind": "epoch", "epoch": epoch + 1, "lr": lr}
        record.update(train_one_epoch(net, data.train_loader, optimizer, scaler, cfg, dev, amp_dtype,
                                      epoch, log, data.train_inputs))
        if data.val_loader is not None:
            record.update(validate_epoch(net, data.val_loader, dev, amp_dtype, cfg.modality,
                                         data.preprocessing.norm))
        record["seconds"] = round(time.time() - started, 3)
        improved = data.val_loader is not None and (best is None or record["val_acc"] > best)
        if improved:
            best = record["val_acc"]
        history.append(record)
        if dev.main:
            state = Checkpoint(model=model.state_dict(), config=cfg, classes=data.classes,
                               preprocessing=data.preprocessing, extraction=data.extraction,
                               epoch=epoch + 1, best_val_acc=best, history=history,
                               optimizer=optimizer.state_dict(), scaler=scaler.state_dict())
            with interrupts.deferred():  # the epoch's checkpoints and record, or none of them
                checkpoint.save(state, out / "last.pt")
                if improved:
                    checkpoint.save(state, out / "best.pt")
                log.epoch(record, cfg.epochs)
        _saved(out, epoch + 1, cfg.epochs)
        distributed.barrier()
    log.close()
    return FitResult(model, history)
