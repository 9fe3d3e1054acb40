#!/usr/bin/env python
"""Benchmark of tsn-train's input pipeline and training steps on CPU (a benchmark, not a test).

Measures, in one run:

1. loader throughput, in snippets/s (videos/s x K segments), of ``tsn_train.dataset.VideoDataset``
   reading the LMDB store, against a baseline that reads the same images from the TSN-style JPEG
   folders ``tsn-prep export`` writes with ``cv2.imread`` (same sampling, transforms and decoder:
   only the storage differs); for rgb and flow, DataLoader num_workers 0 and 2, with the files
   in the page cache (warm) and evicted from it before every pass (cold);
2. training steps/s and peak memory of ``tsn_train.models.TSN`` (bn_inception and resnet50, rgb
   and flow, K=3, batch 8, 224x224, SGD with TSN's parameter groups), each configuration in a
   fresh process.

Timing on a shared machine drifts, so ratios are taken against a baseline measured in the same
run, repeats are interleaved (the order rotates between repeats) and medians are reported.
The data (the real clips extracted, then replicated into distinct videos) is built once and
cached (``--cache``; a few minutes the first time).

    python tools/bench_train.py --quick              # a minute or two once the data is cached
    python tools/bench_train.py --write-docs         # about 10 minutes; updates docs/performance.md
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import lmdb
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_prep as bp  # noqa: E402  (a sibling script, not a package)

from tsn_prep import __version__ as prep_version  # noqa: E402
from tsn_prep.folders import Naming  # noqa: E402
from tsn_prep.store import Store  # noqa: E402
from tsn_prep.modalities import MODALITIES as SPECS  # noqa: E402
from tsn_train.dataset import ShardSampler, StoreImages, VideoDataset, single_threaded_decoding  # noqa: E402
from tsn_train.lists import Record, validate  # noqa: E402
from tsn_train.models import build_tsn  # noqa: E402
from tsn_train.optim import make_optimizer  # noqa: E402
from tsn_train.transforms import TrainAugment  # noqa: E402

REPO = bp.REPO
DOCS = bp.DOCS
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "tsn-bench-train"
SEGMENTS = 3
BATCH = 8
INPUT_SIZE = 224
NUM_CLASSES = 101
MODALITIES = ("rgb", "flow")
WORKERS = (0, 2)
CACHES = ("warm", "cold")
STORAGES = ("lmdb", "folders")  # ours first; ratios are lmdb / folders
# Diagnostic, cold passes only: the store read through handles opened with LMDB read-ahead on.
READAHEAD = "lmdb_readahead"
ARCHS = ("bn_inception", "resnet50")
CLIP_GRAD = {"rgb": 40.0, "flow": 20.0}  # the presets' gradient clipping, as fit applies it
NAMING = Naming()  # what `tsn-prep export` writes by default: img_00001.jpg, flow_x_00001.jpg


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work each measurement gets; --quick picks the small one."""

    copies: int            # distinct copies of every clip in the cached data
    pass_copies: int       # copies one loader pass reads (each video once)
    loader_repeats: int
    train_repeats: int     # fresh processes per training configuration
    train_steps: int       # timed steps per process
    warmup_steps: int      # untimed steps first (allocations, oneDNN kernel choice)


FULL = Settings(copies=40, pass_copies=40, loader_repeats=5, train_repeats=3, train_steps=2,
                warmup_steps=2)
QUICK = Settings(copies=40, pass_copies=8, loader_repeats=1, train_repeats=1, train_steps=1,
                 warmup_steps=1)
FLOW_FRAMES = 60  # frames per clip for flow: CPU TV-L1 takes most of a second per pair


# --------------------------------------------------------------------------- data

def tsn_prep_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tsn_prep.cli", *args, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)


def stamp_matches(path: Path, stamp: dict) -> bool:
    try:
        return json.loads(path.read_text()) == stamp
    except (OSError, ValueError):
        return False


def build_base(clips: list[Path], videos: Path, cache: Path) -> Path:
    """A store of the real clips: RGB at 340x256 (every frame) and TV-L1 flow of the first
    FLOW_FRAMES frames; rebuilt only when the clips or tsn_prep's version change."""
    base, stamp_path = cache / "base", cache / "base.json"
    stamp = {"clips": [[c.name, c.stat().st_size, c.stat().st_mtime] for c in clips],
             "flow_frames": FLOW_FRAMES, "tsn_prep": prep_version}
    if stamp_matches(stamp_path, stamp):
        return base
    shutil.rmtree(base, ignore_errors=True)
    bp.log(f"[data] extracting {len(clips)} clips into {base} (flow of {FLOW_FRAMES} frames each; "
           "a few minutes)")
    tsn_prep_cli("extract-frames", str(videos), str(base))
    tsn_prep_cli("extract-flow", str(videos), str(base), "--max-frames", str(FLOW_FRAMES),
                 "--workers", "2")
    stamp_path.write_text(json.dumps(stamp))
    return base


def data_from_args(videos: Path, cache: Path, copies: int) -> tuple[Path, list, Path, Path, Path]:
    """The benchmark data for ``--videos`` and ``--cache``, built on first use:
    (videos, clips, cache, store, folders)."""
    if not videos.is_dir():
        raise SystemExit(f"{videos}: no such directory (use --videos)")
    clips = bp.find_clips(videos)
    cache = cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    store, folders = build_data(clips, videos, cache, copies)
    return videos, clips, cache, store, folders


def build_data(clips: list[Path], videos: Path, cache: Path, copies: int) -> tuple[Path, Path]:
    """The benchmark's store and its JPEG folders, holding every clip ``copies`` times as distinct
    videos ``cNN/<clip>`` (distinct files, so a cold pass never finds a video cached by another).

    The copies are made as folders and imported (no re-extraction); the folders the baseline reads
    are then exported from that store, so both hold the same bytes."""
    base = build_base(clips, videos, cache)
    data = cache / f"copies-{copies}"
    stamp = {"base": json.loads((cache / "base.json").read_text()), "copies": copies}
    store, folders = data / "store", data / "folders"
    if stamp_matches(data / "stamp.json", stamp):
        return store, folders
    shutil.rmtree(data, ignore_errors=True)
    staging = data / "staging"
    bp.log(f"[data] making {copies} copies of every clip as distinct videos in {data}")
    tsn_prep_cli("export", str(base), str(staging / "c00"))
    for k in range(1, copies):
        shutil.copytree(staging / "c00", staging / f"c{k:02d}")  # real copies: own page-cache pages
    tsn_prep_cli("import-frames", str(staging), str(store))
    shutil.rmtree(staging)
    tsn_prep_cli("export", str(store), str(folders))
    os.sync()  # dirty pages cannot be evicted; the cold passes need clean ones
    (data / "stamp.json").write_text(json.dumps(stamp))
    return store, folders


