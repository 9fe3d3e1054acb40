"""Training from video files: our ``VideoDataset`` over ``VideoFiles`` against mmaction2 1.2.0's
``VideoDataset`` (PyAV and decord backends) and against our store of the same clips, per core
and with 2 loader workers; the workers' memory over an epoch of a 100k-video list; disk per video.

The side processes are ``tools.bench.loader``'s (ours in the project's environment, mmaction2 in
``--bench-env``, made by ``python -m tools.bench.loader --setup-env``, which installs decord and
PyAV there too). Items cycle the real clips; every repeat draws one shuffled order, the same
for every side; repeats are interleaved, medians reported. One-thread passes run on one core
(the side's CPU affinity), which also keeps FFmpeg's automatic thread count at one.
``--before COMMIT``: also the store side with tsn_* as at COMMIT (before videos came in).

    python -m tools.bench.videos --quick
    python -m tools.bench.videos --write-docs
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from tools.bench.common import REPO, Clock, RetryPolicy, Timing, busy_seconds, log, median, own_cpu, rotated, warm
from tools.bench.loader import BATCH, LOADER_WORKERS, MM, NUM_CLASSES, OURS, Side, SideProcess, side_main

SIZE = (340, 256)  # FrameSettings' and tsn-prep extract-frames' default
SCALES = (1, .875, .75, .66)  # rgb's (tsn_train.config.REFERENCE)
SIDES = {OURS: ("videos", "store"), MM: ("pyav", "decord"), "before": ("store before",)}
ITEMS, REPEATS, MEMORY_VIDEOS = 200, 5, 100_000
ROUNDS = {"store": 10, "store before": 10}  # rounds over the items per pass: a store pass lasts seconds too


def ours_datasets(spec: dict, keys: tuple) -> dict:
    """``tsn-train fit``'s training datasets (rgb, decoding in the loader) over the clips
    (``VideoSource``: ``FrameSettings`` 340x256, one FFmpeg thread) and over their store."""
    from tools.bench.train import make_dataset
    from tsn_core.lists import Record
    records = [Record(v, label) for v, label in spec["records"]]
    out = {}
    if "videos" in keys:
        from tsn_train.video_source import FrameSettings, VideoSource
        src = VideoSource(Path(spec["videos"]), FrameSettings(SIZE), progress=False)
        videos = src.checked(records, "rgb", NUM_CLASSES, "list", Path(spec["list"])).videos
        out["videos"] = make_dataset(src.images(threads=1), videos, None, "rgb")
    for key in keys[1:] if "videos" in keys else keys:  # the store, as the loader benchmark reads it
        from tsn_core.store import Store
        from tsn_train.dataset import StoreImages
        from tsn_train.lists import validate
        store = Store(Path(spec["store"]))
        counts = validate(records, store, "rgb", NUM_CLASSES)
        store.close()
        out[key] = make_dataset(StoreImages(Path(spec["store"])), records, counts, "rgb")
    return out


def mm_datasets(spec: dict) -> dict:
    """mmaction2's ``VideoDataset`` with its TSN video pipeline (the ``tsn_*_video`` configs'
    train pipeline, from its own classes), once with PyAV and once with decord."""
    from mmaction.datasets import VideoDataset
    from mmaction.datasets.transforms import (DecordDecode, DecordInit, Flip, FormatShape, MultiScaleCrop,
                                              PackActionInputs, PyAVDecode, PyAVInit, Resize, SampleFrames)

    def pipeline(init, decode):
        return [init, SampleFrames(clip_len=1, frame_interval=1, num_clips=spec["segments"]), decode,
                Resize(scale=(-1, 256)), MultiScaleCrop(spec["input_size"], SCALES, random_crop=False, max_wh_scale_gap=1,
                                                        num_fixed_crops=spec["crop_positions"]),
                Resize(scale=(spec["input_size"],) * 2, keep_ratio=False), Flip(flip_ratio=0.5),
                FormatShape(input_format="NCHW"), PackActionInputs()]
    return {name: VideoDataset(spec["ann_file"], pipeline(init, decode), data_prefix=dict(video=spec["videos"]))
            for name, init, decode in (("pyav", PyAVInit(), PyAVDecode()), ("decord", DecordInit(), DecordDecode()))}


class VideoSide(Side):
    """A side process of this benchmark (``SIDES``): its datasets are keyed by what they read."""

    def __init__(self, name: str, spec: dict):
        self.keys = SIDES[name]
        super().__init__(MM if name == MM else OURS, spec)

    def make(self, name: str, spec: dict) -> tuple[dict, dict]:
        return (mm_datasets(spec) if name == MM else ours_datasets(spec, self.keys)), {}

    def run_pass(self, modality: str, order: list[int], workers: int, seed: int, decode_only: bool = False) -> dict:
        cpus = os.sched_getaffinity(0)
        if not workers:  # per core: one core (and FFmpeg's automatic thread count with it)
            os.sched_setaffinity(0, {self.spec["core"]})
        try:
            return super().run_pass(modality, order, workers, seed)
        finally:
            os.sched_setaffinity(0, cpus)


def profile_videos(spec: dict, n: int) -> dict:
    """Where an item's time goes from videos: ``n`` items under cProfile on one core, the time in
    OpenCV's ``grab`` (frames decoded, not returned), ``set`` (jumps; OpenCV decodes from the
    keyframe to the frame) and ``read`` (the frames returned); and each clip's frames and keyframes."""
    import cProfile
    import pstats

    import cv2
    cv2.setNumThreads(1)
    ds = ours_datasets(spec, ("videos",))["videos"]
    index, cpus = ds.source.index, os.sched_getaffinity(0)
    os.sched_setaffinity(0, {spec["core"]})
    try:
        pr, t = cProfile.Profile(), time.perf_counter()
        pr.runcall(lambda: [ds[i] for i in range(n)])
        wall = time.perf_counter() - t
    finally:
        os.sched_setaffinity(0, cpus)
    calls = {name.split("'")[1]: {"calls": nc / n, "ms": 1000 * tt / n} for (_, _, name), (_, nc, tt, _, _)
             in pstats.Stats(pr).stats.items() if "cv2.VideoCapture" in name}
    scans = {index.video_id(r): index.scan(r) for r in range(len(index))}
    return {"items": n, "ms": 1000 * wall / n, "calls": calls,
            "clips": {k: {"frames": v.frames, "keyframes": len(v.keyframes), "uniform": v.uniform} for k, v in scans.items()}}


