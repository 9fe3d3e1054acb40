"""Our training input pipeline against mmaction2 1.2.0's TSN pipeline, per core and with loader
workers, warm and cold page cache.

Each side runs in a long-lived process of its own (``--side``; mmaction2's in its own virtual
environment, ``--bench-env``, made by ``--setup-env``), driven over a pipe with JSON lines; both
read the same data (``tools.bench.data``: ours the store, mmaction2 the exported JPEG folders).
Without the environment the mmaction2 side is skipped (said so in the output); without root the
cold passes are. Interleaved repeats, the same order and seed for both sides, medians.

    python -m tools.bench.loader --quick
    python -m tools.bench.loader --setup-env --write-docs
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from tools.bench.common import (REPO, Clock, RetryPolicy, Timing, busy_seconds, can_drop_caches, code_version,
                                disk_reads, display_path, drop_caches, finish, log, machine_info, median, own_cpu,
                                parse_args, parser, proc_io, rotated, warm)

OURS, MM, DECODE = "ours", "mmaction2", "ours, decoding only"
BATCH, LOADER_WORKERS, NUM_CLASSES = 8, 2, 101
MODALITIES, MM_MODALITIES = ("rgb", "rgbdiff", "flow"), ("rgb", "flow")  # mmaction2 has no RGB difference
MM_VERSIONS = {"mmaction2": "1.2.0", "mmengine": "0.10.7", "mmcv-lite": "2.1.0",  # 2.2.0 refused by mmaction2 1.2.0
               "decord": "0.6.0"}  # its video backends' (tools.bench.videos): decord, and PyAV as the project's
MM_SMALL_DEPS = ("addict", "yapf", "termcolor", "rich", "pyyaml", "packaging")  # what importing it needs
SAME_AS_PROJECT = ("numpy", "opencv-contrib-python", "scipy", "Pillow", "av")
DEFAULT_BENCH_ENV = Path("/tmp/tsn-bench-mmaction2-env")
# Rounds over the pass's videos per warm pass (each about 2 s with the full settings); cold: once.
WARM_ROUNDS = {"rgb": 6, "rgbdiff": 1, "flow": 2}


# --------------------------------------------------------------------------- the two pipelines

def make_ours(spec: dict, modality: str, decode_only: bool = False):
    """Our training dataset as ``tsn-train fit`` builds it with ``--decode-on loader``;
    ``decode_only``: the same sampling and decoding with no augmentation."""
    from tools.bench.train import make_dataset
    from tsn_core.store import Store
    from tsn_train.dataset import StoreImages
    from tsn_train.lists import Record, validate

    records = [Record(v, label) for v, label in spec["records"]]
    store = Store(Path(spec["store"]))
    counts = validate(records, store, modality, NUM_CLASSES)
    store.close()
    ds = make_dataset(StoreImages(Path(spec["store"])), records, counts, modality)
    if decode_only:
        ds.transform = lambda frames, rng: frames
    return ds


def make_mmaction2(spec: dict, modality: str):
    """mmaction2's TSN rawframe pipeline from its own classes (no registry, no config file); the
    configs' ``Resize(scale=(-1, 256))`` is left out: the images are stored at 340x256 already."""
    from mmaction.datasets import RawframeDataset
    from mmaction.datasets.transforms import (Flip, FormatShape, MultiScaleCrop, PackActionInputs, RawFrameDecode,
                                              Resize, SampleFrames)
    s, size = spec["mm"][modality], spec["input_size"]
    pipeline = [SampleFrames(clip_len=s["clip_len"], frame_interval=1, num_clips=spec["segments"]), RawFrameDecode(),
                MultiScaleCrop(size, scales=tuple(s["scales"]), random_crop=False, max_wh_scale_gap=1,
                               num_fixed_crops=spec["crop_positions"]),
                Resize(scale=(size, size), keep_ratio=False), Flip(flip_ratio=0.5), FormatShape(input_format="NCHW"),
                PackActionInputs()]
    flow = modality == "flow"
    return RawframeDataset(s["ann_file"], pipeline, data_prefix=dict(img=spec["folders"]),
                           filename_tmpl="flow_{}_{:05d}.jpg" if flow else "img_{:05d}.jpg",
                           modality="Flow" if flow else "RGB", start_index=1)