def pass_records(store: Path, clips: list[Path], pass_copies: int) -> list[Record]:
    """Every video of the first ``pass_copies`` copies once; the label is the clip's position."""
    labels = {c.stem: i for i, c in enumerate(clips)}
    wanted = {f"c{k:02d}" for k in range(pass_copies)}
    ids = sorted(v for v in Store(store).videos("rgb") if v.split("/", 1)[0] in wanted)
    return [Record(v, labels[v.split("/", 1)[1]]) for v in ids]


def data_files(store: Path, folders: Path) -> dict[str, list[Path]]:
    """Every file each storage may read: the shards' LMDB files; every exported JPEG."""
    lmdb_files = sorted(p for p in store.glob("shard-*/*") if p.is_file())
    jpegs = sorted(Path(d, f) for d, _, fs in os.walk(folders) for f in fs)
    return {"lmdb": lmdb_files, "folders": jpegs}


def data_summary(store: Path, clips: list[Path], records: list[Record],
                 files: dict[str, list[Path]]) -> dict:
    s = Store(store)
    per_clip = {c.stem: {m: s.entry(f"c00/{c.stem}", m).meta["count"] for m in MODALITIES}
                for c in clips}
    copies = len({vid.split("/", 1)[0] for vid, _ in s.index})
    s.close()
    return {"videos": len(records), "copies": copies, "distinct_clips": len(clips),
            "per_clip": per_clip,
            "lmdb_bytes": sum(p.stat().st_size for p in files["lmdb"]),
            "folder_bytes": sum(p.stat().st_size for p in files["folders"]),
            "folder_files": len(files["folders"]),
            "needed": needed_bytes(records, files["folders"])}


def image_bytes(jpegs: list[Path]) -> dict[str, float]:
    """Mean size of one stored image per modality."""
    sizes: dict[str, list[int]] = {m: [] for m in MODALITIES}
    for p in jpegs:
        sizes["rgb" if p.name.startswith(NAMING.img) else "flow"].append(p.stat().st_size)
    return {m: float(np.mean(v)) for m, v in sizes.items()}


def needed_bytes(records: list[Record], jpegs: list[Path]) -> dict[str, float]:
    """About how many bytes of JPEG one pass decodes: images per video times their mean size."""
    per_video = {m: SEGMENTS * SPECS[m].snippet_length * len(SPECS[m].channels) for m in MODALITIES}
    return {m: len(records) * per_video[m] * size for m, size in image_bytes(jpegs).items()}


# --------------------------------------------------------------------------- page cache

def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (no root needed; clean pages only)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(paths: list[Path]) -> None:
    """Read the files whole, so every page is cached."""
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 22):
                pass


def resident_bytes(paths: list[Path]) -> Optional[int]:
    """Bytes of ``paths`` in the page cache, from util-linux ``fincore``; None without it."""
    if shutil.which("fincore") is None:
        return None
    total = 0
    for i in range(0, len(paths), 2000):  # stay far below the argument-list limit
        out = subprocess.run(["fincore", "-b", "-n", "-r", "-o", "RES",
                              *map(str, paths[i:i + 2000])],
                             check=True, capture_output=True, text=True).stdout
        total += sum(int(v) for v in out.split())
    return total


def check_eviction(files: dict[str, list[Path]]) -> dict:
    """Resident bytes per storage after reading everything and after evicting it."""
    out = {}
    for storage, paths in files.items():
        warm(paths)
        cached = resident_bytes(paths)
        evict(paths)
        out[storage] = {"size": sum(p.stat().st_size for p in paths), "after_read": cached,
                        "after_evict": resident_bytes(paths)}
        bp.log(f"[cache] {storage}: resident after reading {fmt_bytes(cached)}, after evicting "
               f"{fmt_bytes(out[storage]['after_evict'])} of {fmt_bytes(out[storage]['size'])}")
    return out


def read_speed(paths: list[Path], cold: bool) -> float:
    """MB/s of reading ``paths`` whole, after evicting them or with them cached."""
    (evict if cold else warm)(paths)
    t0 = time.perf_counter()
    warm(paths)
    return sum(p.stat().st_size for p in paths) / (time.perf_counter() - t0) / 1e6


def disk_reads(path: Path) -> tuple[int, int, int]:
    """Read requests completed, bytes read and milliseconds spent reading, so far, by the block
    device holding ``path`` (/proc/diskstats; the whole device, other processes included)."""
    dev = os.stat(path).st_dev
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if (int(f[0]), int(f[1])) == (os.major(dev), os.minor(dev)):
            return int(f[3]), int(f[5]) * 512, int(f[6])
    return 0, 0, 0


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "? (no fincore)"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- loader

class FolderDataset(VideoDataset):
    """The baseline: VideoDataset's sampling, transforms and input scaling, but each image read
    with ``cv2.imread`` from ``root/<id>/img_00001.jpg`` (``flow_x_``, ``flow_y_``), the folders
    ``tsn-prep export`` writes, instead of from the store. Only the storage differs."""

    def load(self, video_id: str, indices: list[int]) -> np.ndarray:
        flag = cv2.IMREAD_GRAYSCALE if SPECS[self.modality].is_flow else cv2.IMREAD_COLOR
        folder = self.source.root / video_id  # the folders' root; no store is opened
        channels = []
        for channel in SPECS[self.modality].channels:
            decoded = {}
            for i in sorted(set(indices)):  # each distinct image read once, as VideoDataset does
                path = folder / NAMING.filename(channel, i)
                decoded[i] = cv2.imread(str(path), flag)
                if decoded[i] is None:
                    raise ValueError(f"{path}: missing or not a decodable image")
            channels.append(np.stack([decoded[i] for i in indices]))
        return channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)