# --------------------------------------------------------------------------- data

def build(clips: list[Path], cache: Path, n: int) -> dict:
    """The store of the clips (``tsn-prep extract-frames``, rgb at 340x256), the lists of ``n``
    items cycling the clips, and their sizes on disk."""
    from tools.bench.data import tsn_prep_cli
    store, stamp = cache / "store", [[c.name, c.stat().st_size] for c in clips]
    if not (cache / "stamp.json").exists() or json.loads((cache / "stamp.json").read_text()) != stamp:
        subprocess.run(["rm", "-rf", str(store)], check=True)
        log(f"[videos] extracting {len(clips)} clips into {store}")
        tsn_prep_cli("extract-frames", str(clips[0].parent), str(store), "--size", "x".join(map(str, SIZE)))
        (cache / "stamp.json").write_text(json.dumps(stamp))
    records = [[clips[i % len(clips)].stem, i % len(clips)] for i in range(n)]
    ann = cache / f"mmaction2-videos-{n}.txt"
    ann.write_text("".join(f"{clips[label].name} {label}\n" for _, label in records))

    def du(path: Path) -> int:  # bytes allocated on disk
        return int(subprocess.run(["du", "-s", "-B1", str(path)], check=True, capture_output=True, text=True).stdout.split()[0])
    from tsn_core.store import Store
    st = Store(store)
    frames = sum(st.index.count(c.stem, "rgb") for c in clips)
    st.close()
    disk = {"clips_bytes": sum(c.stat().st_size for c in clips), "clips_du": sum(du(c) for c in clips),
            "store_bytes": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()), "store_du": du(store),
            "frames": frames}
    return {"store": store, "records": records, "ann": ann, "list": cache / f"videos-{n}.txt", "disk": disk}


# The full section in docs/performance.md, and the advice (frames or videos) the README and
# docs/training.md quote from the same figures
RENDERS = [{"template": "videos", "section": "bench_videos", "page": "docs/performance.md"},
           {"template": "videos_advice", "section": "videos_advice", "page": "README.md"},
           {"template": "videos_advice", "section": "videos_advice", "page": "docs/training.md"}]


# --------------------------------------------------------------------------- memory at 100k videos

