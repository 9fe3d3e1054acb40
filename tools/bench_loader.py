#!/usr/bin/env python
"""Benchmark of our training input pipeline against mmaction2 1.2.0's TSN pipeline (a benchmark,
not a test).

Both sides read the same data with the same training settings (reference TSN: K=3 segments,
1-frame RGB / 5-frame flow snippets, multi-scale crop at the 13 fixed positions, resize to
224x224, horizontal flip with probability 0.5, NCHW layout):

- **ours**: ``tsn_train.dataset.VideoDataset`` over the LMDB store (``make_ours``), run in this
  project's environment;
- **mmaction2**: mmaction2's own ``RawframeDataset`` and transforms (SampleFrames, RawFrameDecode,
  MultiScaleCrop, Resize, Flip, FormatShape, PackActionInputs) over the JPEG folders
  ``tsn-prep export`` writes from the same store (``make_mmaction2``), run by the Python of a
  separate virtual environment (``--bench-env``) that holds mmaction2: it is never installed into
  the project's environment. ``--setup-env`` creates it (the commands are in ``ENV_COMMANDS``).
  Without it the mmaction2 side is skipped with a message and ours is still measured.

Each side runs in a process of its own (one per side, started once, driven over a pipe), so both
get the same process structure and thread settings. Measured: snippets/s with one process and one
thread (warm page cache), with a torch DataLoader of 2 workers (warm), and with the page cache
dropped before every pass (``/proc/sys/vm/drop_caches``, root; skipped otherwise), with what the
reads did (``/proc/<pid>/io``, major page faults). Passes are interleaved, medians reported.

    python tools/bench_loader.py --setup-env --quick   # creates the mmaction2 environment first
    python tools/bench_loader.py                       # about 10 minutes; writes docs/performance.md
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
SECTION = "bench_loader"
SEGMENTS = 3
INPUT_SIZE = 224
CROP_POSITIONS = 13      # the reference's fixed crops (mmaction2: num_fixed_crops=13)
BATCH = 8
LOADER_WORKERS = 2
NUM_CLASSES = 101        # validate() needs a class count; labels here are 0-4
OURS, MM = "ours", "mmaction2"
# Ours with the augmentation left out (the item's JPEGs read, decoded and stacked, nothing else):
# a ceiling on any pipeline of ours that decodes every image whole, run by the ours process.
DECODE = "ours, decoding only"
MODALITIES = ("rgb", "rgbdiff", "flow")
MM_MODALITIES = ("rgb", "flow")  # mmaction2 has no RGB difference
COLD_MODALITIES = ("rgb", "flow")
IMAGES_PER_SNIPPET = {"rgb": 1, "rgbdiff": 6, "flow": 10}  # stored JPEGs one snippet reads
MM_VERSIONS = {"mmaction2": "1.2.0", "mmengine": "0.10.7",
               # mmaction2 1.2.0 refuses mmcv >= 2.2.0 at import (mmaction/__init__.py), so the
               # newest mmcv-lite it accepts; mmcv-lite is mmcv without compiled ops (not needed here)
               "mmcv-lite": "2.1.0"}
# Pure-Python packages mmengine/mmcv import; installed with their own (small) dependencies.
MM_SMALL_DEPS = ("addict", "yapf", "termcolor", "rich", "pyyaml", "packaging")
# Packages installed --no-deps at the project environment's versions, so both sides decode with
# the same OpenCV and compute with the same numpy/torch. opencv-contrib-python, as the project
# uses: mmcv/mmengine declare opencv-python, which is kept out (two cv2 builds would clash).
SAME_AS_PROJECT = ("numpy", "opencv-contrib-python", "scipy", "Pillow")
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "tsn-bench-train"  # shared with bench_train.py
DEFAULT_BENCH_ENV = Path(tempfile.gettempdir()) / "tsn-bench-mmaction2-env"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def code_version(repo: Path = REPO) -> str:
    """The commit of the checkout ``repo``, and whether its tsn packages differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "tsn_prep", "tsn_train")
    return f"commit {head}" + (", with uncommitted changes in tsn_prep/ or tsn_train/" if dirty
                               else ", tsn_prep/ and tsn_train/ as committed")


# =========================================================================== the two pipelines

def keep_frames(frames, rng):
    """A transform that leaves the decoded frames as they are (the decoding-only ceiling)."""
    return frames


def make_ours(store: Path, records: list, counts: dict, modality: str, seed: int = 0,
              decode_only: bool = False):
    """Our training dataset as ``tsn-train fit`` builds it (``tsn_train/fit.py``, ``load_data``):
    K segments, ``TrainAugment`` (multi-scale crop at 13 fixed positions, resize, flip 0.5);
    items are uint8 ``(K, L, S, S, C)``, scaled into the network's input on the device by
    ``to_input``. ``decode_only``: the same sampling and decoding with no augmentation (items
    ``(K, L, H, W, C)`` at the stored size). The one place to adapt when ``VideoDataset``'s
    constructor changes."""
    from tsn_prep import modalities
    from tsn_train.dataset import StoreImages, VideoDataset
    from tsn_train.transforms import TrainAugment

    spec = modalities.get(modality)
    augment = TrainAugment(INPUT_SIZE, tuple(spec.scales), spec.is_flow, crop_positions=CROP_POSITIONS)
    return VideoDataset(StoreImages(store), records, counts, modality, segments=SEGMENTS, train=True,
                        transform=keep_frames if decode_only else augment, seed=seed)


def make_mmaction2(folders: Path, ann_file: Path, modality: str, clip_len: int,
                   scales: tuple[float, ...]):
    """mmaction2's TSN training pipeline (configs/recognition/tsn/*rawframes*: SampleFrames,
    RawFrameDecode, MultiScaleCrop, Resize, Flip, FormatShape('NCHW'), PackActionInputs) in its
    ``RawframeDataset``, built from mmaction2's own classes (no registry, no config file).

    The configs' ``Resize(scale=(-1, 256))`` before the crop is left out: the images are stored
    at 340x256 already, and ours has no such step."""
    from mmaction.datasets import RawframeDataset
    from mmaction.datasets.transforms import (Flip, FormatShape, MultiScaleCrop, PackActionInputs,
                                              RawFrameDecode, Resize, SampleFrames)

    pipeline = [
        SampleFrames(clip_len=clip_len, frame_interval=1, num_clips=SEGMENTS),
        RawFrameDecode(),  # disk backend, cv2 decoding
        MultiScaleCrop(INPUT_SIZE, scales=tuple(scales), random_crop=False, max_wh_scale_gap=1,
                       num_fixed_crops=CROP_POSITIONS),
        Resize(scale=(INPUT_SIZE, INPUT_SIZE), keep_ratio=False),
        Flip(flip_ratio=0.5),
        FormatShape(input_format="NCHW"),
        PackActionInputs(),
    ]
    flow = modality == "flow"
    return RawframeDataset(str(ann_file), pipeline, data_prefix=dict(img=str(folders)),
                           filename_tmpl="flow_{}_{:05d}.jpg" if flow else "img_{:05d}.jpg",
                           modality="Flow" if flow else "RGB", start_index=1)