def make_dataset(storage: str, root: Path, records: list[Record], counts: dict[str, int],
                 modality: str) -> VideoDataset:
    """A training dataset as fit builds one: K segments, TrainAugment, BN-Inception's input norm."""
    cls = VideoDataset if storage == "lmdb" else FolderDataset
    transform = TrainAugment(INPUT_SIZE, SPECS[modality].scales, SPECS[modality].is_flow)
    return cls(StoreImages(root), records, counts, modality, SEGMENTS, True, transform)


def check_same_items(datasets: dict[str, VideoDataset], items: int) -> int:
    """Both storages must give identical tensors: the comparison is of storage alone."""
    a, b = datasets["lmdb"], datasets["folders"]
    step = max(1, len(a) // items)
    checked = 0
    for i in range(0, len(a), step)[:items]:
        (xa, ya), (xb, yb) = a[i], b[i]
        if ya != yb or not torch.equal(xa, xb):
            raise RuntimeError(f"item {i} ({a.records[i].video_id}, {a.modality}) differs between "
                               "the store and the JPEG folders")
        checked += 1
    return checked


def release_store(store: Path) -> None:
    """Close this process's LMDB handles on the store: pages a process has mapped are not evicted
    by posix_fadvise, and a num_workers=0 pass reads through the parent's handle."""
    Store(store).close()


@dataclasses.dataclass
class PassRun:
    timing: bp.Timing
    first_batch: float  # s until the first batch arrived (worker start-up included)
    disk: tuple[int, int, int]  # read requests, bytes, ms of the data's disk meanwhile


def loader_pass(ds: VideoDataset, workers: int, seed: int) -> PassRun:
    """One epoch over ``ds`` as fit's loader runs it (shuffled, workers started for the epoch)."""
    ds.set_epoch(seed)
    loader = DataLoader(ds, batch_size=BATCH, sampler=ShardSampler(len(ds), shuffle=True, seed=seed),
                        num_workers=workers, persistent_workers=False)
    first: list[float] = []

    def epoch() -> int:
        t0, videos = time.perf_counter(), 0
        for _, y in loader:
            if not first:
                first.append(time.perf_counter() - t0)
            videos += len(y)
        return videos

    disk0 = disk_reads(ds.store_root)
    timing, videos = bp.timed(epoch)
    disk = tuple(b - a for a, b in zip(disk0, disk_reads(ds.store_root)))
    if videos != len(ds):
        raise RuntimeError(f"a pass yielded {videos} videos, expected {len(ds)}")
    return PassRun(timing, first[0], disk)


@contextlib.contextmanager
def lmdb_readahead():
    """Meanwhile, LMDB environments open with read-ahead on (tsn_prep opens its read handles with
    it off, i.e. MADV_RANDOM on the map). Workers forked meanwhile inherit it."""
    original = lmdb.open

    def open_with_readahead(*args, **kwargs):
        return original(*args, **dict(kwargs, readahead=True))

    lmdb.open = open_with_readahead
    try:
        yield
    finally:
        lmdb.open = original


def files_of(files: dict[str, list[Path]], storage: str) -> list[Path]:
    return files["folders" if storage == "folders" else "lmdb"]


Config = tuple[str, int, str, str]  # (modality, workers, cache, storage)


def loader_configs() -> list[Config]:
    return [(m, w, c, st) for m in MODALITIES for w in WORKERS for c in CACHES
            for st in STORAGES + ((READAHEAD,) if c == "cold" else ())]


def bench_loader(store: Path, folders: Path, records: list[Record], files: dict[str, list[Path]],
                 s: Settings, policy: bp.RetryPolicy) -> dict:
    """Every configuration once per repeat: warm passes after warming every file, cold passes each
    after evicting every file of its storage; the order rotates between repeats."""
    datasets: dict[str, dict[str, VideoDataset]] = {}
    for modality in MODALITIES:
        counts = validate(records, Store(store), modality, NUM_CLASSES)
        datasets[modality] = {"lmdb": make_dataset("lmdb", store, records, counts, modality),
                              "folders": make_dataset("folders", folders, records, counts, modality)}
        datasets[modality][READAHEAD] = datasets[modality]["lmdb"]
    checked = {m: check_same_items(datasets[m], 16) for m in MODALITIES}
    bp.log(f"[loader] identical tensors from both storages on {checked} items")
    release_store(store)

    def run(config: Config, seed: int) -> PassRun:
        modality, workers, cache, storage = config
        if cache == "cold":
            evict(files_of(files, storage))
        with lmdb_readahead() if storage == READAHEAD else contextlib.nullcontext():
            result = loader_pass(datasets[modality][storage], workers, seed)
            release_store(store)  # the next pass opens its own handles, with its own flags
        return result

    configs = loader_configs()
    runs: dict[Config, list[PassRun]] = {c: [] for c in configs}
    pulled: dict[Config, Optional[int]] = {}
    bp.log("[loader] warm-up passes")
    warm(files["lmdb"] + files["folders"])
    for modality in MODALITIES:
        for storage in STORAGES:
            loader_pass(datasets[modality][storage], 0, 0)
    release_store(store)
    n = len(records)
    for rep in range(s.loader_repeats):
        for cache in CACHES:  # warm block, then cold block: one warm-up read per repeat suffices
            if cache == "warm":
                warm(files["lmdb"] + files["folders"])
            for config in bp.rotated([c for c in configs if c[2] == cache], rep):
                label = "{} workers={} {} {}".format(*config)
                r = policy.run(f"loader {label}", lambda: run(config, rep), lambda r: r.timing)
                runs[config].append(r)
                if cache == "cold" and rep == 0:  # what the pass brought into the page cache
                    pulled[config] = resident_bytes(files_of(files, config[3]))
                t = r.timing
                bp.log(f"[loader] repeat {rep + 1}/{s.loader_repeats} {label:32s} "
                       f"{n * SEGMENTS / t.wall:7.1f} snippets/s ({t.wall:5.2f} s, first batch "
                       f"{r.first_batch:.2f} s, {t.cpu / t.wall:.2f} cores, {r.disk[0]} disk reads, "
                       f"other load {t.other:.2f})")
    return {"videos": n, "repeats": s.loader_repeats, "runs": runs, "pulled": pulled,
            "checked": checked, "image_bytes": image_bytes(files["folders"])}


def loader_table(loader: dict) -> list[dict]:
    """One row per (modality, workers, cache): median snippets/s of both storages and the ratio."""
    n, rows = loader["videos"], []
    for m in MODALITIES:
        for w in WORKERS:
            for c in CACHES:
                passes = {st: rs for (m2, w2, c2, st), rs in loader["runs"].items()
                          if (m2, w2, c2) == (m, w, c)}
                runs = {st: [r.timing for r in rs] for st, rs in passes.items()}
                rate = {st: bp.median([n * SEGMENTS / t.wall for t in ts]) for st, ts in runs.items()}
                ours, base = runs["lmdb"], runs["folders"]
                rows.append({
                    "modality": m, "workers": w, "cache": c, "rate": rate,
                    "lmdb": rate["lmdb"], "folders": rate["folders"],
                    "ratio": rate["lmdb"] / rate["folders"],
                    "per_repeat": [b.wall / a.wall for a, b in zip(ours, base)],
                    "cores": {st: bp.median([t.cpu / t.wall for t in ts]) for st, ts in runs.items()},
                    "other": bp.median([t.other for t in ours + base]),
                    "pulled": {st: loader["pulled"].get((m, w, c, st)) for st in runs},
                    "first": {st: bp.median([r.first_batch for r in rs]) for st, rs in passes.items()},
                    "images": n * SEGMENTS * SPECS[m].snippet_length * len(SPECS[m].channels),
                    "image_kb": loader["image_bytes"][m] / 1000,
                    "disk": {st: [bp.median([r.disk[i] for r in rs]) for i in range(3)]
                             for st, rs in passes.items()},
                })
    return rows


# --------------------------------------------------------------------------- training steps

def rss_bytes() -> int:
    """Resident set size of this process now (/proc/self/statm)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def train_child(arch: str, modality: str, steps: int, warmup: int) -> dict:
    """Runs in a fresh process: build TSN, make ``warmup`` + ``steps`` SGD steps on a random batch
    of BATCH videos x SEGMENTS snippets, return the step times and the memory figures."""
    torch.manual_seed(0)
    rss_before = rss_bytes()  # torch imported, nothing built
    t0 = time.perf_counter()
    model = build_tsn(NUM_CLASSES, modality, arch, segments=SEGMENTS)
    model.train()
    optimizer = make_optimizer(model, 0.001, 0.9, 5e-4)
    build = time.perf_counter() - t0
    x = torch.randn(BATCH, SEGMENTS, SPECS[modality].input_channels, INPUT_SIZE, INPUT_SIZE)
    y = torch.randint(0, NUM_CLASSES, (BATCH,))
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_GRAD[modality])
        optimizer.step()

    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return {"step_times": times, "build_s": build, "rss_before": rss_before,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "params": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in params), "threads": torch.get_num_threads()}


@dataclasses.dataclass
class ChildRun:
    timing: bp.Timing  # of the whole child process, for the other-load check
    result: dict


def run_child(arch: str, modality: str, s: Settings) -> ChildRun:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--train-child",
           json.dumps([arch, modality, s.train_steps, s.warmup_steps])]
    timing, out = bp.timed(lambda: subprocess.run(cmd, check=True, capture_output=True, text=True))
    return ChildRun(timing, json.loads(out.stdout.strip().splitlines()[-1]))


def bench_train(s: Settings, policy: bp.RetryPolicy) -> dict:
    configs = [(a, m) for a in ARCHS for m in MODALITIES]
    runs: dict[tuple[str, str], list[ChildRun]] = {c: [] for c in configs}
    for rep in range(s.train_repeats):
        for arch, modality in bp.rotated(configs, rep):
            r = policy.run(f"train {arch} {modality}", lambda: run_child(arch, modality, s),
                           lambda r: r.timing)
            runs[(arch, modality)].append(r)
            st = r.result["step_times"]
            bp.log(f"[train] repeat {rep + 1}/{s.train_repeats} {arch:12s} {modality:4s} "
                   f"steps {bp.fmt_list(st)} s, peak RSS {r.result['peak_rss'] / 2**30:.2f} GiB, "
                   f"other load {r.timing.other:.2f}")
    return {"runs": runs, "repeats": s.train_repeats, "steps": s.train_steps,
            "warmup": s.warmup_steps}


def train_table(train: dict) -> list[dict]:
    """Per configuration: median over processes of each process's median step time, and ratios
    against bn_inception rgb measured in the same repeats."""
    runs = train["runs"]
    per_proc = {c: [bp.median(r.result["step_times"]) for r in rs] for c, rs in runs.items()}
    base = ("bn_inception", "rgb")
    rows = []
    for (arch, modality), times in per_proc.items():
        step = bp.median(times)
        res = [r.result for r in runs[(arch, modality)]]
        rows.append({
            "arch": arch, "modality": modality, "step": step, "per_proc": times,
            "ratio": step / bp.median(per_proc[base]),
            "per_repeat": [a / b for a, b in zip(times, per_proc[base])],
            "peak": bp.median([r["peak_rss"] for r in res]),
            "growth": bp.median([r["peak_rss"] - r["rss_before"] for r in res]),
            "before": bp.median([r["rss_before"] for r in res]),
            "params": res[0]["params"], "trainable": res[0]["trainable"],
            "threads": res[0]["threads"],
            "other": bp.median([r.timing.other for r in runs[(arch, modality)]]),
        })
    return rows


# --------------------------------------------------------------------------- report

def machine_info(clips: list[Path]) -> dict:
    info = bp.machine_info(clips)
    info["GPU"] = (f"none (torch.cuda.is_available() = {torch.cuda.is_available()}, "
                   f"cv2 sees {bp.cuda_device_count()} CUDA devices)")
    info["torch"] = torch.__version__
    info["torch threads (intra-op)"] = torch.get_num_threads()
    info["torch backends"] = (f"MKL {torch.backends.mkl.is_available()}, "
                              f"oneDNN {torch.backends.mkldnn.is_available()}, "
                              f"OpenMP {torch.backends.openmp.is_available()}")
    info["fincore"] = shutil.which("fincore") or "not found"
    for key in ("FFmpeg decoder threads (CAP_PROP_N_THREADS)", "joblib"):
        info.pop(key, None)  # extraction settings; nothing here uses them
    return info


def print_summary(machine: dict, loader: dict, train: dict, policy: bp.RetryPolicy) -> None:
    print("\n== machine")
    for k, v in machine.items():
        print(f"  {k}: {v}")
    print(f"\n== loader: {loader['videos']} distinct videos per pass, K={SEGMENTS}, batch {BATCH}, "
          f"{bp.repeat_text(loader['repeats'])}, median snippets/s")
    for r in loader_table(loader):
        print(f"  {r['modality']:4s} workers={r['workers']} {r['cache']:4s}  LMDB {r['lmdb']:7.1f}  "
              f"folders {r['folders']:7.1f}  ratio {r['ratio']:.2f} "
              f"(per repeat {bp.fmt_list(r['per_repeat'])})  other load {r['other']:.2f}")
    print(f"\n== training steps: batch {BATCH} x K={SEGMENTS} at {INPUT_SIZE}, "
          f"{train['warmup']} warm-up + {train['steps']} timed steps per process, "
          f"{bp.repeat_text(train['repeats'])}")
    for r in train_table(train):
        print(f"  {r['arch']:12s} {r['modality']:4s} {r['step']:6.2f} s/step "
              f"{1 / r['step']:5.3f} steps/s {BATCH / r['step']:5.2f} videos/s  x{r['ratio']:.2f}  "
              f"peak RSS {r['peak'] / 2**30:.2f} GiB (+{r['growth'] / 2**30:.2f} over "
              f"{r['before'] / 2**30:.2f})  per process {bp.fmt_list(r['per_proc'])}")
    print(f"\n{bp.disturbed_note(policy)}")


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def render_docs(machine: dict, data: dict, loader: dict, train: dict, cache_check: dict,
                speeds: dict, command: str, started: dt.datetime, minutes: float,
                build_minutes: float, load_start: tuple, videos: str, policy: bp.RetryPolicy) -> str:
    rows, trows = loader_table(loader), train_table(train)
    by = {(r["modality"], r["workers"], r["cache"]): r for r in rows}
    lines: list[str] = []
    add = lines.append
    add("# Training performance\n")
    add(f"Measured on {started:%Y-%m-%d} ({started:%H:%M %Z}) by `tools/bench_train.py` "
        f"({minutes:.1f} min, " + (f"plus {build_minutes:.1f} min building the data" if build_minutes
                                    >= 0.1 else "the data already cached")
        + "). To reproduce, from the repository root:\n")
    add(f"```\n{command}\n```\n")
    add("`--quick` runs the same measurements with less work (a minute or two, noisier). The first "
        "run builds the data (below) under `--cache` (default: the system temp directory), which "
        "takes a few minutes, mostly CPU TV-L1.\n")
    add("**No GPU was available** on this machine, so **no GPU figure was measured**: every number "
        "below is CPU only (PyTorch on 2 cores). A GPU would make each training step much faster, "
        "which changes what limits training (see the last section); by how much is not measured "
        "here.\n")

    add("## Machine\n")
    add("| | |\n|---|---|")
    for k, v in machine.items():
        add(f"| {k} | {v} |")
    add(f"| load average at start (1, 5, 15 min) | {bp.fmt_list(load_start)} |\n")
    every = [r.timing for rs in loader["runs"].values() for r in rs]
    every += [r.timing for rs in train["runs"].values() for r in rs]
    add("The machine is shared, so every timed run also records how many cores *other* processes "
        "kept busy meanwhile (`/proc/stat` minus the benchmark's own CPU time; \"other load\"). A "
        f"run with more than {policy.max_other} cores of other load is run again (at most "
        f"{policy.retries} times; the last attempt counts). {bp.disturbed_note(policy)} In the runs "
        f"kept, other load peaked at {max(t.other for t in every):.2f} cores. Every ratio is taken "
        "against a baseline measured in the same run, repeats are interleaved (the order rotates "
        "between repeats) and medians are reported.\n")

    add("## Data\n")
    per_clip = data["per_clip"]
    add(f"The {data['distinct_clips']} real clips of `{videos}`, extracted by `tsn-prep` at the "
        f"default 340x256: RGB frames of every frame, TV-L1 flow of the first {FLOW_FRAMES} frames "
        f"(CPU TV-L1 takes most of a second per pair). Images per video:\n")
    add("| clip | RGB frames | flows (x and y JPEG each) |\n|---|---|---|")
    for clip, counts in per_clip.items():
        add(f"| {clip} | {counts['rgb']} | {counts['flow']} |")
    add("")
    add(f"A pass over only five videos is far too short to time, so the data holds every clip "
        f"{data['copies']} times as **distinct videos** (`c00/<clip>` ... "
        f"`c{data['copies'] - 1:02d}/<clip>`): the extracted folders were "
        "copied (real copies, not links) and imported with `tsn-prep import-frames`, and the "
        "baseline's folders were written from that store by `tsn-prep export`, so both storages "
        f"hold the same bytes. A pass reads {data['videos']} of these videos, each once, so a cold "
        "pass never finds a video that an earlier item of the same pass pulled into the cache. "
        "(Replicating list entries that point at five videos "
        "would instead make every cold pass mostly warm after its first five videos.) The content "
        "repeats, so JPEG sizes and decode costs are those of five clips. Store: "
        f"{fmt_bytes(data['lmdb_bytes'])} in one LMDB shard; folders: {fmt_bytes(data['folder_bytes'])} "
        f"in {data['folder_files']} files.\n")

    add("## Loader throughput\n")
    add(f"Snippets per second (videos/s x K = {SEGMENTS}; a snippet is 1 frame for rgb, 5 flow x/y "
        f"pairs for flow), median of {bp.repeat_text(loader['repeats'])} of one pass over "
        f"{loader['videos']} videos, batch {BATCH}. Ratio = ours / JPEG folders (above 1: the store "
        "is faster).\n")
    add("| modality | num_workers | page cache | ours: VideoDataset on LMDB | JPEG folders + cv2.imread "
        "| ratio | ratio per repeat | cores used (ours / folders) | other load |")
    add("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        add(f"| {r['modality']} | {r['workers']} | {r['cache']} | {r['lmdb']:.0f} snippets/s "
            f"({r['lmdb'] / SEGMENTS:.1f} videos/s) | {r['folders']:.0f} snippets/s "
            f"({r['folders'] / SEGMENTS:.1f} videos/s) | **{r['ratio']:.2f}** | "
            f"{bp.fmt_list(r['per_repeat'])} | {r['cores']['lmdb']:.2f} / {r['cores']['folders']:.2f} "
            f"| {r['other']:.2f} |")
    add("")
    add("### What is compared\n")
    add("- **Ours**: `tsn_train.dataset.VideoDataset` as `tsn-train fit` builds it for training: "
        f"K={SEGMENTS} segments, a random snippet per segment, `TrainAugment({INPUT_SIZE}, "
        "MODALITIES[modality].scales, is_flow)` (multi-scale corner crop, resize, flip), "
        "uint8 items (input scaling happens on the device, outside the loader); images read from the store in one LMDB read transaction per "
        "channel and decoded with `cv2.imdecode`.")
    add("- **Baseline**: a subclass of `VideoDataset` that overrides only `load`: each image is "
        "read with `cv2.imread` from `<folders>/<id>/img_00001.jpg` (`flow_x_00001.jpg`, "
        "`flow_y_00001.jpg`), the layout dense_flow, mmaction2 and tsn-pytorch use. Sampling, "
        "augmentation, input scaling and collation are the same code. Both datasets gave identical "
        f"tensors on {sum(loader['checked'].values())} items checked before timing.")
    add("- Both run under the same `DataLoader` as `fit` (`ShardSampler` shuffling, batch "
        f"{BATCH}, `persistent_workers=False`, so num_workers=2 starts its two "
        "workers inside every timed pass, as every epoch does). OpenCV runs one thread per "
        "process (`single_threaded_decoding()`, as `fit` sets before starting workers); PyTorch "
        "keeps its default threads in the main process and one per worker.")
    add("- Warm: every file of both storages is read whole before each repeat's warm passes, so "
        "everything is in the page cache. An untimed warm-up pass per modality and storage runs "
        "first.\n")
    add("### Cold page cache: how, and what it means here\n")
    check = cache_check
    add("Before every cold pass the benchmark calls `os.posix_fadvise(fd, 0, 0, "
        "POSIX_FADV_DONTNEED)` on every file of that storage (the LMDB shard's `data.mdb` and "
        "`lock.mdb`; every exported JPEG). No root is needed, but two conditions matter: pages must "
        "be clean (the data is `sync`ed once after it is built; dirty pages are not dropped), and no "
        "process may have them mapped (the benchmark closes its LMDB handles before evicting: "
        "pages mapped by a process are skipped). Checked with util-linux `fincore` at the start:")
    for storage, c in check.items():
        add(f"- {storage}: {fmt_bytes(c['size'])} of files; resident after reading them "
            f"{fmt_bytes(c['after_read'])}, after evicting {fmt_bytes(c['after_evict'])}.")
    add(f"- Reading files whole, cold, went at {speeds['lmdb_cold']:.0f} MB/s for `data.mdb` "
        f"(sequential) and {speeds['folders_cold']:.0f} MB/s over the JPEG files (warm: "
        f"{speeds['lmdb_warm']:.0f} / {speeds['folders_warm']:.0f} MB/s).")
    add("")
    add("So \"cold\" means *not in this VM's page cache*: reads go to the virtual disk, which is "
        "fast here and may well be cached by the host. On a real disk, a network file system or a "
        "busy cluster file system a cold read costs far more (milliseconds per random read), and "
        "the number of files and reads per snippet matters more than it can here. Directory "
        "entries and inodes stay cached (dropping them needs root and affects the whole machine), "
        "so the cold folder figures do not pay for path look-ups on disk either.\n")
    add("### Cold reads in detail, and LMDB read-ahead\n")
    add("`tsn_prep` opens the store's read handles with LMDB's `readahead=False`, which advises "
        "the kernel that the map is read at random (`MADV_RANDOM`): a cold page fault then reads "
        "just that 4 KiB page, and the pages of one JPEG are faulted in one after another as its "
        "bytes are copied out. A cold pass was also run with the handles opened with read-ahead on "
        "(a diagnostic: `lmdb.open` patched meanwhile; not an option of `tsn_prep`). Disk read "
        "requests (median per pass) are the data disk's completed reads from `/proc/diskstats` "
        "(the whole device, so other processes' reads count too); the bytes a pass brought into "
        "the page cache are from `fincore` after the first repeat's pass. The images a pass "
        "decodes amount to about "
        + ", ".join(f"{fmt_bytes(data['needed'][m])} ({m})" for m in MODALITIES) + ".\n")
    add("| modality | num_workers | ours (read-ahead off, as shipped) | ours, read-ahead on | "
        "JPEG folders | disk read requests: ours / read-ahead on / folders | ms waiting on them "
        "(summed over requests) | brought into the page cache |")
    add("|---|---|---|---|---|---|---|---|")
    kinds = ("lmdb", READAHEAD, "folders")
    for r in rows:
        if r["cache"] == "cold":
            add(f"| {r['modality']} | {r['workers']} | {r['rate']['lmdb']:.0f} snippets/s | "
                f"{r['rate'][READAHEAD]:.0f} snippets/s | {r['rate']['folders']:.0f} snippets/s | "
                + " / ".join(f"{r['disk'][k][0]:.0f}" for k in kinds) + " | "
                + " / ".join(f"{r['disk'][k][2]:.0f}" for k in kinds) + " | "
                + " / ".join(fmt_bytes(r["pulled"][k]) for k in kinds) + " |")
    add("")
    add("### Findings\n")
    add(loader_findings(by))

    add("## Training steps\n")
    add(f"`tsn_train.models.build_tsn(num_classes={NUM_CLASSES}, modality, arch)` with K={SEGMENTS} "
        f"segments, batch {BATCH} (input `({BATCH}, {SEGMENTS}, C, {INPUT_SIZE}, {INPUT_SIZE})`, C = 3 "
        "for rgb, 10 for flow; random data, random initial weights), in training mode with partial "
        "BN. One step: forward, cross-entropy on the consensus, backward, gradient clipping "
        f"(L2 norm {CLIP_GRAD['rgb']:.0f} rgb / {CLIP_GRAD['flow']:.0f} flow, as the presets), and "
        "`make_optimizer(model, 0.001, 0.9, 5e-4)` SGD (TSN's parameter groups). Each "
        f"configuration runs in a fresh process: {train['warmup']} untimed warm-up steps, then "
        f"{train['steps']} timed steps; {bp.repeat_text(train['repeats'])} (processes) per "
        "configuration. Time per step is the median over processes of each process's median step. "
        f"PyTorch used {trows[0]['threads']} intra-op threads.\n")
    add("| arch | modality | s per step | steps/s | videos/s | snippets/s | time ratio to "
        "bn_inception rgb | peak RSS | peak RSS minus RSS before building | parameters (trainable) "
        "| other load |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in trows:
        add(f"| {r['arch']} | {r['modality']} | {r['step']:.2f} | {1 / r['step']:.3f} | "
            f"{BATCH / r['step']:.2f} | {BATCH * SEGMENTS / r['step']:.1f} | **{r['ratio']:.2f}** "
            f"({bp.fmt_list(r['per_repeat'])}) | {gib(r['peak'])} | {gib(r['growth'])} | "
            f"{r['params'] / 1e6:.1f} M ({r['trainable'] / 1e6:.1f} M) | {r['other']:.2f} |")
    add("")
    add("Peak RSS is `resource.getrusage(RUSAGE_SELF).ru_maxrss` of the fresh process at the end "
        f"(it includes the interpreter and imported libraries, {gib(trows[0]['before'])} before "
        "anything is built); the next column subtracts the RSS measured after the imports, just "
        "before the model is built: the model, its gradients, SGD momentum and the activations "
        "kept for backward.\n")
    add(train_findings(trows, rows))
    return "\n".join(lines) + "\n"


def verdicts(rows: list[dict]) -> str:
    """Ours against the folders per configuration, judged on every repeat: a difference counts
    only when the per-repeat ratios all fall on the same side of 1."""
    groups: dict[str, list[str]] = {"no clear difference (per-repeat ratios on both sides of 1)": [],
                                    "the store slower in every repeat": [],
                                    "the store faster in every repeat": []}
    for r in rows:
        pr = r["per_repeat"]
        key = list(groups)[1 if max(pr) < 1 else 2 if min(pr) > 1 else 0]
        groups[key].append(f"{r['modality']} num_workers={r['workers']} ({r['ratio']:.2f}; "
                           f"{min(pr):.2f}-{max(pr):.2f})")
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items() if v)


def loader_findings(by: dict) -> str:
    """The explanation of the loader figures, worded after what was measured."""
    def rows(cache: str) -> list[dict]:
        return [by[(m, w, cache)] for m in MODALITIES for w in WORKERS]

    warm = [r["ratio"] for r in rows("warm")]
    text = (f"**Warm page cache**: {verdicts(rows('warm'))} (median ratio; range over repeats). "
            "With everything cached both read a few tens of kilobytes from memory per image, and "
            "the time goes to JPEG decoding, cropping, resizing and conversion to float, which are "
            "the same code. What the store saves (an `open`, a `close` and a path look-up per "
            "image) is microseconds against about a millisecond of decoding per image. ")
    if max(abs(r - 1) for r in warm) <= 0.15:
        text += ("So differences of a few per cent either way are this machine's drift between "
                 "passes, not the storage: warm, the store does not make loading faster. Its "
                 "advantages are elsewhere (one file per shard instead of hundreds per video, "
                 "atomic and resumable writes, no naming conventions to guess).")
    else:
        text += "A difference larger than 15 % is not explained by that, and is worth a look."
    items = [
        text,
        f"**Cold page cache**: {verdicts(rows('cold'))}. " + cold_explanation(by),
    ]
    speedup = {(m, k): by[(m, 2, "warm")][k] / by[(m, 0, "warm")][k] for m in MODALITIES for k in STORAGES}
    first = {w: bp.median([by[(m, w, "warm")]["first"][k] for m in MODALITIES for k in STORAGES])
             for w in WORKERS}
    items.append(
        "**num_workers=2 over 0** (warm): "
        + "; ".join(f"{m} {speedup[(m, 'lmdb')]:.2f}x ours, {speedup[(m, 'folders')]:.2f}x folders"
                    for m in MODALITIES)
        + ". The machine has two cores, and with num_workers=0 the main process already spreads "
        "part of the work over both (OpenCV and PyTorch use two threads there; workers use one "
        f"each). The workers also start inside every timed pass: the first batch arrives after "
        f"{first[2]:.2f} s with two workers against {first[0]:.2f} s without (medians), which "
        "weighs on short passes.")
    return "\n".join(f"- {item}" for item in items) + "\n"


def cold_explanation(by: dict) -> str:
    """Why the cold ratios are what they are, from the disk counters and the read-ahead diagnostic."""
    def per_image(m: str, k: str) -> float:
        r = by[(m, 0, "cold")]
        return r["disk"][k][0] / r["images"]

    rgb, flow = by[("rgb", 0, "cold")], by[("flow", 0, "cold")]
    text = (f"Per cold pass with num_workers=0 the store made {per_image('rgb', 'lmdb'):.1f} disk "
            f"read requests per rgb image (the images average {rgb['image_kb']:.0f} KB) where the "
            f"folders made {per_image('rgb', 'folders'):.1f}: a file's `read()` fetches a JPEG in one or "
            "two requests, while read-ahead off fetches it 4 KiB page by 4 KiB page, each a "
            f"synchronous wait. Flow images are small (about {flow['image_kb']:.0f} KB), so there it "
            f"was {per_image('flow', 'lmdb'):.1f} requests per image against "
            f"{per_image('flow', 'folders'):.1f}, and the difference in speed "
            f"{'vanishes' if all(abs(by[('flow', w, 'cold')]['ratio'] - 1) < 0.05 for w in WORKERS) else 'is smaller'}. ")
    ra = [by[(m, w, "cold")]["rate"][READAHEAD] / by[(m, w, "cold")]["rate"]["lmdb"]
          for m in MODALITIES for w in WORKERS]
    pulled = {k: rgb["pulled"][k] for k in ("lmdb", READAHEAD)}
    if max(ra) < 1.05:
        text += (f"Read-ahead on is no cure (ratios to read-ahead off {bp.fmt_list(ra)} for rgb "
                 "num_workers 0 and 2, then flow): every fault then reads a large window around it"
                 + (f" ({fmt_bytes(pulled[READAHEAD])} per rgb pass instead of "
                    f"{fmt_bytes(pulled['lmdb'])})" if None not in pulled.values() else "")
                 + ", which on a dataset larger than memory would also evict useful pages; LMDB "
                 "advises it off for large databases, and `tsn_prep` is right to. ")
    else:
        text += (f"Read-ahead on made cold passes {bp.fmt_list(ra)} times as fast, at the price of "
                 "reading far more than the pass needs (table above). ")
    text += ("Fetching each image in one request (the store knows each value's size) should "
             "narrow the gap; that is a possible change to `tsn_prep`, not measured here. On this "
             "VM's fast virtual disk the gap stays modest next to decoding; on slower storage it "
             "would grow with the number of requests.")
    return text


def train_findings(trows: list[dict], lrows: list[dict]) -> str:
    """What the step times mean for training here, worded after what was measured."""
    step = {(r["arch"], r["modality"]): r["step"] for r in trows}
    loader_rate = {r["modality"]: r["lmdb"] for r in lrows if r["workers"] == 2 and r["cache"] == "warm"}
    load = {m: BATCH * SEGMENTS / loader_rate[m] for m in MODALITIES}
    share = [100 * load[m] / step[("bn_inception", m)] for m in MODALITIES]
    items = [
        "**Where the time goes**: loading one batch ("
        + ", ".join(f"{m} {load[m]:.2f} s" for m in MODALITIES)
        + f"; num_workers=2, warm) takes {min(share):.0f}-{max(share):.0f} % of a bn_inception "
        "step (" + ", ".join(f"{m} {step[('bn_inception', m)]:.2f} s" for m in MODALITIES)
        + "), and both compete for the same two cores. On this CPU the network dominates, so the "
        "storage format makes no measurable difference to training speed."]
    rn = [step[("resnet50", m)] / step[("bn_inception", m)] for m in MODALITIES]
    text = f"**resnet50 vs bn_inception**: {bp.fmt_list(rn)}x the time per step (rgb, flow)"
    if all(1.5 <= r <= 3 for r in rn):
        text += (", in line with its roughly twice the computation per image (about 4.1 against "
                 "2 billion multiply-adds at 224x224)")
    items.append(text + f"; its peak memory is also higher ({gib(max(r['peak'] for r in trows))}).")
    flow_rgb = [step[(a, "flow")] / step[(a, "rgb")] for a in ARCHS]
    items.append(
        f"**flow vs rgb**: {bp.fmt_list(flow_rgb)}x ({', '.join(ARCHS)}). Only the first "
        "convolution differs (10 input channels instead of 3), a small part of the work.")
    items.append(
        "**On a GPU** (not measured) a step would take a small fraction of the time above, and the "
        "loader would have to deliver many more snippets per second to keep up: there the loader "
        "figures (workers, cores, and cold reads on the storage in use) would decide the training "
        "speed.")
    return "\n".join(f"- {item}" for item in items) + "\n"


# --------------------------------------------------------------------------- main

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=bp.DEFAULT_VIDEOS,
                   help=f"directory of the clips (default: {bp.DEFAULT_VIDEOS})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"where the extracted and replicated data is kept between runs "
                        f"(default: {DEFAULT_CACHE})")
    p.add_argument("--quick", action="store_true", help="a minute or two instead of about ten")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats of every loader pass and training process (>= 1)")
    bp.add_disturbance_options(p)
    p.add_argument("--write-docs", action="store_true",
                   help=f"write the figures into {DOCS.relative_to(REPO)} (its training part only)")
    p.add_argument("--train-child", help=argparse.SUPPRESS)  # internal: one training process
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    single_threaded_decoding()  # as fit does before starting loader workers
    if args.train_child:
        print(json.dumps(train_child(*json.loads(args.train_child))))
        return 0
    s = QUICK if args.quick else FULL
    if args.repeats is not None:
        s = dataclasses.replace(s, loader_repeats=args.repeats, train_repeats=args.repeats)
    t_build = time.perf_counter()
    videos, clips, cache, store, folders = data_from_args(args.videos.resolve(), args.cache, s.copies)
    bp.log(f"[data] ready in {time.perf_counter() - t_build:.0f} s: {store}, {folders}")

    policy = bp.RetryPolicy(args.max_other_load, args.retries)
    started, t0, load_start = dt.datetime.now().astimezone(), time.perf_counter(), os.getloadavg()
    machine = machine_info(clips)
    records = pass_records(store, clips, s.pass_copies)
    files = data_files(store, folders)
    data = data_summary(store, clips, records, files)
    release_store(store)
    cache_check = check_eviction(files)
    speeds = {f"{k}_{c}": read_speed(files[k], c == "cold") for k in STORAGES for c in CACHES}
    loader = bench_loader(store, folders, records, files, s, policy)
    train = bench_train(s, policy)
    minutes = (time.perf_counter() - t0) / 60

    print_summary(machine, loader, train, policy)
    print(f"\n(total {minutes:.1f} min, plus {(t0 - t_build) / 60:.1f} min getting the data)")
    if args.write_docs:
        text = render_docs(machine, data, loader, train, cache_check, speeds,
                           bp.docs_command(__file__, argv), started, minutes, (t0 - t_build) / 60,
                           load_start, bp.display_path(videos), policy)
        bp.write_section(DOCS, "bench_train", text)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
