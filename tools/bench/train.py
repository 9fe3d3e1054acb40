"""tsn-train's input pipeline and training steps on the CPU.

1. Loader throughput (snippets/s) of ``tsn_train.dataset.VideoDataset`` over the LMDB store
   against the same dataset over ``FolderImages`` (the JPEG folders ``tsn-prep export`` writes):
   only the image source differs. rgb and flow, num_workers 0 and 2, warm and cold page cache
   (evicted before every cold pass), plus cold passes with LMDB read-ahead on (a diagnostic).
2. Training steps of ``tsn_train.models`` TSN (bn_inception and resnet50, rgb and flow, the
   reference settings of ``tsn_train.config``), each configuration in a fresh process.

Ratios against a baseline of the same run, interleaved repeats, medians. The data is built once
and cached (``--cache``).

    python -m tools.bench.train --quick              # smaller data, one repeat
    python -m tools.bench.train --write-docs         # about 10 minutes once the data is cached
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tools.bench import data as bd
from tools.bench.common import (Clock, RetryPolicy, disk_reads, display_path, evict, finish, log, machine_info, median,
                                parse_args, parser, resident_bytes, rotated, rss_bytes, timed, warm)
from tsn_core import modalities
from tsn_core.store import Store
from tsn_train.archs import ARCHS as ARCH_SPECS
from tsn_train.config import REFERENCE, FitConfig
from tsn_train.dataset import ShardSampler, StoreImages, VideoDataset, single_threaded_decoding
from tsn_train.lists import validate
from tsn_train.models import build_tsn
from tsn_train.optim import make_optimizer
from tsn_train.transforms import TrainAugment

FIT = FitConfig(modality="rgb", store="-", train_list="-", out="-")  # fit's defaults
SEGMENTS, CROP_POSITIONS = FIT.segments, FIT.crop_positions
BATCH = 8             # a small batch: CPU steps (fit's default is FIT.batch_size)
NUM_CLASSES = 101     # UCF101's; labels here are 0-4
MODALITIES, WORKERS, CACHES = ("rgb", "flow"), (0, 2), ("warm", "cold")
STORAGES, READAHEAD = ("lmdb", "folders"), "lmdb_readahead"  # ratios are lmdb / folders
ARCHS = ("bn_inception", "resnet50")


@dataclasses.dataclass(frozen=True)
class Settings:
    copies: int
    pass_copies: int
    flow_frames: int
    loader_repeats: int
    train_repeats: int
    train_steps: int
    warmup_steps: int


FULL = Settings(bd.COPIES, bd.COPIES, bd.FLOW_FRAMES, 5, 3, 2, 2)
QUICK = Settings(8, 8, 12, 1, 1, 1, 1)


def input_size(arch: str) -> int:
    return ARCH_SPECS[arch].input_size


def make_dataset(source, records, counts, modality: str) -> VideoDataset:
    """A training dataset as fit builds one (decode on the loader): K segments, TrainAugment."""
    spec = modalities.get(modality)
    augment = TrainAugment(input_size("bn_inception"), REFERENCE[modality].scales, spec.is_flow,
                           crop_positions=CROP_POSITIONS)
    return VideoDataset(source, records, counts, modality, SEGMENTS, True, augment)


@contextlib.contextmanager
def lmdb_readahead(on: bool):
    """Meanwhile, shards open with the kernel's default read-ahead (tsn_prep opens them with
    ``POSIX_FADV_RANDOM``: read-ahead off)."""
    from tsn_core import readahead

    original = readahead.RANDOM
    if on:
        readahead.RANDOM = readahead.NORMAL
    try:
        yield
    finally:
        readahead.RANDOM = original


def loader_pass(ds: VideoDataset, workers: int, seed: int, disk_of: Path):
    """One epoch as fit's loader runs it: (timing, first batch s, disk counters)."""
    ds.set_epoch(seed)
    loader = DataLoader(ds, batch_size=BATCH, sampler=ShardSampler(len(ds), shuffle=True, seed=seed),
                        num_workers=workers, persistent_workers=False)
    first: list[float] = []

    def epoch() -> int:
        t0, n = time.perf_counter(), 0
        for _, y in loader:
            first.append(time.perf_counter() - t0)
            n += len(y)
        return n
    d0 = disk_reads(disk_of)
    timing, n = timed(epoch)
    if n != len(ds):
        raise RuntimeError(f"a pass yielded {n} videos, expected {len(ds)}")
    return timing, first[0], [b - a for a, b in zip(d0, disk_reads(disk_of))]