# =========================================================================== side processes
# One long-lived process per side, started by the orchestrator with ``--side NAME SPEC``: the
# mmaction2 one by the bench environment's Python, which has no tsn installed (this part of the
# file imports only the standard library at the top). Commands arrive as JSON lines on stdin,
# answers leave as JSON lines on the original stdout (everything else printed goes to stderr).

def proc_io() -> dict[str, int]:
    """This process's I/O counters (``/proc/self/io``): ``read_bytes`` are bytes the kernel fetched
    from storage for it (page-cache misses, mmap faults included), ``rchar`` bytes its read()
    calls returned."""
    out = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        k, v = line.split(":")
        out[k] = int(v)
    return out


def usage() -> dict[str, float]:
    """CPU seconds and major faults of this process and its reaped children (loader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            "cpu_main": me.ru_utime + me.ru_stime, "majflt": me.ru_majflt + kids.ru_majflt}


class Side:
    """The datasets of one side, one per modality, and how to run a pass over one."""

    def __init__(self, name: str, spec: dict):
        import cv2
        import numpy as np
        import torch

        torch.set_num_threads(1)  # one thread each side; loader workers are single-threaded anyway
        cv2.setNumThreads(1)      # before any worker forks (as fit's single_threaded_decoding)
        self.name, self.spec, self.np, self.torch = name, spec, np, torch
        self.datasets, self.decode_only = {}, {}
        for m in spec["modalities"]:
            if name == OURS:
                self.datasets[m] = self._ours(m)
                if m in MM_MODALITIES:
                    self.decode_only[m] = self._ours(m, decode_only=True)
            else:
                s = spec["mm"][m]
                self.datasets[m] = make_mmaction2(Path(spec["folders"]), Path(s["ann_file"]), m,
                                                  s["clip_len"], tuple(s["scales"]))
        if name == OURS:
            self.collate = None  # DataLoader's default: one stacked tensor per batch, as fit
        else:
            from mmengine.dataset import pseudo_collate  # what mmengine's runner uses
            self.collate = pseudo_collate

    def _ours(self, modality: str, decode_only: bool = False):
        from tsn_prep.store import Store
        from tsn_train.lists import Record, validate

        records = [Record(v, label) for v, label in self.spec["records"]]
        store = Store(Path(self.spec["store"]))
        counts = validate(records, store, modality, NUM_CLASSES)
        store.close()
        return make_ours(Path(self.spec["store"]), records, counts, modality, decode_only=decode_only)

    def item(self, modality: str, i: int, decode_only: bool = False):
        """Item ``i`` as the network input part: ours (x, label) -> x; mmaction2's dict -> inputs."""
        out = (self.decode_only if decode_only else self.datasets)[modality][i]
        return out[0] if self.name == OURS else out["inputs"]

    def release(self) -> None:
        """Close every handle on the data, so that dropping the page cache really empties it
        (pages a process keeps mapped are not dropped). Ours: the store's LMDB maps; mmaction2
        keeps no file open between items."""
        if self.name == OURS:
            from tsn_prep.store import Store
            Store(Path(self.spec["store"])).close()
            for ds in (*self.datasets.values(), *self.decode_only.values()):
                ds.source._store = None

    def seed(self, modality: str, seed: int) -> None:
        if self.name == OURS:  # items' draws depend on (seed, epoch, i)
            for ds in (self.datasets[modality], self.decode_only.get(modality)):
                if ds is not None:
                    ds.set_epoch(seed)
        else:  # mmaction2's transforms draw from the global generators
            self.np.random.seed(seed)
            random.seed(seed)

    def run_pass(self, modality: str, order: list[int], workers: int, seed: int,
                 decode_only: bool = False) -> dict:
        """One pass over ``order``: directly item by item (workers 0), or through a DataLoader
        with ``workers`` workers and batches of BATCH, timed from the first batch on.
        ``decode_only`` (ours, workers 0): the decoding-only datasets."""
        self.seed(modality, seed)
        ds = self.datasets[modality]
        gc.collect()
        io0, u0, t0 = proc_io(), usage(), time.perf_counter()
        first_at, first_items, items = None, 0, 0
        if workers == 0:
            for i in order:
                self.item(modality, i, decode_only)
                items += 1
        else:
            from torch.utils.data import DataLoader
            loader = DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=workers,
                                collate_fn=self.collate, persistent_workers=False)
            it = iter(loader)
            for batch in it:
                n = len(batch[1]) if self.name == OURS else len(batch["inputs"])
                if first_at is None:
                    first_at, first_items = time.perf_counter(), n
                items += n
            del it, loader  # joins (and reaps) the workers, so their CPU time is counted
            gc.collect()
        t1 = time.perf_counter()
        io1, u1 = proc_io(), usage()
        timed_from = t0 if first_at is None else first_at
        return {"wall": t1 - t0, "timed_wall": t1 - timed_from, "timed_items": items - first_items,
                "first_batch": None if first_at is None else first_at - t0, "items": items,
                "cpu": u1["cpu"] - u0["cpu"], "cpu_main": u1["cpu_main"] - u0["cpu_main"],
                "majflt": u1["majflt"] - u0["majflt"],
                "read_bytes": io1["read_bytes"] - io0["read_bytes"],
                "rchar": io1["rchar"] - io0["rchar"], "syscr": io1["syscr"] - io0["syscr"]}

    def info(self) -> dict:
        import cv2
        import numpy as np
        import torch

        out = {"python": sys.version.split()[0], "executable": sys.executable,
               "torch": torch.__version__, "numpy": np.__version__, "cv2": cv2.__version__,
               "cv2 threads": cv2.getNumThreads(), "torch threads": torch.get_num_threads(),
               "torch file": torch.__file__, "items": {}}
        if self.name == MM:
            import mmaction
            import mmcv
            import mmengine
            out.update({"mmaction2": mmaction.__version__, "mmengine": mmengine.__version__,
                        "mmcv": mmcv.__version__, "mmaction file": mmaction.__file__})
        else:
            import tsn_train
            out["tsn_train file"] = tsn_train.__file__
        for m in self.datasets:
            self.seed(m, 0)
            x = self.item(m, 0)
            out["items"][m] = {"shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", ""),
                               "numel": int(x.numel()), "contiguous": bool(x.is_contiguous())}
        return out