def memory_list(clips: list[Path], root: Path, videos: int) -> tuple[Path, Path]:
    """A folder of ``videos`` symlinks to the clips (ids ``d000/v000000``, labelled i % 101), the
    train list of them, and its video index, made from one scan per clip (as ``fit`` would cache
    it; made anew each run, so the clips' times are the index's)."""
    from tsn_train.video_index import VideoIndex, index_path, scan_video
    links, lst = root / f"links-{videos}", root / f"train-{videos}.txt"
    scans = [(c, c.stat(), scan_video(c)) for c in clips]
    entries, lines = [], []
    for i in range(videos):
        clip, st, scan = scans[i % len(scans)]
        vid = f"d{i // 1000:03d}/v{i:06d}"
        path = links / (vid + clip.suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_symlink():
            path.symlink_to(clip.resolve())
        entries.append((vid, path, st.st_size, st.st_mtime_ns, scan))
        lines.append(f"{vid} {i % NUM_CLASSES}\n")
    lst.write_text("".join(lines))
    VideoIndex.of(entries).save(index_path(lst))
    return links, lst


SMAPS = {"Rss:": "rss", "Pss:": "pss", "Private_Clean:": "uss", "Private_Dirty:": "uss"}


def smaps(pid: int) -> dict:
    m = {"rss": 0, "pss": 0, "uss": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, *rest = line.split()
        if key in SMAPS:
            m[SMAPS[key]] += int(rest[0]) * 1024
    return m


MARKS = 32  # memory read at the first batch and at every 32nd of the epoch


def memory_probe(links: str, lst: str, out: str) -> dict:
    """``fit``'s training loader over the list (``fit.load_data``: 2 workers, batch BATCH) for
    its whole epoch; each worker's memory at the first batch and at every MARKS-th of the epoch
    (the last at its last batch)."""
    import torch
    torch.set_num_threads(1)
    from tsn_train import distributed, fit
    from tsn_train.config import resolve
    cfg = resolve(dict(modality="rgb", videos=links, train_list=lst, out=out, workers=LOADER_WORKERS, device="cpu"))
    t = time.perf_counter()
    data = fit.load_data(cfg, distributed.setup("cpu"))
    load_s, loader = time.perf_counter() - t, data.train_loader
    it, samples, items, t0, epoch = iter(loader), [], 0, None, len(loader.sampler)
    for x, _ in it:
        items += len(x)
        now = time.perf_counter()
        t0 = now if t0 is None else t0
        if items >= epoch * len(samples) / MARKS:  # the first batch, then each MARKS-th of the epoch
            samples.append({"items": items, "seconds": now - t0, "workers": [smaps(w.pid) for w in it._workers],
                            "parent": smaps(os.getpid())})
    return {"load_s": load_s, "epoch_items": epoch, "batch": cfg.batch_size, "samples": samples}


FLAT_SECOND_HALF = 2 ** 21  # bytes a worker may grow by over the second half of the epoch


def settled_growth(samples: list[dict], key: str) -> list[int]:
    """Per worker, the median of ``key`` over the marks of the epoch's last quarter less its median
    over the second quarter: growth over the second half that a passing peak at one mark (a
    decoder's buffers not yet handed back) does not decide."""
    end = samples[-1]["items"]

    def median_in(lo: float, hi: float, w: int) -> float:
        return median([s["workers"][w][key] for s in samples if lo * end < s["items"] <= hi * end])
    return [int(median_in(.75, 1, w) - median_in(.25, .5, w)) for w in range(len(samples[0]["workers"]))]


def memory_figures(run: dict, videos: int) -> dict:
    """Growth of each worker's USS over the epoch: from the first batch to the last, and over the
    second half (``settled_growth``; ``flat``: under FLAT_SECOND_HALF, that is, under 40 bytes
    a video a worker served there); RSS and PSS the same way."""
    from tsn_train.video_source import VideoFiles
    samples = run["samples"]
    first, last = samples[0], samples[-1]
    growth = [b["uss"] - a["uss"] for a, b in zip(first["workers"], last["workers"])]
    late = {k: settled_growth(samples, k) for k in ("uss", "rss", "pss")}
    return {"videos": videos, "batch": run["batch"], "load_s": run["load_s"], "items": last["items"],
            "seconds": last["seconds"], "items_per_s": (last["items"] - first["items"]) / max(1e-9, last["seconds"]),
            **{f"{k}_{w}": [x[k] for x in s["workers"]] for k in ("uss", "rss", "pss") for w, s in (("first", first), ("last", last))},
            "growth_max": max(growth), "half_growth_max": max(late["uss"]), "half_growth": late,
            "half_items": last["items"] // 2, "marks_per_epoch": MARKS,
            "flat": max(late["uss"]) < FLAT_SECOND_HALF, "flat_bytes": FLAT_SECOND_HALF, "trim_every": VideoFiles.TRIM_EVERY,
            "parent_uss_last": last["parent"]["uss"],
            "marks": [{"items": s["items"], **{k: [x[k] for x in s["workers"]] for k in ("uss", "rss")}} for s in samples]}


def measure_memory(clips: list[Path], cache: Path, videos: int) -> dict:
    """``memory_probe`` in a process of its own over a list of ``videos`` videos, and its figures."""
    links, lst = memory_list(clips, cache, videos)
    env_vars = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "tools.bench.videos", "--memory-probe", str(links), str(lst),
                        str(cache / "memory-run")], env=env_vars, cwd=str(REPO), capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"memory probe: exit {r.returncode}: {r.stderr[-2000:]}")
    return memory_figures(json.loads(r.stdout.strip().splitlines()[-1]), videos)