class Side:
    """One side's datasets and how to run a pass over one (runs in the side's process)."""

    def __init__(self, name: str, spec: dict):
        import cv2
        import numpy as np
        import torch
        torch.set_num_threads(1)
        cv2.setNumThreads(1)  # before any worker forks (as fit's single_threaded_decoding)
        self.name, self.spec, self.np = name, spec, np
        self.datasets, self.decode_only = self.make(name, spec)
        if name == OURS:
            self.collate = None  # DataLoader's default: one stacked tensor per batch, as fit
        else:
            from mmengine.dataset import pseudo_collate  # what mmengine's runner uses
            self.collate = pseudo_collate

    @staticmethod
    def make(name: str, spec: dict) -> tuple[dict, dict]:
        """The datasets of each modality, and ours decoding only."""
        mods = MODALITIES if name == OURS else MM_MODALITIES
        return ({m: make_ours(spec, m) if name == OURS else make_mmaction2(spec, m) for m in mods},
                {m: make_ours(spec, m, True) for m in MM_MODALITIES} if name == OURS else {})

    def item(self, m: str, i: int, decode_only: bool = False):
        out = (self.decode_only if decode_only else self.datasets)[m][i]
        return out[0] if self.name == OURS else out["inputs"]

    def release(self) -> dict:
        """Close every handle on the data, so that dropping the page cache empties it."""
        if self.name == OURS:
            from tsn_core.store import Store
            Store(Path(self.spec["store"])).close()
            for ds in (*self.datasets.values(), *self.decode_only.values()):
                ds.source._store = None
        return {}

    def seed(self, m: str, seed: int) -> None:
        if self.name == OURS:
            for ds in (self.datasets[m], self.decode_only.get(m)):
                if ds is not None:
                    ds.set_epoch(seed)
        else:  # mmaction2's transforms draw from the global generators
            self.np.random.seed(seed)
            random.seed(seed)

    def run_pass(self, modality: str, order: list[int], workers: int, seed: int, decode_only: bool = False) -> dict:
        """Item by item (workers 0) or through a DataLoader, timed from the first batch on."""
        self.seed(modality, seed)
        gc.collect()

        def usage():
            me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, me.ru_utime + me.ru_stime,
                    me.ru_majflt + kids.ru_majflt)
        io0, u0, t0 = proc_io(), usage(), time.perf_counter()
        first_at, first_items, items = None, 0, 0
        if workers == 0:
            for i in order:
                self.item(modality, i, decode_only)
            items = len(order)
        else:
            from torch.utils.data import DataLoader
            loader = DataLoader(self.datasets[modality], batch_size=BATCH, sampler=order, num_workers=workers,
                                collate_fn=self.collate, persistent_workers=False)
            for batch in loader:
                n = len(batch[1]) if self.name == OURS else len(batch["inputs"])
                if first_at is None:
                    first_at, first_items = time.perf_counter(), n
                items += n
            del loader  # joins (and reaps) the workers, so their CPU time is counted
            gc.collect()
        t1, io1, u1 = time.perf_counter(), proc_io(), usage()
        return {"wall": t1 - t0, "timed_wall": t1 - (first_at or t0), "timed_items": items - first_items,
                "first_batch": None if first_at is None else first_at - t0, "cpu": u1[0] - u0[0],
                "cpu_main": u1[1] - u0[1], "majflt": u1[2] - u0[2],
                **{k: io1[k] - io0[k] for k in ("read_bytes", "rchar", "syscr")}}

    def info(self) -> dict:
        import cv2
        import numpy as np
        import torch
        out = {"python": sys.version.split()[0], "executable": sys.executable, "torch": torch.__version__,
               "numpy": np.__version__, "cv2": cv2.__version__, "items": {}}
        if self.name == MM:
            import mmaction
            import mmcv
            import mmengine
            out.update(mmaction2=mmaction.__version__, mmengine=mmengine.__version__, mmcv=mmcv.__version__)
        for m in self.datasets:
            self.seed(m, 0)
            x = self.item(m, 0)
            out["items"][m] = {"shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", ""), "numel": int(x.numel())}
        return out