def bench_loader(store: Path, folders: Path, records, files, s: Settings, policy: RetryPolicy) -> dict:
    datasets = {}
    for m in MODALITIES:
        counts = validate(records, Store(store), m, NUM_CLASSES)
        datasets[m] = {"lmdb": make_dataset(StoreImages(store), records, counts, m),
                       "folders": make_dataset(bd.FolderImages(folders), records, counts, m)}
        datasets[m][READAHEAD] = datasets[m]["lmdb"]
    checked = 0
    for m in MODALITIES:  # identical tensors: the comparison is of the storage alone
        a, b = datasets[m]["lmdb"], datasets[m]["folders"]
        for i in range(0, len(a), max(1, len(a) // 16))[:16]:
            if a[i][1] != b[i][1] or not torch.equal(a[i][0], b[i][0]):
                raise RuntimeError(f"item {i} ({m}) differs between the store and the folders")
            checked += 1

    def release():  # pages a process has mapped are not evicted
        Store(store).close()
        for d in datasets.values():
            d["lmdb"].source._store = None

    def run(cfg, seed):
        m, w, cache, st = cfg
        if cache == "cold":
            release()
            evict(files["folders" if st == "folders" else "lmdb"])
        with lmdb_readahead(st == READAHEAD):
            out = loader_pass(datasets[m][st], w, seed, store)
            release()
        return out
    configs = [(m, w, c, st) for m in MODALITIES for w in WORKERS for c in CACHES
               for st in STORAGES + ((READAHEAD,) if c == "cold" else ())]
    runs: dict = {c: [] for c in configs}
    pulled: dict = {}
    warm(files["lmdb"] + files["folders"])
    for m in MODALITIES:
        for st in STORAGES:
            loader_pass(datasets[m][st], 0, 0, store)
    release()
    for rep in range(s.loader_repeats):
        for cache in CACHES:
            if cache == "warm":
                warm(files["lmdb"] + files["folders"])
            for cfg in rotated([c for c in configs if c[2] == cache], rep):
                r = policy.run(str(cfg), lambda: run(cfg, rep), lambda r: r[0])
                runs[cfg].append(r)
                if cache == "cold" and rep == 0:
                    pulled[cfg] = resident_bytes(files["folders" if cfg[3] == "folders" else "lmdb"])
                log(f"[loader] {rep + 1}/{s.loader_repeats} {cfg}: {len(records) * SEGMENTS / r[0].wall:.0f} snippets/s")
    n, rows = len(records), []
    for m in MODALITIES:
        for w in WORKERS:
            for c in CACHES:
                rs = {st: runs[(m, w, c, st)] for st in STORAGES + ((READAHEAD,) if c == "cold" else ())}
                rate = {st: median(n * SEGMENTS / t.wall for t, _, _ in v) for st, v in rs.items()}
                row = {"modality": m, "workers": w, "cache": c, "lmdb": rate["lmdb"], "folders": rate["folders"],
                       "lmdb_videos": rate["lmdb"] / SEGMENTS, "folders_videos": rate["folders"] / SEGMENTS,
                       "ratio": rate["lmdb"] / rate["folders"],
                       "per_repeat": [b[0].wall / a[0].wall for a, b in zip(rs["lmdb"], rs["folders"])],
                       "cores_lmdb": median(t.cpu / t.wall for t, _, _ in rs["lmdb"]),
                       "cores_folders": median(t.cpu / t.wall for t, _, _ in rs["folders"]),
                       "other": median(t.other for st in STORAGES for t, _, _ in rs[st]),
                       "first": {st: median(f for _, f, _ in rs[st]) for st in STORAGES}}
                if c == "cold":
                    kinds = ("lmdb", READAHEAD, "folders")
                    row.update(readahead=rate[READAHEAD], pulled=[pulled.get((m, w, c, k)) for k in kinds],
                               requests=[median(d[0] for _, _, d in rs[k]) for k in kinds],
                               wait_ms=[median(d[2] for _, _, d in rs[k]) for k in kinds])
                rows.append(row)
    kept = [t.other for v in runs.values() for t, _, _ in v]
    return {"repeats": s.loader_repeats, "checked": checked, "rows": rows}, kept


def train_child(arch: str, modality: str, steps: int, warmup: int) -> dict:
    """In a fresh process: TSN with the reference settings, ``warmup`` + ``steps`` SGD steps on a
    random batch; step times and memory."""
    torch.manual_seed(0)
    ref, size = REFERENCE[modality], input_size(arch)
    rss_before = rss_bytes()
    model = build_tsn(NUM_CLASSES, modality, arch, segments=SEGMENTS, dropout=ref.dropout)
    model.train()
    optimizer = make_optimizer(model, ref.lr, FIT.momentum, FIT.weight_decay)
    x = torch.randn(BATCH, SEGMENTS, modalities.get(modality).input_channels, size, size)
    y = torch.randint(0, NUM_CLASSES, (BATCH,))
    params = [p for p in model.parameters() if p.requires_grad]
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(params, ref.clip_grad)
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return {"step_times": times, "rss_before": rss_before,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "params": sum(p.numel() for p in model.parameters()), "trainable": sum(p.numel() for p in params),
            "threads": torch.get_num_threads()}


def bench_train(s: Settings, policy: RetryPolicy) -> tuple[dict, list]:
    configs = [(a, m) for a in ARCHS for m in MODALITIES]
    runs: dict = {c: [] for c in configs}
    for rep in range(s.train_repeats):
        for arch, m in rotated(configs, rep):
            cmd = [sys.executable, "-m", "tools.bench.train", "--train-child",
                   json.dumps([arch, m, s.train_steps, s.warmup_steps])]
            t, out = policy.run(f"train {arch} {m}", lambda: timed(lambda: subprocess.run(
                cmd, check=True, capture_output=True, text=True)), lambda r: r[0])
            runs[(arch, m)].append((t, json.loads(out.stdout.strip().splitlines()[-1])))
            log(f"[train] {rep + 1}/{s.train_repeats} {arch} {m}: {runs[(arch, m)][-1][1]['step_times']}")
    per_proc = {c: [median(r["step_times"]) for _, r in v] for c, v in runs.items()}
    base, rows = ("bn_inception", "rgb"), []
    for (arch, m), times in per_proc.items():
        step, res = median(times), [r for _, r in runs[(arch, m)]]
        rows.append({"arch": arch, "modality": m, "step": step, "steps_per_s": 1 / step, "videos_per_s": BATCH / step,
                     "snippets_per_s": BATCH * SEGMENTS / step, "ratio": step / median(per_proc[base]),
                     "per_repeat": [a / b for a, b in zip(times, per_proc[base])],
                     "peak_gib": median(r["peak_rss"] for r in res) / 2**30,
                     "growth_gib": median(r["peak_rss"] - r["rss_before"] for r in res) / 2**30,
                     "params_m": res[0]["params"] / 1e6, "trainable_m": res[0]["trainable"] / 1e6,
                     "other": median(t.other for t, _ in runs[(arch, m)])})
    first = [r for _, r in next(iter(runs.values()))]
    return ({"warmup": s.warmup_steps, "steps": s.train_steps, "repeats": s.train_repeats, "rows": rows,
             "threads": first[0]["threads"], "before_gib": first[0]["rss_before"] / 2**30},
            [t.other for v in runs.values() for t, _ in v])


def findings(loader: dict, train: dict, kb: dict) -> dict:
    """The numbers the findings quote, from the tables."""
    by = {(r["modality"], r["workers"], r["cache"]): r for r in loader["rows"]}
    def per_image(m: str, i: int) -> float:
        return by[(m, 0, "cold")]["requests"][i] / (loader["videos"] * SEGMENTS * bd.images_per_snippet(m))
    out = {
        "cold": {"rgb_lmdb": per_image("rgb", 0), "rgb_folders": per_image("rgb", 2), "rgb_kb": kb.get("rgb", 0),
                 "flow_lmdb": per_image("flow", 0), "flow_folders": per_image("flow", 2), "flow_kb": kb.get("flow", 0),
                 "flow_even": all(abs(by[("flow", w, "cold")]["ratio"] - 1) < 0.05 for w in WORKERS),
                 "readahead": [by[(m, w, "cold")]["readahead"] / by[(m, w, "cold")]["lmdb"] for m in MODALITIES for w in WORKERS],
                 "pulled_readahead": by[("rgb", 0, "cold")]["pulled"][1], "pulled_lmdb": by[("rgb", 0, "cold")]["pulled"][0]},
        "workers_speedup": {m: {k: by[(m, 2, "warm")][k] / by[(m, 0, "warm")][k] for k in STORAGES} for m in MODALITIES},
        "first_batch": {str(w): median(by[(m, w, "warm")]["first"][k] for m in MODALITIES for k in STORAGES) for w in WORKERS}}
    if not train["rows"]:
        return out
    step = {(r["arch"], r["modality"]): r for r in train["rows"]}
    load = {m: BATCH * SEGMENTS / by[(m, 2, "warm")]["lmdb"] for m in MODALITIES}
    share = [100 * load[m] / step[("bn_inception", m)]["step"] for m in MODALITIES]
    out["train_findings"] = {
            "load": load, "share_min": min(share), "share_max": max(share),
            "bn_step": {m: step[("bn_inception", m)]["step"] for m in MODALITIES},
            "resnet_vs_bn": [step[("resnet50", m)]["step"] / step[("bn_inception", m)]["step"] for m in MODALITIES],
            "resnet_peak": max(step[("resnet50", m)]["peak_gib"] for m in MODALITIES),
            "flow_vs_rgb": [step[(a, "flow")]["step"] / step[(a, "rgb")]["step"] for a in ARCHS]}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = parser(__doc__, videos=True, retry=True)
    p.add_argument("--cache", type=Path, default=bd.DEFAULT_CACHE, help=f"where the data is kept (default: {bd.DEFAULT_CACHE})")
    p.add_argument("--quick", action="store_true", help="smaller data (8 copies, 12 flow frames), one repeat")
    p.add_argument("--repeats", type=int, help="repeats of every loader pass and training process")
    p.add_argument("--no-train", action="store_true", help="loader only (skips the training steps)")
    p.add_argument("--train-child", help=argparse.SUPPRESS)
    args = parse_args(p, argv)
    single_threaded_decoding()  # as fit does before starting loader workers
    if args.train_child:
        print(json.dumps(train_child(*json.loads(args.train_child))))
        return 0
    s = QUICK if args.quick else FULL
    if args.repeats:
        s = dataclasses.replace(s, loader_repeats=args.repeats, train_repeats=args.repeats)
    t_build = time.perf_counter()
    clips, store, folders = bd.build(args.videos, args.cache, s.copies, s.flow_frames)
    build_minutes = (time.perf_counter() - t_build) / 60
    policy, clock, load = RetryPolicy.of(args), Clock(argv), os.getloadavg()
    machine = machine_info(torch_too=True)
    machine["fincore"] = shutil.which("fincore") or "not found"
    records = bd.pass_records(store, clips, s.pass_copies)
    files = bd.data_files(store, folders)
    st = Store(store)
    per_clip = {c.stem: {m: st.entry(f"c00/{c.stem}", m).meta.count for m in MODALITIES} for c in clips}
    st.close()
    kb = bd.image_kb(files["folders"])
    cache_check, speeds = {}, {}
    for k, paths in files.items():
        warm(paths)
        after_read = resident_bytes(paths)
        evict(paths)
        cache_check[k] = {"size": sum(f.stat().st_size for f in paths), "after_read": after_read,
                          "after_evict": resident_bytes(paths)}
        for c in CACHES:
            (evict if c == "cold" else warm)(paths)
            speeds[f"{k}_{c}"] = cache_check[k]["size"] / timed(lambda: warm(paths))[0].wall / 1e6
    loader, kept = bench_loader(store, folders, records, files, s, policy)
    loader["videos"] = len(records)
    if args.no_train:
        log("[train] skipped (--no-train): the table is left empty")
        train, kept2 = {"warmup": 0, "steps": 0, "repeats": 0, "rows": [], "threads": torch.get_num_threads(),
                        "before_gib": 0.0}, []
    else:
        train, kept2 = bench_train(s, policy)
    ref = {m: REFERENCE[m] for m in MODALITIES}
    figures = {"section": "bench_train", "template": "train", "method": 2,
               **clock.stamp("tools.bench.train"),
               "build_minutes": build_minutes, "machine": machine, "load_start": list(load),
               "policy": policy.figures(kept + kept2), "videos": display_path(args.videos), "segments": SEGMENTS,
               "batch": BATCH, "input_size": input_size("bn_inception"), "crop_positions": CROP_POSITIONS,
               "num_classes": NUM_CLASSES, "clip_grad": {m: r.clip_grad for m, r in ref.items()},
               "sgd": {"lr": ref["rgb"].lr, "momentum": FIT.momentum, "weight_decay": FIT.weight_decay},
               "data": {"distinct_clips": len(clips), "flow_frames": s.flow_frames, "copies": s.copies,
                        "videos": len(records), "per_clip": per_clip, "lmdb_bytes": cache_check["lmdb"]["size"],
                        "folder_bytes": cache_check["folders"]["size"], "folder_files": len(files["folders"]),
                        "needed": {m: len(records) * SEGMENTS * bd.images_per_snippet(m) * kb[m] * 1000 for m in MODALITIES}},
               "loader": loader, "cache_check": cache_check, "speeds": speeds}
    figures.update(findings(loader, train, kb))
    figures["train"] = train
    finish("bench_train", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