# --------------------------------------------------------------------------- orchestration

def run_passes(procs: dict, n: int, repeats: int, files: list[Path], policy: RetryPolicy, workers: tuple) -> dict:
    import numpy as np
    from tools.bench.train import SEGMENTS
    cfgs = [(key, w) for w in workers for name in procs for key in SIDES[name]]
    owner = {key: procs[name] for name in procs for key in SIDES[name]}
    for key in owner:  # warm-up: imports, first decodes
        owner[key].ask(cmd="pass", modality=key, order=list(range(min(n, 10))), workers=0, seed=999)
    runs: dict = {c: [] for c in cfgs}

    def one(cfg, rep):
        key, w = cfg
        order = [int(i) for _ in range(ROUNDS.get(key, 1)) for i in np.random.default_rng(rep + 1).permutation(n)]
        warm(files)  # right before: this VM pages out page-cache pages unused for about 30 s
        b0, o0 = busy_seconds(), own_cpu()
        r = owner[key].ask(cmd="pass", modality=key, order=order, workers=w, seed=rep + 1)
        r["other"] = max(0.0, (busy_seconds() - b0 - r["cpu"] - (own_cpu() - o0)) / r["wall"])
        r["rate"] = r["timed_items"] * SEGMENTS / r["timed_wall"]
        return r
    for rep in range(repeats):
        for cfg in rotated(cfgs, rep):
            r = policy.run(str(cfg), lambda: one(cfg, rep), lambda r: Timing(r["wall"], r["cpu"], r["other"]))
            runs[cfg].append(r)
            log(f"[videos] {rep + 1}/{repeats} {cfg}: {r['rate']:.1f} snippets/s, {r['cpu'] / r['wall']:.2f} cores")
    return runs