def side_main(name: str, spec_json: str) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (libraries' warnings) must not mix with the answers
    side = Side(name, json.loads(spec_json))
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "info":
            answer = side.info()
        elif cmd["cmd"] == "release":
            side.release()
            answer = {"released": True}
        elif cmd["cmd"] == "pass":
            answer = side.run_pass(cmd["modality"], cmd["order"], cmd["workers"], cmd["seed"],
                                   cmd.get("decode_only", False))
        else:
            raise ValueError(f"unknown command {cmd!r}")
        proto.write(json.dumps(answer) + "\n")
    return 0


class SideProcess:
    """The orchestrator's handle on one side's process."""

    def __init__(self, name: str, python: str, spec: dict):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONNOUSERSITE="1")
        if name == OURS:  # the tsn packages of the checkout holding this script, not another one
            env["PYTHONPATH"] = str(REPO)
        self.name = name
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--side", name,
                                      json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
        self.ask_ready()

    def ask_ready(self) -> None:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} process ended before it was ready "
                               f"(exit code {self.proc.wait()}; its errors are above)")

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} process ended (exit code {self.proc.wait()}; "
                               "its errors are above)")
        return json.loads(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


# =========================================================================== the bench environment

def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def env_commands(env: Path) -> list[list[str]]:
    """The commands that create the mmaction2 environment (``--setup-env`` runs them)."""
    from importlib.metadata import version

    py, pip = str(env_python(env)), [str(env_python(env)), "-m", "pip", "install", "--quiet"]
    return [
        [sys.executable, "-m", "venv", str(env)],
        pip + [f"torch=={version('torch').split('+')[0]}"],  # the project's torch release
        pip + ["--no-deps"] + [f"{p}=={v}" for p, v in MM_VERSIONS.items()],
        pip + ["--no-deps"] + [f"{p}=={version(p)}" for p in SAME_AS_PROJECT],
        pip + list(MM_SMALL_DEPS),
        [py, "-c", "import mmaction.datasets.transforms, mmengine.dataset"],
    ]


def setup_env(env: Path) -> None:
    for cmd in env_commands(env):
        log("[env] " + shlex.join(cmd))
        subprocess.run(cmd, check=True)


def check_env(env: Path) -> tuple[Optional[str], str]:
    """(the environment's Python, "") when mmaction2's pipeline imports there, else (None, why)."""
    py = env_python(env)
    if not py.exists():
        return None, f"no environment at {env}"
    probe = ("import mmaction, mmengine, mmcv; import mmaction.datasets.transforms; "
             "print(mmaction.__version__)")
    r = subprocess.run([str(py), "-c", probe], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if r.returncode != 0:
        return None, f"mmaction2 does not import in {env}: {r.stderr.strip().splitlines()[-1:]}"
    if r.stdout.strip() != MM_VERSIONS["mmaction2"]:
        return None, f"{env} has mmaction2 {r.stdout.strip()}, not {MM_VERSIONS['mmaction2']}"
    return str(py), ""


# =========================================================================== page cache

def drop_caches() -> None:
    """Write back dirty pages, then drop the whole page cache, dentries and inodes (root)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def can_drop_caches() -> tuple[bool, str]:
    try:
        drop_caches()
        return True, ""
    except OSError as exc:
        return False, f"cannot drop the page cache ({exc.strerror or exc}): cold passes skipped"


# =========================================================================== orchestration

@dataclasses.dataclass(frozen=True)
class Settings:
    pass_copies: int   # copies of the five clips a pass reads (each video once per round)
    repeats: int
    cold: bool


FULL = Settings(pass_copies=40, repeats=5, cold=True)
QUICK = Settings(pass_copies=8, repeats=1, cold=True)
# Rounds over the pass's videos per warm pass: one round over 200 videos takes a third of a second
# for rgb here, too short to time well; these make every warm pass last about 2 s (1.5-3 s) with
# the full settings. Cold passes read each video once (a second read would be warm).
WARM_ROUNDS = {"rgb": 6, "rgbdiff": 1, "flow": 2}
COPIES = 40  # the cached data holds this many copies (bench_train.py's, shared)


Config = tuple[str, int, str, str]  # (modality, workers, cache, side)


def configs(sides: list[str], cold: bool) -> list[Config]:
    """Every pass of a repeat; the decoding-only passes (warm, one thread) with mmaction2's
    modalities, run by the ours process."""
    out = []
    for cache in ("warm", "cold") if cold else ("warm",):
        for workers in ((0, LOADER_WORKERS) if cache == "warm" else (0,)):
            for m in (MODALITIES if cache == "warm" else COLD_MODALITIES):
                out += [(m, workers, cache, s) for s in sides if s == OURS or m in MM_MODALITIES]
                if (cache, workers) == ("warm", 0) and m in MM_MODALITIES:
                    out.append((m, workers, cache, DECODE))
    return out


def pass_files(files: dict[str, list[Path]], side: str, modality: str) -> list[Path]:
    """The files a side's pass may read: the store's shard files (ours), or every exported JPEG of
    the modality's kind (mmaction2)."""
    if side in (OURS, DECODE):
        return files["lmdb"]
    prefix = "flow_" if modality == "flow" else "img_"
    return [f for f in files["folders"] if f.name.startswith(prefix)]


def run_benchmark(procs: dict[str, SideProcess], n: int, s: Settings, files: dict[str, list[Path]],
                  data_path: Path, policy) -> dict:
    """Every configuration once per repeat; each warm pass right after reading every file it may
    read, each cold pass right after dropping the page cache; the order rotates between repeats,
    and both sides of a pair get the same item order and seed.

    Warm means warmed just before the pass: this VM pages out page-cache pages that went unused
    for about 30 s (a DAMON reclaim scheme), so data warmed once per repeat goes partly cold."""
    import bench_prep as bp
    import bench_train as bt
    import numpy as np

    cfgs = configs(list(procs), s.cold)
    proc = {side: procs[OURS if side == DECODE else side] for side in {c[3] for c in cfgs}}
    runs: dict[Config, list[dict]] = {c: [] for c in cfgs}
    log("[loader] warm-up: a few items of every modality on each side")
    bt.warm(files["lmdb"] + files["folders"])
    for m, side in sorted({(c[0], c[3]) for c in cfgs}):
        proc[side].ask(cmd="pass", modality=m, order=list(range(min(n, 16))), workers=0, seed=999,
                       decode_only=side == DECODE)
    rounds = WARM_ROUNDS
    log(f"[loader] warm passes go over the {n} videos this many times: {rounds}; cold passes once")

    def one(cfg: Config, rep: int) -> dict:
        m, workers, cache, side = cfg
        seed = rep + 1
        gen = np.random.default_rng(seed)
        order = [int(i) for _ in range(rounds[m] if cache == "warm" else 1) for i in gen.permutation(n)]
        if cache == "cold":
            proc[side].ask(cmd="release")
            drop_caches()
        else:
            bt.warm(pass_files(files, side, m))
        disk0, busy0, own0 = bt.disk_reads(data_path), bp.busy_seconds(), own_cpu()
        r = proc[side].ask(cmd="pass", modality=m, order=order, workers=workers, seed=seed,
                           decode_only=side == DECODE)
        busy, own = bp.busy_seconds() - busy0, own_cpu() - own0
        r["disk"] = [b - a for a, b in zip(disk0, bt.disk_reads(data_path))]
        # other load: cores the machine spent beyond this side's process (and its loader workers)
        # and this orchestrating process, on average over the pass (/proc/stat: 10 ms ticks)
        r["other"] = max(0.0, (busy - r["cpu"] - own) / r["wall"])
        r["rate"] = r["timed_items"] * SEGMENTS / r["timed_wall"]
        return r

    for rep in range(s.repeats):
        for cache in ("warm", "cold"):
            block = [c for c in cfgs if c[2] == cache]
            if not block:
                continue
            for cfg in bp.rotated(block, rep):
                m, workers, _, side = cfg
                label = f"{m} workers={workers} {cache} {side}"
                r = policy.run(label, lambda: one(cfg, rep),
                               lambda r: bp.Timing(r["wall"], r["cpu"], r["other"]))
                runs[cfg].append(r)
                log(f"[loader] repeat {rep + 1}/{s.repeats} {label:34s} {r['rate']:7.1f} snippets/s "
                    f"({r['wall']:5.2f} s, {r['cpu'] / r['wall']:.2f} cores, read {r['read_bytes'] / 1e6:.1f} MB, "
                    f"{r['majflt']} major faults, other load {r['other']:.2f})")
    return {"runs": runs, "videos": n, "repeats": s.repeats, "rounds": rounds}


def own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def median(values: list[float]) -> float:
    import statistics
    return statistics.median(values)


def table(bench: dict) -> list[dict]:
    """One row per (modality, workers, cache): both sides' median rates, the ratio ours/mmaction2
    and its per-repeat values, and the medians of every counter."""
    rows = []
    keys = sorted({(m, w, c) for (m, w, c, _) in bench["runs"]},
                  key=lambda k: (("warm", "cold").index(k[2]), k[1], MODALITIES.index(k[0])))
    for m, w, c in keys:
        sides = {s: rs for (m2, w2, c2, s), rs in bench["runs"].items() if (m2, w2, c2) == (m, w, c)}
        row = {"modality": m, "workers": w, "cache": c, "sides": {}}
        for s, rs in sides.items():
            row["sides"][s] = {k: median([r[k] for r in rs]) for k in
                               ("rate", "cpu", "wall", "read_bytes", "rchar", "syscr", "majflt", "other")}
            row["sides"][s]["cores"] = median([r["cpu"] / r["wall"] for r in rs])
            row["sides"][s]["main_cores"] = median([r["cpu_main"] / r["wall"] for r in rs])
            row["sides"][s]["disk_requests"] = median([r["disk"][0] for r in rs])
            row["sides"][s]["first_batch"] = (median([r["first_batch"] for r in rs])
                                              if w else None)
        if OURS in sides and MM in sides:
            row["ratio"] = row["sides"][OURS]["rate"] / row["sides"][MM]["rate"]
            row["per_repeat"] = [a["rate"] / b["rate"] for a, b in zip(sides[OURS], sides[MM])]
        rows.append(row)
    return rows


# =========================================================================== report

def fmt_list(values, spec=".2f") -> str:
    return ", ".join(format(v, spec) for v in values)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def print_summary(rows: list[dict], bench: dict, skipped: list[str]) -> None:
    print(f"\n== input pipeline: {bench['videos']} videos x rounds {bench['rounds']} per warm pass, "
          f"once per cold pass, K={SEGMENTS}, "
          f"{bench['repeats']} interleaved repeat(s), median snippets/s")
    for r in rows:
        o, mm = r["sides"].get(OURS), r["sides"].get(MM)
        line = (f"  {r['modality']:7s} workers={r['workers']} {r['cache']:4s}  ours {o['rate']:7.1f}"
                f"  mmaction2 " + (f"{mm['rate']:7.1f}" if mm else "      -"))
        if DECODE in r["sides"]:
            line += f"  ours decoding only {r['sides'][DECODE]['rate']:7.1f}"
        if "ratio" in r:
            line += f"  ratio {r['ratio']:.2f} (per repeat {fmt_list(r['per_repeat'])})"
        if r["cache"] == "cold":
            line += "  read " + " / ".join(f"{mb(x['read_bytes'])}, {x['majflt']:.0f} majflt"
                                           for x in (o, mm) if x)
        print(line)
    for msg in skipped:
        print(f"  ({msg})")


def verdict(r: dict) -> str:
    """How clear a ratio is: within 5 % of 1 it is called even; otherwise say in how many repeats
    the faster side was faster."""
    pr, n = r["per_repeat"], len(r["per_repeat"])
    if abs(r["ratio"] - 1) < 0.05:
        return "about even: within 5 %"
    side, wins = (OURS, sum(x > 1 for x in pr)) if r["ratio"] > 1 else (MM, sum(x < 1 for x in pr))
    return f"{side} faster in {'every repeat' if wins == n else f'{wins} of {n} repeats'}"


def render_docs(ctx: dict) -> str:
    rows, bench, infos = ctx["rows"], ctx["bench"], ctx["infos"]
    lines: list[str] = []
    add = lines.append
    started = ctx["started"]
    add("# Input pipeline: ours against mmaction2 1.2.0\n")
    add(f"Measured on {started:%Y-%m-%d} ({started:%H:%M %Z}) by `tools/bench_loader.py` "
        f"({ctx['minutes']:.1f} min, " + (f"plus {ctx['build_minutes']:.1f} min building the data"
                                          if ctx["build_minutes"] >= 0.1 else "the data already cached")
        + "). To reproduce, from the repository root:\n")
    add(f"```\n{ctx['command']}\n```\n")
    add("`--quick` is a smoke run (a fraction of the videos, one repeat). The data is the one "
        "`tools/bench_train.py` builds, cached under `--cache` (shared with it); the first run "
        "builds it, about 7 minutes here, mostly CPU TV-L1. No GPU is involved: every figure is "
        "CPU work on this 2-core machine.\n")
    for msg in ctx["skipped"]:
        add(f"**Skipped**: {msg}\n")

    add("## How each side runs\n")
    mm_info = infos.get(MM)
    add(f"- **Ours** runs in the project's environment (`pip install -e .`): "
        f"`make_ours()` in the benchmark builds `tsn_train.dataset.VideoDataset(StoreImages(store), "
        f"records, counts, modality, segments={SEGMENTS}, train=True, transform=TrainAugment({INPUT_SIZE}, "
        f"scales, is_flow, crop_positions={CROP_POSITIONS}))` as `tsn-train fit` does with its "
        "default `--decode-on loader` (JPEGs decoded, cropped and resized in the loader), reading "
        "the LMDB store.")
    add(f"- **mmaction2** runs in a virtual environment of its own ({ctx['env_display']}), never "
        "in the project's: `make_mmaction2()` builds mmaction2's `RawframeDataset` with mmaction2's "
        "own transform classes (the pipeline of its TSN rawframe configs), reading the JPEG folders "
        "`tsn-prep export` wrote from the same store (`img_00001.jpg`, `flow_x_00001.jpg`, "
        "start index 1), with annotation lists written by the code behind `tsn-prep export --lists` "
        "(each modality's own count: N frames, N-1 flows).")
    add("- Each side runs in a process of its own, started once and then driven over a pipe, with "
        "`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)` and `cv2.setNumThreads(1)`; both use the "
        "same torch, numpy and OpenCV builds (versions below). The benchmark itself only sends "
        "commands and waits.\n")
    add("The mmaction2 environment was made by `python tools/bench_loader.py --setup-env` (about "
        "2 minutes and 5.5 GB, most of it torch's CUDA build; `python` is the project's), which "
        "runs:\n")
    add("```\n" + "\n".join(" ".join(x if x.startswith("$ENV") else shlex.quote(x) for x in c)
                             for c in ctx["env_commands"]) + "\n```\n")
    add("mmaction2, mmengine and mmcv-lite go in with `--no-deps`: their declared dependencies would "
        "pull in `opencv-python` (beside the `opencv-contrib-python` both sides use), decord, "
        "matplotlib and more that the pipeline never imports. mmcv-lite is 2.1.0 because "
        "mmaction2 1.2.0 refuses mmcv 2.2.0 at import. What importing `mmaction.datasets` "
        "needs besides (scipy, Pillow, addict, yapf, termcolor, rich, pyyaml, packaging) was found "
        "by trying.\n")

    add("## Settings, side by side\n")
    add("| | ours | mmaction2 |\n|---|---|---|")
    mmv = f"{mm_info['mmaction2']} (mmengine {mm_info['mmengine']}, mmcv-lite {mm_info['mmcv']})" if mm_info else "not run"
    add(f"| version | tsn (this repository) | {mmv} |")
    add("| data | LMDB store, one shard | one JPEG file per image, 2 per flow |")
    add(f"| sampling | K={SEGMENTS} segments, a random snippet in each (`train_starts`) | "
        f"`SampleFrames(clip_len, frame_interval=1, num_clips={SEGMENTS})`, training mode |")
    add("| snippet | rgb 1 frame, rgbdiff 6 frames, flow 5 x/y pairs | rgb `clip_len=1`, flow "
        "`clip_len=5`; no RGB difference in mmaction2 |")
    add("| decode | `cv2.imdecode` of the stored bytes, BGR kept | `mmcv.imfrombytes` "
        "(`cv2.imdecode`) of each file's bytes, then BGR to RGB (`cv2.cvtColor`) |")
    add(f"| crop | `TrainAugment`: scales rgb {ctx['scales']['rgb']}, rgbdiff {ctx['scales']['rgbdiff']}, "
        f"flow {ctx['scales']['flow']}, `max_distort=1`, {CROP_POSITIONS} fixed positions | "
        f"`MultiScaleCrop({INPUT_SIZE}, scales, random_crop=False, max_wh_scale_gap=1, "
        f"num_fixed_crops={CROP_POSITIONS})`, the same scales |")
    add(f"| resize | to {INPUT_SIZE}x{INPUT_SIZE}, `cv2.resize` bilinear, per frame | "
        f"`Resize(scale=({INPUT_SIZE}, {INPUT_SIZE}), keep_ratio=False)`: `mmcv.imresize`, "
        "`cv2.resize` bilinear, per frame |")
    add("| flip | probability 0.5, `cv2.flip` per frame; flow: x inverted (255 - v) on every flow | "
        "`Flip(flip_ratio=0.5)`: `cv2.flip` per frame; flow: every other stacked (x, y) image "
        "inverted whole (see below) |")
    shapes = {side: ", ".join(f"{m} `{v['dtype']} {tuple(v['shape'])}`" for m, v in info["items"].items())
              for side, info in infos.items()}
    add(f"| item | {shapes[OURS]}: (K, L, H, W, C), channels last; `to_input` makes the network's "
        "layout and scale on the device (and rgbdiff's differences) | "
        + (f"{shapes[MM]}: `FormatShape('NCHW')` (a transposed view for rgb, a copy for flow), "
           "`PackActionInputs`; its data preprocessor normalises on the device" if mm_info else "-")
        + " |")
    add(f"| loader (2 workers) | `DataLoader(batch_size={BATCH}, num_workers={LOADER_WORKERS})`, default "
        "collate (one stacked tensor) | the same, with mmengine's `pseudo_collate` (a list, as its "
        "runner) |")
    add("")
    add("Differences that remain, and what they cost:\n")
    diffs = [
        "mmaction2's TSN configs resize every frame to a short side of 256 first "
        "(`Resize(scale=(-1, 256))`); left out here since the images are stored at 340x256 "
        "already (there it would be a resize to the same size: a copy per frame).",
        "mmaction2 converts every decoded RGB frame to RGB order (`cv2.cvtColor`, a few per cent "
        "of decoding); ours keeps BGR and lets the network's input convention decide.",
    ]
    diffs.append("Both return uint8 and leave scaling to the device; the layouts differ (ours "
                 "channels last, mmaction2 channels first), which costs mmaction2 a copy for flow "
                 "and nothing for rgb (a view).")
    diffs.append(
        "Flow flip: mmaction2 1.2.0's `Flip` inverts `imgs[0], imgs[2], ...` assuming x and y "
        "images alternate in the list, but its `RawFrameDecode` stacks x and y into one image per "
        "flow, so it inverts x *and* y of every other flow and leaves the rest untouched. A bug "
        "in mmaction2 (the mirrored flow is wrong); about the same work as inverting x of every "
        "flow, as ours does.")
    diffs.append("rgbdiff is ours only: mmaction2 has no RGB-difference pipeline.")
    add("\n".join(f"- {d}" for d in diffs) + "\n")

    add("## Machine and versions\n")
    add("| | |\n|---|---|")
    for k, v in ctx["machine"].items():
        add(f"| {k} | {v} |")
    for side, info in infos.items():
        add(f"| {side} side | Python {info['python']}, torch {info['torch']}, numpy {info['numpy']}, "
            f"cv2 {info['cv2']} ({info['executable']}) |")
    add(f"| load average at start (1, 5, 15 min) | {fmt_list(ctx['load_start'])} |\n")
    add(f"The machine is shared: every pass records how many cores *other* processes kept busy "
        f"meanwhile (\"other load\"); a pass with more than {ctx['policy'].max_other} is run again "
        f"(at most {ctx['policy'].retries} times). {ctx['disturbed']} Repeats are interleaved (the "
        "order rotates between repeats), both sides of a comparison get the same item order and "
        "seed in a repeat, and medians are reported.\n")

    add("## Data\n")
    d = ctx["data"]
    add(f"The {d['clips']} real clips of `{ctx['videos']}` extracted by `tsn-prep` at 340x256 "
        f"(RGB: every frame; TV-L1 flow: the first {d['flow_frames']} frames, so {d['flow_frames'] - 1} "
        f"flows), {COPIES} copies of each as distinct videos (see the training section's Data); "
        f"frames per clip: {d['frames']}. Store {mb(d['store_bytes'])} in one LMDB shard; folders "
        f"{mb(d['folder_bytes'])} in {d['folder_files']} files. Passes read {bench['videos']} of "
        f"these videos ({bench['videos'] // d['clips']} copies of the five) in a shuffled order: a "
        "cold pass each video once, a warm pass each video "
        + ", ".join(f"{v} time{'s' if v > 1 else ''} ({m})" for m, v in bench["rounds"].items())
        + " (so that a pass lasts a second or two; the same for both sides).\n")

    add("## Results\n")
    add(f"Snippets/s = items/s x K={SEGMENTS}; a snippet is 1 frame (rgb), 6 frames (rgbdiff) or "
        "5 x/y flow pairs (flow). Ratio = ours / mmaction2 (above 1: ours is faster); per repeat, "
        "the ratio of the two passes of that repeat. Median of "
        f"{bench['repeats']} interleaved repeat(s).\n")
    add("### One process, one thread (warm page cache)\n")
    warm_reads = {w: [r["read_bytes"] for (_, w2, c, _), rs in bench["runs"].items()
                      if c == "warm" and w2 == w for r in rs] for w in (0, LOADER_WORKERS)}
    add("Items taken one after another straight from the dataset (`ds[i]`, no DataLoader): "
        "snippets per second per core. Warm page cache: right before every warm pass the benchmark "
        "reads every file that pass may read (the store's shard files; or every exported JPEG of "
        "the modality), so reads come from memory. (Right before, not once per repeat: this VM "
        "pages out page-cache pages unused for about 30 s.) What the side processes read from "
        f"storage (`read_bytes`) over a warm pass: one-thread passes {mb(median(warm_reads[0]))} "
        f"(median; at most {mb(max(warm_reads[0]))}); loader passes, which start their workers, "
        f"{mb(median(warm_reads[LOADER_WORKERS]))} (at most {mb(max(warm_reads[LOADER_WORKERS]))}).\n")
    add_rate_table(add, [r for r in rows if r["cache"] == "warm" and r["workers"] == 0])
    add(f"### DataLoader with {LOADER_WORKERS} workers (warm page cache)\n")
    add(f"`torch.utils.data.DataLoader` over each side's dataset, batch {BATCH}, the same shuffled "
        "order for both; the first batch is dropped from the timing (worker start-up), so the "
        f"rate is over the rest of the pass. The machine has 2 cores, so this is what {LOADER_WORKERS} "
        "workers and the main process receiving their batches deliver together; cores used are "
        "over the whole pass, workers included.\n")
    add_rate_table(add, [r for r in rows if r["cache"] == "warm" and r["workers"] > 0], first=True)
    cold = [r for r in rows if r["cache"] == "cold"]
    add("### Cold page cache\n")
    if cold:
        add("Before every pass: `sync` and `echo 3 > /proc/sys/vm/drop_caches` (page cache, "
            "dentries and inodes of the whole machine; the side first closes its handles: ours "
            "its LMDB map, whose pages would otherwise stay). One process, one thread, as above. "
            "`read_bytes` and `rchar` are the side's `/proc/<pid>/io` counters over the pass "
            "(bytes fetched from storage for it, page faults on a map included; bytes its "
            "`read()` calls returned), major faults from `getrusage` (faults that waited for the "
            "disk), disk read requests from `/proc/diskstats` (the whole device).\n")
        add("| modality | ours (store) | mmaction2 (folders) | ratio | ratio per repeat | read_bytes "
            "ours / mm | rchar ours / mm | read() calls ours / mm | major faults ours / mm | disk "
            "read requests ours / mm |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for r in cold:
            o, m = r["sides"][OURS], r["sides"].get(MM)
            if m is None:
                add(f"| {r['modality']} | {o['rate']:.0f} snippets/s | - | - | - | {mb(o['read_bytes'])} | "
                    f"{mb(o['rchar'])} | {o['syscr']:.0f} | {o['majflt']:.0f} | {o['disk_requests']:.0f} |")
                continue
            add(f"| {r['modality']} | {o['rate']:.0f} snippets/s | {m['rate']:.0f} snippets/s | "
                f"**{r['ratio']:.2f}** | {fmt_list(r['per_repeat'])} | {mb(o['read_bytes'])} / "
                f"{mb(m['read_bytes'])} | {mb(o['rchar'])} / {mb(m['rchar'])} | {o['syscr']:.0f} / "
                f"{m['syscr']:.0f} | {o['majflt']:.0f} / {m['majflt']:.0f} | "
                f"{o['disk_requests']:.0f} / {m['disk_requests']:.0f} |")
        add("")
    else:
        add("Not measured in this run: " + ctx["cold_skip"] + "\n")
    add("### Findings\n")
    add(findings(rows, ctx))
    return "\n".join(lines) + "\n"


def add_rate_table(add, rows: list[dict], first: bool = False) -> None:
    ceiling = any(DECODE in r["sides"] for r in rows)
    head = ("| modality | ours | mmaction2 | ratio | ratio per repeat | cores used ours / mm |"
            + (" of which the main process, ours / mm | first batch after (s) ours / mm |"
               if first else "")
            + (" ours, decoding only | decoding only / mmaction2 |" if ceiling else "")
            + " other load |")
    add(head)
    add("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        o, m = r["sides"][OURS], r["sides"].get(MM)
        fb = ""
        if first:
            fb = (f" {o['main_cores']:.2f} / " + (f"{m['main_cores']:.2f}" if m else "-") + " |"
                  f" {o['first_batch']:.2f} / " + (f"{m['first_batch']:.2f}" if m else "-") + " |")
        if ceiling:
            d = r["sides"].get(DECODE)
            fb += (f" {d['rate']:.0f} snippets/s |" if d else " - |") + (
                f" **{d['rate'] / m['rate']:.2f}** |" if d and m else " - |")
        if m is None:
            add(f"| {r['modality']} | {o['rate']:.0f} snippets/s | - | - | - | {o['cores']:.2f} / - |"
                f"{fb} {o['other']:.2f} |")
        else:
            add(f"| {r['modality']} | {o['rate']:.0f} snippets/s | {m['rate']:.0f} snippets/s | "
                f"**{r['ratio']:.2f}** | {fmt_list(r['per_repeat'])} | {o['cores']:.2f} / "
                f"{m['cores']:.2f} |{fb} {max(o['other'], m['other']):.2f} |")
    add("")


def findings(rows: list[dict], ctx: dict) -> str:
    """The figures, worded after what was measured."""
    items = []
    for cache, workers, what in (("warm", 0, "One thread"), ("warm", LOADER_WORKERS,
                                                             f"{LOADER_WORKERS} loader workers"),
                                 ("cold", 0, "Cold page cache")):
        rs = [r for r in rows if (r["cache"], r["workers"]) == (cache, workers) and "ratio" in r]
        if rs:
            items.append(f"**{what}**: " + "; ".join(
                f"{r['modality']} {r['ratio']:.2f} ({verdict(r)}; per repeat {min(r['per_repeat']):.2f}-"
                f"{max(r['per_repeat']):.2f})" for r in rs) + ".")
    by = {(r["modality"], r["workers"], r["cache"]): r for r in rows}
    scaling = []
    for m in MODALITIES:
        one, two = by.get((m, 0, "warm")), by.get((m, LOADER_WORKERS, "warm"))
        if one and two:
            scaling.append(f"{m} " + ", ".join(
                f"{side} {two['sides'][side]['rate'] / one['sides'][side]['rate']:.2f}x (main process "
                f"{two['sides'][side]['main_cores']:.2f} cores)" for side in one["sides"]
                if side in two["sides"]))
    if scaling:
        items.append(f"**{LOADER_WORKERS} workers over one thread**: " + "; ".join(scaling) + ". On "
                     "two cores the main process competes with the workers: it receives every batch "
                     "through shared memory (ours one stacked tensor per batch; mmaction2 a tensor "
                     "and an `ActionDataSample` per item, as `pseudo_collate` leaves them).")
    ceilings = [r for r in rows if DECODE in r["sides"] and MM in r["sides"]]
    if ceilings:
        parts = [f"{r['modality']} {r['sides'][DECODE]['rate']:.0f} snippets/s, "
                 f"{r['sides'][DECODE]['rate'] / r['sides'][MM]['rate']:.2f}x mmaction2's whole "
                 f"pipeline (ours with augmentation {r['ratio']:.2f}x)" for r in ceilings]
        text = ("**Decoding only** (ours with the augmentation left out: the item's JPEGs read from "
                "the store, decoded with `cv2.imdecode` and stacked; one thread): " + "; ".join(parts)
                + ". That is a ceiling on any pipeline that decodes every image whole with this "
                "libjpeg-turbo, as both sides do")
        below = [r["modality"] for r in ceilings
                 if r["sides"][DECODE]["rate"] < 2 * r["sides"][MM]["rate"]]
        if below:
            text += (f"; for {' and '.join(below)} it is below twice mmaction2's rate, so 2x "
                     "mmaction2 per core cannot be reached there without decoding less (or "
                     "decoding elsewhere, e.g. `--decode-on device`).")
        else:
            text += "."
        items.append(text)
    if ("rgbdiff", 0, "warm") in by and ("rgb", 0, "warm") in by:
        a, b = by[("rgbdiff", 0, "warm")]["sides"][OURS]["rate"], by[("rgb", 0, "warm")]["sides"][OURS]["rate"]
        items.append(f"**rgbdiff** (ours only) runs at {a:.0f} snippets/s on one thread, {b / a:.1f}x "
                     "fewer than rgb: a snippet decodes, crops and resizes six frames instead of one.")
    cold = [r for r in rows if r["cache"] == "cold" and "ratio" in r]
    if cold:
        parts = []
        for r in cold:
            o, m = r["sides"][OURS], r["sides"][MM]
            images = ctx["bench"]["videos"] * SEGMENTS * IMAGES_PER_SNIPPET[r["modality"]]
            parts.append(
                f"{r['modality']} ({images} images of about {ctx['data']['image_kb'][r['modality']]:.0f} KB): "
                f"ours {o['majflt'] / images:.1f} major faults and {o['disk_requests'] / images:.1f} "
                f"disk read requests per image, {mb(o['read_bytes'])} read; mmaction2 "
                f"{m['syscr'] / images:.1f} `read()` calls and {m['disk_requests'] / images:.1f} disk "
                f"read requests per image, {mb(m['read_bytes'])} read")
        text = "**What the cold reads do** (medians per pass): " + "; ".join(parts) + ". "
        rgb = next((r for r in cold if r["modality"] == "rgb"), None)
        per_page = rgb is not None and rgb["sides"][OURS]["majflt"] >= 3 * ctx["bench"]["videos"] * SEGMENTS
        if per_page:  # worded for a store read page by page, as measured
            text += ("Ours reads the store through its memory map with read-ahead off, so every "
                     "4 KiB page of a JPEG is a major fault: one synchronous disk read after "
                     "another. So the store loses where images span many pages (rgb) and gains "
                     "where they fit in one or two (flow). ")
        else:
            text += "Ours reads the store through its memory map (major faults above). "
        text += ("mmaction2 `read()`s each file whole (two files per flow): a request for its data, "
                 "plus reads of directory and inode blocks (the drop emptied those caches too), "
                 "which is why it reads more bytes than ours. See also the training section's cold "
                 "figures against folders read with the same decoder.")
        items.append(text)
    return "\n".join(f"- {i}" for i in items) + "\n"


# =========================================================================== main

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    import bench_prep as bp

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--passes", type=int, default=None,
                   help="interleaved repeats of every pass (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer videos, one repeat")
    p.add_argument("--no-docs", action="store_true",
                   help="print the figures only; do not write docs/performance.md")
    p.add_argument("--no-cold", action="store_true", help="skip the cold page-cache passes")
    p.add_argument("--videos", type=Path, default=bp.DEFAULT_VIDEOS,
                   help=f"directory of the clips (default: {bp.DEFAULT_VIDEOS})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"where the extracted data is kept, shared with bench_train.py "
                        f"(default: {DEFAULT_CACHE})")
    p.add_argument("--bench-env", type=Path, default=DEFAULT_BENCH_ENV,
                   help=f"the virtual environment holding mmaction2 (default: {DEFAULT_BENCH_ENV})")
    p.add_argument("--setup-env", action="store_true",
                   help="create --bench-env first (a few minutes; about 5.5 GB, most of it torch)")
    bp.add_disturbance_options(p)
    args = p.parse_args(argv)
    if args.passes is not None and args.passes < 1:
        p.error("--passes must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--side"]:  # a side process (see side_main); before anything is imported
        return side_main(raw[1], raw[2])
    sys.path[:0] = [str(TOOLS), str(REPO)]  # this checkout's tsn packages, whatever is installed
    import bench_prep as bp
    import bench_train as bt

    from tsn_prep.folders import write_rawframe_lists
    from tsn_prep.modalities import MODALITIES as SPECS
    from tsn_prep.store import Store

    args = parse_args(raw)
    s = QUICK if args.quick else FULL
    s = dataclasses.replace(s, repeats=args.passes or s.repeats, cold=s.cold and not args.no_cold)
    skipped: list[str] = []

    env = args.bench_env.resolve()
    if args.setup_env and not env_python(env).exists():
        setup_env(env)
    mm_python, why = check_env(env)
    if mm_python is None:
        msg = (f"mmaction2 side skipped: {why}. Create it with `python tools/bench_loader.py "
               f"--setup-env --bench-env {env}`")
        log(f"[env] {msg}")
        skipped.append(msg)

    cold_skip = ""
    if s.cold:
        ok, cold_skip = can_drop_caches()
        if not ok:
            log(f"[cache] {cold_skip}")
            skipped.append(cold_skip)
            s = dataclasses.replace(s, cold=False)
    else:
        cold_skip = "`--no-cold` was given."

    t_build = time.perf_counter()
    # not resolved: shown relative to the checkout when near it
    videos, clips, cache, store, folders = bt.data_from_args(args.videos.absolute(), args.cache, COPIES)
    records = bt.pass_records(store, clips, s.pass_copies)
    lists_dir = cache / f"copies-{COPIES}-mmaction2-lists-{s.pass_copies}"
    st = Store(store)
    write_rawframe_lists(st, lists_dir, ("rgb", "flow"),
                         {"pass": [(r.video_id, r.label) for r in records]})
    frames = {c.stem: {m: st.entry(f"c00/{c.stem}", m).meta["count"] for m in ("rgb", "flow")}
              for c in clips}
    st.close()
    files = bt.data_files(store, folders)
    build_minutes = (time.perf_counter() - t_build) / 60
    log(f"[data] ready in {build_minutes * 60:.0f} s: {store}, {folders}, lists in {lists_dir}")

    spec = {"store": str(store), "folders": str(folders),
            "records": [[r.video_id, r.label] for r in records],
            "mm": {m: {"ann_file": str(lists_dir / f"pass_rawframes_{m}.txt"),
                       "clip_len": SPECS[m].snippet_length, "scales": list(SPECS[m].scales)}
                   for m in MM_MODALITIES}}
    policy = bp.RetryPolicy(args.max_other_load, args.retries)
    started, t0, load_start = dt.datetime.now().astimezone(), time.perf_counter(), os.getloadavg()
    procs: dict[str, SideProcess] = {}
    try:
        procs[OURS] = SideProcess(OURS, sys.executable, dict(spec, modalities=list(MODALITIES)))
        if mm_python:
            procs[MM] = SideProcess(MM, mm_python, dict(spec, modalities=list(MM_MODALITIES)))
        infos = {name: p.ask(cmd="info") for name, p in procs.items()}
        for name, info in infos.items():
            log(f"[{name}] " + ", ".join(f"{k} {v}" for k, v in info.items()))
        if MM in infos:
            for m in MM_MODALITIES:  # the same pixels per item, whatever the layout
                a, b = infos[OURS]["items"][m], infos[MM]["items"][m]
                if a["numel"] != b["numel"]:
                    raise RuntimeError(f"{m}: ours gives items {a['shape']}, mmaction2 {b['shape']}: "
                                       "not the same settings")
        bench = run_benchmark(procs, len(records), s, files, store, policy)
    finally:
        for p in procs.values():
            p.close()
    minutes = (time.perf_counter() - t0) / 60
    rows = table(bench)
    print_summary(rows, bench, skipped)
    print(f"\n{bp.disturbed_note(policy)}\n(total {minutes:.1f} min, plus {build_minutes:.1f} min "
          "getting the data)")

    if not args.no_docs:
        machine = bt.machine_info(clips)
        machine["tsn code measured"] = code_version()
        for k in ("torch", "torch threads (intra-op)", "torch backends", "fincore", "cv2 version",
                  "cv2.getNumThreads()"):
            machine.pop(k, None)  # per side below
        ctx = {
            "rows": rows, "bench": bench, "infos": infos, "started": started, "minutes": minutes,
            "build_minutes": build_minutes, "command": bp.docs_command(__file__, raw),
            "skipped": skipped, "cold_skip": cold_skip, "machine": machine,
            "load_start": load_start, "policy": policy, "disturbed": bp.disturbed_note(policy),
            "env_commands": [["python" if x == sys.executable else x.replace(str(env), "$ENV")
                              for x in c] for c in env_commands(env)],
            "env_display": f"`--bench-env`, here `{env}` (`$ENV` below)",
            "scales": {m: SPECS[m].scales for m in MODALITIES},
            "videos": bp.display_path(videos),
            "data": {"clips": len(clips), "flow_frames": bt.FLOW_FRAMES, "frames":
                     ", ".join(f"{c} {v['rgb']} ({v['flow']} flows)" for c, v in frames.items()),
                     "store_bytes": sum(p.stat().st_size for p in files["lmdb"]),
                     "folder_bytes": sum(p.stat().st_size for p in files["folders"]),
                     "folder_files": len(files["folders"]),
                     "image_kb": {m: v / 1000 for m, v in bt.image_bytes(files["folders"]).items()}},
        }
        bp.write_section(bp.DOCS, SECTION, render_docs(ctx))
        print(f"wrote {bp.DOCS} (section {SECTION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