def side_main(name: str, spec_json: str, kind: type = Side) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints must not mix with the answers
    side = kind(name, json.loads(spec_json))
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        answer = (side.info() if cmd["cmd"] == "info" else side.release() if cmd["cmd"] == "release" else
                  side.run_pass(cmd["modality"], cmd["order"], cmd["workers"], cmd["seed"], cmd.get("decode_only", False)))
        proto.write(json.dumps(answer) + "\n")
    return 0


class SideProcess:
    def __init__(self, name: str, python: str, spec: dict, module: str = "tools.bench.loader",
                 pythonpath: str = str(REPO)):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONNOUSERSITE="1")
        if name != MM:  # this checkout's tsn packages (or pythonpath's), whatever is installed
            env["PYTHONPATH"] = pythonpath
        self.name = name
        self.proc = subprocess.Popen([python, "-m", module, "--side", name, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
        if not self.proc.stdout.readline():
            raise RuntimeError(f"the {name} process ended before it was ready (exit code {self.proc.wait()})")

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} process ended (exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


# --------------------------------------------------------------------------- the bench environment

def env_commands(env: Path) -> list[list[str]]:
    from importlib.metadata import PackageNotFoundError, version

    def pinned(p: str) -> str:  # the project's version where it has the package
        try:
            return f"{p}=={version(p)}"
        except PackageNotFoundError:
            return p
    py = str(env / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--quiet"]
    return [[sys.executable, "-m", "venv", str(env)], pip + [f"torch=={version('torch').split('+')[0]}"],
            pip + ["--no-deps"] + [f"{p}=={v}" for p, v in MM_VERSIONS.items()],
            pip + ["--no-deps"] + [pinned(p) for p in SAME_AS_PROJECT], pip + list(MM_SMALL_DEPS),
            [py, "-c", "import mmaction.datasets.transforms, mmengine.dataset, decord, av"]]


def check_env(env: Path, also: str = "") -> tuple[Optional[str], str]:
    """(the environment's Python, "") when mmaction2's pipeline (and the modules ``also``) import
    there, else (None, why)."""
    py = env / "bin" / "python"
    if not py.exists():
        return None, f"no environment at {env}"
    r = subprocess.run([str(py), "-c", f"import mmaction, mmaction.datasets.transforms{also}; print(mmaction.__version__)"],
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if r.returncode or r.stdout.strip() != MM_VERSIONS["mmaction2"]:
        return None, f"{env} has no working mmaction2 {MM_VERSIONS['mmaction2']}: {(r.stderr or r.stdout).strip()[-200:]}"
    return str(py), ""


# --------------------------------------------------------------------------- orchestration

def run_benchmark(procs: dict, n: int, repeats: int, files: dict, data_path: Path, cold: bool, policy: RetryPolicy) -> dict:
    import numpy as np
    cfgs = []
    for cache in ("warm", "cold") if cold else ("warm",):
        for w in (0, LOADER_WORKERS) if cache == "warm" else (0,):
            for m in MODALITIES if cache == "warm" else MM_MODALITIES:
                cfgs += [(m, w, cache, side) for side in procs if side == OURS or m in MM_MODALITIES]
                if (cache, w) == ("warm", 0) and m in MM_MODALITIES:
                    cfgs.append((m, w, cache, DECODE))
    proc = {side: procs[OURS if side == DECODE else side] for side in {c[3] for c in cfgs}}
    runs: dict = {c: [] for c in cfgs}
    warm(files["lmdb"] + files["folders"])
    for m, side in sorted({(c[0], c[3]) for c in cfgs}):
        proc[side].ask(cmd="pass", modality=m, order=list(range(min(n, 16))), workers=0, seed=999, decode_only=side == DECODE)

    def one(cfg, rep):
        m, w, cache, side = cfg
        gen = np.random.default_rng(rep + 1)
        order = [int(i) for _ in range(WARM_ROUNDS[m] if cache == "warm" else 1) for i in gen.permutation(n)]
        if cache == "cold":
            proc[side].ask(cmd="release")
            drop_caches()
        else:  # right before: this VM pages out page-cache pages unused for about 30 s
            prefix = "flow_" if m == "flow" else "img_"
            warm(files["lmdb"] if side != MM else [f for f in files["folders"] if f.name.startswith(prefix)])
        d0, b0, o0 = disk_reads(data_path), busy_seconds(), own_cpu()
        r = proc[side].ask(cmd="pass", modality=m, order=order, workers=w, seed=rep + 1, decode_only=side == DECODE)
        r["other"] = max(0.0, (busy_seconds() - b0 - r["cpu"] - (own_cpu() - o0)) / r["wall"])
        r["disk"] = [b - a for a, b in zip(d0, disk_reads(data_path))]
        r["rate"] = r["timed_items"] * SEGMENTS_ / r["timed_wall"]
        return r
    for rep in range(repeats):
        for cache in ("warm", "cold"):
            for cfg in rotated([c for c in cfgs if c[2] == cache], rep) if any(c[2] == cache for c in cfgs) else []:
                r = policy.run(str(cfg), lambda: one(cfg, rep), lambda r: Timing(r["wall"], r["cpu"], r["other"]))
                runs[cfg].append(r)
                log(f"[loader] {rep + 1}/{repeats} {cfg}: {r['rate']:.1f} snippets/s ({r['majflt']} major faults)")
    return runs


SEGMENTS_ = 3  # set from FitConfig in main (this module imports no tsn at the top: the mmaction2 side has none)


def table(runs: dict, n: int) -> list[dict]:
    """One row per (modality, workers, cache): medians per side, ratio ours / mmaction2."""
    rows = []
    keys = sorted({c[:3] for c in runs}, key=lambda k: (("warm", "cold").index(k[2]), k[1], MODALITIES.index(k[0])))
    for m, w, c in keys:
        sides = {s: rs for (m2, w2, c2, s), rs in runs.items() if (m2, w2, c2) == (m, w, c)}
        med = {s: {"rate": median(r["rate"] for r in rs), "cores": median(r["cpu"] / r["wall"] for r in rs),
                   "main_cores": median(r["cpu_main"] / r["wall"] for r in rs),
                   "first_batch": median(r["first_batch"] for r in rs) if w else None,
                   "read_mb": median(r["read_bytes"] for r in rs) / 1e6, "rchar_mb": median(r["rchar"] for r in rs) / 1e6,
                   "syscr": median(r["syscr"] for r in rs), "majflt": median(r["majflt"] for r in rs),
                   "disk_requests": median(r["disk"][0] for r in rs), "other": median(r["other"] for r in rs)}
               for s, rs in sides.items()}
        both = OURS in sides and MM in sides
        rows.append({"modality": m, "workers": w, "cache": c, "ours": med[OURS], "mmaction2": med.get(MM),
                     "ratio": med[OURS]["rate"] / med[MM]["rate"] if both else None,
                     "per_repeat": [a["rate"] / b["rate"] for a, b in zip(sides[OURS], sides[MM])] if both else None,
                     "decode": {"rate": med[DECODE]["rate"], "ratio": med[DECODE]["rate"] / med[MM]["rate"] if MM in med else None}
                     if DECODE in med else None,
                     "other": max(v["other"] for v in med.values())})
    return rows


def findings(rows: list[dict], n: int, image_kb: dict) -> dict:
    from tools.bench.data import images_per_snippet
    by = {(r["modality"], r["workers"], r["cache"]): r for r in rows}
    out: dict = {"scaling": {}, "below_twice": [], "rgbdiff": None, "per_page": False, "cold": []}
    for m in MODALITIES:
        one, two = by.get((m, 0, "warm")), by.get((m, LOADER_WORKERS, "warm"))
        if one and two:
            out["scaling"][m] = {s: {"speedup": two[s]["rate"] / one[s]["rate"], "main_cores": two[s]["main_cores"]}
                                 for s in (OURS, MM) if one[s] and two[s]}
    out["below_twice"] = [r["modality"] for r in rows if r["decode"] and r["mmaction2"]
                          and r["decode"]["rate"] < 2 * r["mmaction2"]["rate"]]
    if ("rgbdiff", 0, "warm") in by:
        a, b = by[("rgbdiff", 0, "warm")][OURS]["rate"], by[("rgb", 0, "warm")][OURS]["rate"]
        out["rgbdiff"] = {"rate": a, "fewer": b / a}
    for r in rows:
        if r["cache"] == "cold" and r["mmaction2"]:
            o, mm, images = r[OURS], r["mmaction2"], n * SEGMENTS_ * images_per_snippet(r["modality"])
            out["cold"].append({"modality": r["modality"], "images": images, "image_kb": image_kb[r["modality"]],
                                "ours_majflt": o["majflt"] / images, "ours_requests": o["disk_requests"] / images,
                                "ours_mb": o["read_mb"], "mm_reads": mm["syscr"] / images,
                                "mm_requests": mm["disk_requests"] / images, "mm_mb": mm["read_mb"]})
            if r["modality"] == "rgb":
                out["per_page"] = o["majflt"] >= 3 * n * SEGMENTS_
    return out


def main(argv: Optional[list[str]] = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--side"]:  # a side process; nothing of tsn imported yet
        return side_main(raw[1], raw[2])
    global SEGMENTS_
    from tools.bench import data as bd
    from tools.bench.train import CROP_POSITIONS, FULL, QUICK, SEGMENTS, input_size
    from tsn_core import modalities
    from tsn_prep.folders import write_rawframe_lists
    from tsn_train.config import REFERENCE

    SEGMENTS_ = SEGMENTS
    p = parser(__doc__, videos=True, retry=True)
    p.add_argument("--passes", type=int, help="interleaved repeats of every pass (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: smaller data, one repeat")
    p.add_argument("--no-cold", action="store_true", help="skip the cold page-cache passes")
    p.add_argument("--cache", type=Path, default=bd.DEFAULT_CACHE, help="the data, shared with tools.bench.train")
    p.add_argument("--bench-env", type=Path, default=DEFAULT_BENCH_ENV, help="the virtual environment holding mmaction2")
    p.add_argument("--setup-env", action="store_true", help="create --bench-env first (about 5.5 GB, most of it torch)")
    args = parse_args(p, raw)
    s = QUICK if args.quick else FULL  # the data tools.bench.train builds, shared
    s = dataclasses.replace(s, loader_repeats=args.passes or s.loader_repeats)
    env, skipped = args.bench_env.absolute(), []
    if args.setup_env and not (env / "bin" / "python").exists():
        for cmd in env_commands(env):
            log("[env] " + shlex.join(cmd))
            subprocess.run(cmd, check=True)
    mm_python, why = check_env(env)
    if mm_python is None:
        skipped.append(f"mmaction2 side skipped: {why}. Create it with `python -m tools.bench.loader --setup-env --bench-env {env}`")
        log(f"[env] {skipped[-1]}")
    cold_skip = "`--no-cold` was given." if args.no_cold else can_drop_caches()
    if cold_skip and not args.no_cold:
        skipped.append(cold_skip)
    t_build = time.perf_counter()
    clips, store, folders = bd.build(args.videos, args.cache, s.copies, s.flow_frames)
    records = bd.pass_records(store, clips, s.pass_copies)
    lists_dir = store.parent / f"mmaction2-lists-{s.pass_copies}"
    from tsn_core.store import Store
    st = Store(store)
    write_rawframe_lists(st, lists_dir, ("rgb", "flow"), {"pass": [(r.video_id, r.label) for r in records]})
    frames = ", ".join(f"{c.stem} {st.entry(f'c00/{c.stem}', 'rgb').meta.count} "
                       f"({st.entry(f'c00/{c.stem}', 'flow').meta.count} flows)" for c in clips)
    st.close()
    files = bd.data_files(store, folders)
    build_minutes = (time.perf_counter() - t_build) / 60
    size = input_size("bn_inception")
    spec = {"store": str(store), "folders": str(folders), "records": [[r.video_id, r.label] for r in records],
            "segments": SEGMENTS, "input_size": size, "crop_positions": CROP_POSITIONS,
            "mm": {m: {"ann_file": str(lists_dir / f"pass_rawframes_{m}.txt"), "clip_len": modalities.get(m).snippet_length,
                       "scales": list(REFERENCE[m].scales)} for m in MM_MODALITIES}}
    policy, clock, load = RetryPolicy.of(args), Clock(argv), os.getloadavg()
    procs: dict = {}
    try:
        procs[OURS] = SideProcess(OURS, sys.executable, spec)
        if mm_python:
            procs[MM] = SideProcess(MM, mm_python, spec)
        infos = {name: pr.ask(cmd="info") for name, pr in procs.items()}
        if MM in infos:
            for m in MM_MODALITIES:  # the same pixels per item, whatever the layout
                if infos[OURS]["items"][m]["numel"] != infos[MM]["items"][m]["numel"]:
                    raise RuntimeError(f"{m}: ours and mmaction2 items differ in size: not the same settings")
        runs = run_benchmark(procs, len(records), s.loader_repeats, files, store, not cold_skip, policy)
    finally:
        for pr in procs.values():
            pr.close()
    rows = table(runs, len(records))
    machine = machine_info(torch_too=True)
    for k in ("torch", "torch threads (intra-op)", "torch backends", "cv2 version", "cv2.getNumThreads()"):
        machine.pop(k)  # per side below
    machine["tsn code measured"] = code_version()
    for name, info in infos.items():
        machine[f"{name} side"] = (f"Python {info['python']}, torch {info['torch']}, numpy {info['numpy']}, "
                                   f"cv2 {info['cv2']} ({info['executable']})")
    shapes = {name: ", ".join(f"{m} `{v['dtype']} {tuple(v['shape'])}`" for m, v in info["items"].items())
              for name, info in infos.items()}
    warm_reads = {str(w): [r["read_bytes"] / 1e6 for (_, w2, c, _), rs in runs.items() if c == "warm" and w2 == w for r in rs]
                  for w in (0, LOADER_WORKERS)}
    mm = infos.get(MM)
    finish("bench_loader", {
        "section": "bench_loader", "template": "loader",
        **clock.stamp("tools.bench.loader"), "build_minutes": build_minutes, "skipped": skipped,
        "cold_skip": cold_skip, "segments": SEGMENTS, "input_size": size, "crop_positions": CROP_POSITIONS,
        "batch": BATCH, "workers": LOADER_WORKERS, "env": str(env),
        "env_commands": [" ".join("python" if x == sys.executable else x.replace(str(env), "$ENV") if x.startswith(str(env))
                                  else shlex.quote(x) for x in c) for c in env_commands(env)],
        "mm_version": f"{mm['mmaction2']} (mmengine {mm['mmengine']}, mmcv-lite {mm['mmcv']})" if mm else "not run",
        "scales": {m: list(REFERENCE[m].scales) for m in MODALITIES}, "shapes": {"ours": shapes[OURS], "mmaction2": shapes.get(MM)},
        "machine": machine, "load_start": list(load),
        "policy": policy.figures([r["other"] for rs in runs.values() for r in rs]), "videos": display_path(args.videos),
        "data": {"clips": len(clips), "flow_frames": s.flow_frames, "copies": s.copies, "frames": frames,
                 "store_mb": sum(f.stat().st_size for f in files["lmdb"]) / 1e6,
                 "folder_mb": sum(f.stat().st_size for f in files["folders"]) / 1e6, "folder_files": len(files["folders"])},
        "n": len(records), "pass_copies": s.pass_copies, "rounds": WARM_ROUNDS, "repeats": s.loader_repeats,
        "warm_reads": {w: {"median": median(v), "max": max(v)} for w, v in warm_reads.items()},
        "rows": rows, "findings": findings(rows, len(records), bd.image_kb(files["folders"]))}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