def table(runs: dict) -> dict:
    """Per workers: every side's median rate and cores, and the ratios of ours (videos and store)
    to every other side, per repeat and median."""
    out: dict = {}
    for w in sorted({w for _, w in runs}):
        rs = {k: v for (k, w2), v in runs.items() if w2 == w}
        rows = {k: {"rate": median(r["rate"] for r in v), "cores": median(r["cpu"] / r["wall"] for r in v),
                    "cpu_rate": median(r["rate"] * r["wall"] / r["cpu"] for r in v),
                    "main_cores": median(r["cpu_main"] / r["wall"] for r in v),
                    "first_batch": median(r["first_batch"] for r in v) if w else None,
                    "other": max(r["other"] for r in v)} for k, v in rs.items()}
        ratios = {f"{a}/{b}": {"per_repeat": [x["rate"] / y["rate"] for x, y in zip(rs[a], rs[b])],
                               "cpu": median(x["rate"] * x["wall"] / x["cpu"] / (y["rate"] * y["wall"] / y["cpu"])
                                             for x, y in zip(rs[a], rs[b]))}
                  for a in ("videos", "store") for b in rs if a in rs and b != a}
        for r in ratios.values():
            r["median"] = median(r["per_repeat"])
        out[str(w)] = {"sides": rows, "ratios": ratios}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--side"]:  # a side process; nothing of tsn imported yet
        return side_main(raw[1], raw[2], VideoSide)
    if raw[:1] == ["--memory-probe"]:
        print(json.dumps(memory_probe(*raw[1:4])))
        return 0
    import tempfile

    from tools.bench.common import code_version, display_path, finish, find_clips, machine_info, parse_args, parser
    from tools.bench.loader import DEFAULT_BENCH_ENV, check_env, env_commands
    from tools.bench.train import CROP_POSITIONS, SEGMENTS, input_size
    p = parser(__doc__, videos=True, retry=True)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tsn-bench-videos")
    p.add_argument("--bench-env", type=Path, default=DEFAULT_BENCH_ENV, help="mmaction2's virtual environment")
    p.add_argument("--before", help="also the store side with tsn_* as at this commit (before videos came in)")
    p.add_argument("--no-memory", action="store_true", help="skip the workers' memory at 100k videos")
    p.add_argument("--memory-only", action="store_true",
                   help="measure only the workers' memory, in place of the last run's (docs/bench/bench_videos.json)")
    p.set_defaults(items=ITEMS, repeats=REPEATS, memory_videos=MEMORY_VIDEOS)
    args = parse_args(p, raw, items=20, repeats=1, memory_videos=2000)
    clips, cache, env = find_clips(args.videos), args.cache.absolute(), args.bench_env.absolute()
    cache.mkdir(parents=True, exist_ok=True)
    if args.memory_only:
        return memory_only(clips, cache, args, raw)
    data = build(clips, cache, args.items)
    size = input_size("bn_inception")
    spec = {"videos": str(Path(args.videos).absolute()), "store": str(data["store"]), "records": data["records"],
            "list": str(data["list"]), "ann_file": str(data["ann"]), "segments": SEGMENTS, "input_size": size,
            "crop_positions": CROP_POSITIONS, "core": max(os.sched_getaffinity(0))}
    mm_python, why = check_env(env, ", decord, av")
    skipped = [] if mm_python else [f"mmaction2 sides skipped: {why}. Create it with "
                                    f"`python -m tools.bench.loader --setup-env --bench-env {env}`"]
    policy, clock, load = RetryPolicy.of(args), Clock(argv), os.getloadavg()
    procs: dict = {}
    try:
        procs[OURS] = SideProcess(OURS, sys.executable, spec, "tools.bench.videos")
        if mm_python:
            procs[MM] = SideProcess(MM, mm_python, spec, "tools.bench.videos")
        if args.before:
            before = cache / f"before-{args.before}"
            if not before.exists():
                before.mkdir()
                subprocess.run(f"git -C {REPO} archive {args.before} tsn_core tsn_prep tsn_train | tar -x -C {before}",
                               shell=True, check=True)
            procs["before"] = SideProcess("before", sys.executable, spec, "tools.bench.videos", f"{before}:{REPO}")
        infos = {name: pr.ask(cmd="info") for name, pr in procs.items()}
        files = list(clips) + [f for f in data["store"].rglob("*") if f.is_file()]
        runs = run_passes(procs, args.items, args.repeats, files, policy, (0, LOADER_WORKERS))
    finally:
        for pr in procs.values():
            pr.close()
    profile = profile_videos(spec, args.items)
    memory = None if args.no_memory else measure_memory(clips, cache, args.memory_videos)
    machine = machine_info(torch_too=True)
    for k in ("torch", "torch threads (intra-op)", "torch backends", "cv2 version", "cv2.getNumThreads()"):
        machine.pop(k)
    machine["tsn code measured"] = code_version()
    for name, info in infos.items():
        machine[f"{name} side"] = (f"Python {info['python']}, torch {info['torch']}, numpy {info['numpy']}, "
                                   f"cv2 {info['cv2']}" + (f", mmaction2 {info['mmaction2']}" if name == MM else ""))
    finish("bench_videos", {
        "section": "bench_videos", "template": "videos", "renders": RENDERS, **clock.stamp("tools.bench.videos"),
        "skipped": skipped,
        "segments": SEGMENTS, "input_size": size, "crop_positions": CROP_POSITIONS, "scales": list(SCALES),
        "size": list(SIZE), "batch": BATCH, "workers": LOADER_WORKERS, "n": args.items, "repeats": args.repeats,
        "videos": display_path(args.videos), "clips": [c.name for c in clips], "disk": data["disk"],
        "env_commands": [" ".join("python" if x == sys.executable else x.replace(str(env), "$ENV") for x in c)
                         for c in env_commands(env)],
        "before": args.before,
        "shapes": {n: {k: f"{v['dtype']} {tuple(v['shape'])}" for k, v in i["items"].items()} for n, i in infos.items()},
        "machine": machine, "load_start": list(load), "policy": policy.figures([r["other"] for v in runs.values() for r in v]),
        "rows": table(runs), "profile": profile, "memory": memory}, args)
    return 0


def memory_only(clips: list[Path], cache: Path, args, argv: list[str]) -> int:
    """The last run's figures with the memory measured again (stamped with its own date and code)."""
    from tools.bench.common import BENCH_JSON, code_version, finish
    figures = json.loads((BENCH_JSON / "bench_videos.json").read_text())
    clock = Clock(argv)
    memory = measure_memory(clips, cache, args.memory_videos)
    memory["measured"] = {**clock.stamp("tools.bench.videos"), "code": code_version()}
    finish("bench_videos", {**figures, "memory": memory}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
