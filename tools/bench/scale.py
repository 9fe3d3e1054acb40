"""Dataset scale: a store of N videos (rgb + flow entries, tiny JPEGs, metadata exactly as
extraction writes it) written through the real ``ShardWriter``, then, in fresh processes of the
code before and after (side by side, interleaved): opening the index (time, and resident memory
over the same process before it), list validation of all N videos, ``info``, and ``verify``.

    git worktree add /tmp/before COMMIT
    python -m tools.bench.scale --before /tmp/before --videos 100000 --write-docs
    python -m tools.bench.scale --before /tmp/before --quick     # 5000 videos

Any N: a Kinetics-700-sized store (2M entries) is ``--videos 1000000`` on a disk with room.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from tools.bench.common import REPO, code_version, finish, log, machine_info, median, now, rotated, stamp

PROBE = r"""
import json, resource, sys, time
from pathlib import Path
def rss():  # private resident memory: the store's mapped file pages are shared page cache
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * 4096
from tsn_prep.store import Store
from tsn_prep.report import store_info
from tsn_core.lists import Record
from tsn_train.lists import validate
root = Path(sys.argv[1])
s = Store(root)
base = rss(); t = time.perf_counter()
index = s.index
n = len(index)
open_s, open_bytes = time.perf_counter() - t, rss() - base
ids = sorted({vid for vid, mod in index if mod == "rgb"})
records = [Record(v, 0) for v in ids]
t = time.perf_counter(); validate(records, s, "rgb", 1); validate_s = time.perf_counter() - t
s.close()
t = time.perf_counter(); info = store_info(Store(root)); info_s = time.perf_counter() - t
print(json.dumps({"entries": n, "open_s": open_s, "open_bytes": open_bytes, "validate_s": validate_s,
                  "videos": len(records), "info_s": info_s, "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


LOADER_PROBE = r"""
import json, os, resource, sys, time
T0 = time.perf_counter()
from pathlib import Path
mode, root, lst, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
workers, batch, items = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
import torch
torch.set_num_threads(1)
from tsn_train import distributed, fit, protocol
from tsn_train.config import resolve
import_s = time.perf_counter() - T0
STORE = os.path.realpath(root)
FIELDS = {"Rss:": "rss", "Pss:": "pss", "Private_Clean:": "uss", "Private_Dirty:": "uss"}

def memory(pid):
    # RSS, PSS and USS (private: pages no other process maps) of a process, less the pages of the
    # store's files it maps (page cache, shared by every reader; counted apart as store_rss)
    m = {"rss": 0, "pss": 0, "uss": 0, "store_rss": 0}
    skip = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            key, _, rest = line.partition(" ")
            if not key.endswith(":"):  # a mapping's header: address range, ..., path
                parts = line.split()
                skip = len(parts) > 5 and parts[5].startswith(STORE)
            elif key in FIELDS:
                kb = int(rest.split()[0]) * 1024
                if not skip:
                    m[FIELDS[key]] += kb
                elif key == "Rss:":
                    m["store_rss"] += kb
    return m

timings = {}
def timed(module, name, label):
    fn = getattr(module, name)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - t
    setattr(module, name, wrapper)

VALIDATE = "validated" if hasattr(fit, "validated") else "validate"  # the code before: validate
cfg = resolve(dict(modality="rgb", store=str(root), train_list=str(lst), out=str(out / "run"),
                   arch="resnet18", input_size=8, batch_size=batch, accumulate=1, workers=workers,
                   epochs=1, max_steps=1, device="cpu", amp="off", log_every=1))
result = {"mode": mode, "import_s": import_s, "workers": workers, "batch": batch}
if mode == "fit":
    timed(fit, "store_known", "open_s"); timed(fit, "read_list", "read_s")
    timed(fit, VALIDATE, "validate_s"); timed(fit, "load_data", "load_data_s")
    first = {}
    step = fit.RunLog.step
    def first_step(self, record):
        if not first:
            first.update(first_step_s=time.perf_counter() - t, step_data_s=record["data_seconds"],
                         step_compute_s=record["compute_seconds"])
        step(self, record)
    fit.RunLog.step = first_step
    t = time.perf_counter()
    fit.fit(cfg)
    result.update(timings, **first, fit_s=time.perf_counter() - t)
elif mode == "test":
    timed(protocol, "store_known", "open_s"); timed(protocol, "read_list", "read_s")
    timed(protocol, VALIDATE, "validate_s")
    class Stop(Exception):
        pass
    scores = protocol.video_scores
    def first_video(*a, **k):
        scores(*a, **k)
        timings["first_video_s"] = time.perf_counter() - t
        raise Stop
    protocol.video_scores = first_video
    t = time.perf_counter()
    try:
        protocol.run_test(out / "run" / "last.pt", root, lst, workers=workers, device="cpu",
                          amp="off", progress=False)
    except Stop:
        pass
    result.update(timings)
else:  # workers: the training loader as fit makes it, for up to `items` items of epoch 0
    data = fit.load_data(cfg, distributed.setup("cpu"))
    loader = data.train_loader
    loader.sampler.set_epoch(0)
    loader.dataset.set_epoch(0)
    batches = min(len(loader), -(-items // batch)) if items else len(loader)
    marks = sorted({1, batches} | {max(1, batches * k // 8) for k in range(1, 8)})
    it = iter(loader)
    samples, t = [], time.perf_counter()
    for b in range(1, batches + 1):
        next(it)
        if b in marks:
            pids = [w.pid for w in it._workers]
            samples.append({"batches": b, "items": min(b * batch, len(loader.sampler)), "seconds": time.perf_counter() - t,
                            "workers": [memory(pid) for pid in pids], "parent": memory(os.getpid())})
    videos = getattr(loader.dataset, "videos", None)  # the arrays of the code after
    result.update(epoch_items=len(loader.sampler), epoch_batches=len(loader), batches=batches,
                  dataset_bytes=None if videos is None else videos.nbytes, videos=len(loader.dataset),
                  samples=samples, seconds=time.perf_counter() - t)
result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(result))
"""


def video_id(i: int) -> str:
    return f"label_{i % 700:03d}/{i:011d}_000014_000024"


def build(root: Path, videos: int, shards: int) -> float:
    """N videos' rgb (4 frames) and flow (3 pairs) entries through ShardWriter; seconds taken."""
    from tsn_core.meta import EntryMeta
    from tsn_prep.extraction.params import ExtractParams
    from tsn_prep.store import ShardWriter, shard_of

    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    grey = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes()
    params = ExtractParams(modalities=("rgb", "flow"))
    writers = [ShardWriter(root, k, shards) for k in range(shards)]
    t0 = time.perf_counter()
    for i in range(videos):
        vid = video_id(i)
        common = EntryMeta(source=f"/data/kinetics700/train/{vid}.mp4", num_frames=4, fps=29.97,
                           source_size=(640, 360), declared_frames=4, decoder="opencv", stored_size=(8, 8))
        w = writers[shard_of(vid, shards)]
        for m, images in (("rgb", {"img": [jpeg] * 4}), ("flow", {"flow_x": [grey] * 3, "flow_y": [grey] * 3})):
            w.put_video(vid, m, images, EntryMeta(**{**common.to_dict(), "modality": m,
                                                     "parameters": params.parameters(m, "opencv")}))
        if i and i % 20000 == 0:
            log(f"[build] {i} videos, {time.perf_counter() - t0:.0f} s")
    for w in writers:
        w.close()
    return time.perf_counter() - t0


def env_of(code: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")


def probe(code: Path, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(root)], env=env_of(code), cwd="/", check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loader_probe(code: Path, mode: str, root: Path, lst: Path, out: Path, workers: int, batch: int,
                 items: int = 0) -> dict:
    """``fit`` to its first step, ``test`` to its first video, or the training loader's workers'
    memory over ``items`` items (0: the whole epoch), in a fresh process of ``code``."""
    r = subprocess.run([sys.executable, "-c", LOADER_PROBE, mode, *map(str, (root, lst, out, workers, batch, items))],
                       env=env_of(code), cwd="/", capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{mode} probe of {code}: exit {r.returncode}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_list(path: Path, videos: int) -> None:
    """The first ``videos`` videos of the store, labelled as a 700-class list."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(videos):
            f.write(f"{video_id(i)} {i % 700}\n")


def worker_figures(run: dict) -> dict:
    """Per-worker memory at the first sample and the last, and the growth in between."""
    first, warm, last = run["samples"][0], run["samples"][min(1, len(run["samples"]) - 1)], run["samples"][-1]
    growth = [b["uss"] - a["uss"] for a, b in zip(first["workers"], last["workers"])]
    # from the second mark (an eighth of the items in) on: past the warm-up of a worker's
    # buffers, which is the same whatever the list holds
    late = [b["uss"] - a["uss"] for a, b in zip(warm["workers"], last["workers"])]
    items = last["items"] - first["items"]
    return {"uss_first": [w["uss"] for w in first["workers"]], "uss_last": [w["uss"] for w in last["workers"]],
            "pss_last": [w["pss"] for w in last["workers"]], "rss_last": [w["rss"] for w in last["workers"]],
            "store_rss_last": [w["store_rss"] for w in last["workers"]],
            "growth": growth, "growth_max": max(growth), "items": last["items"],
            "late_growth": late, "late_growth_max": max(late), "late_items": last["items"] - warm["items"],
            "epoch_items": run["epoch_items"], "fraction": last["items"] / run["epoch_items"],
            # bytes a worker's private memory grew per item it served past the warm-up (items are
            # dealt round-robin)
            "late_growth_per_item": max(late) / max(1, (last["items"] - warm["items"]) / len(late)),
            "items_per_s": items / max(1e-9, last["seconds"] - first["seconds"]),
            "parent_uss_last": last["parent"]["uss"],
            "dataset_bytes": run["dataset_bytes"], "videos": run["videos"]}


def timed_cli(code: Path, *args) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tsn_prep.cli", *map(str, args)], env=env_of(code), cwd="/",
                       capture_output=True, text=True)
    if r.returncode not in (0,):
        raise RuntimeError(f"{args}: exit {r.returncode}: {r.stderr[-500:]}")
    return time.perf_counter() - t


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the code to compare with")
    p.add_argument("--videos", type=int, default=100_000, help="videos in the store (2 entries each)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--verify-workers", type=int, nargs="*", default=[1, 2],
                   help="worker counts of the after code's verify (none: skip verify)")
    p.add_argument("--before-max-videos", type=int, default=200_000,
                   help="run the before code only on stores up to this size (its index costs about 4 KB "
                        "an entry in every process and 15 KB at the peak: 30 GB at 1M videos)")
    p.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                   help="another checkout for the fit/test/worker rows, e.g. 'compact index only=/tmp/head'")
    p.add_argument("--list-videos", type=int, default=650_000,
                   help="videos in the fit/test list (at most --videos): Kinetics-700 has 650k")
    p.add_argument("--loader-workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--worker-items", type=int, default=0,
                   help="items the workers' memory is followed over (0: the whole epoch)")
    p.add_argument("--loader-repeats", type=int, default=None, help="fit/test start-ups per version "
                   "(default --repeats)")
    p.add_argument("--section", default="bench_scale", help="the docs section (and docs/bench JSON) written")
    p.add_argument("--dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                   help="where the store is written (default /dev/shm: the writer's fsyncs cost nothing there)")
    p.add_argument("--quick", action="store_true", help="5000 videos, 2 repeats")
    from tools.bench.common import add_output_options
    add_output_options(p)
    args = p.parse_args(argv)
    if args.quick:
        args.videos, args.repeats = 5000, 2
    list_videos = min(args.list_videos, args.videos)
    loader_repeats = args.loader_repeats or args.repeats
    with_before = args.videos <= args.before_max_videos
    started, t0 = now(), time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale-", dir=args.dir))
    try:
        root = tmp / "store"
        build_s = build(root, args.videos, args.shards)
        store_bytes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        log(f"[build] {args.videos} videos in {build_s:.0f} s, {store_bytes / 1e6:.0f} MB")
        codes = {"before": args.before, "after": REPO} if with_before else {"after": REPO}
        runs: dict[str, list[dict]] = {k: [] for k in codes}
        for rep in range(args.repeats):
            for k in rotated(list(codes), rep):
                runs[k].append(probe(codes[k], root))
                log(f"[probe] {k} {runs[k][-1]}")

        # fit and test start-up on a list, and the loader workers' memory over an epoch
        loader_codes = dict(codes)
        for spec in args.also:
            label, _, path = spec.partition("=")
            loader_codes = {**{k: v for k, v in loader_codes.items() if k != "after"}, label: Path(path),
                            "after": REPO}
        lst = tmp / "list.txt"
        write_list(lst, list_videos)
        starts: dict[str, dict[str, list[dict]]] = {k: {"fit": [], "test": []} for k in loader_codes}
        for rep in range(loader_repeats):
            for n, k in enumerate(rotated(list(loader_codes), rep)):
                out = tmp / f"run-{rep}-{n}"
                for mode in ("fit", "test"):
                    starts[k][mode].append(loader_probe(loader_codes[k], mode, root, lst, out,
                                                        args.loader_workers, args.batch))
                    log(f"[{mode}] {k} {starts[k][mode][-1]}")
                shutil.rmtree(out, ignore_errors=True)
        workers: dict[str, dict] = {}
        for k in loader_codes:
            run = loader_probe(loader_codes[k], "workers", root, lst, tmp / "run-w", args.loader_workers,
                               args.batch, args.worker_items)
            workers[k] = {**worker_figures(run), "run": run}
            log(f"[workers] {k} {json.dumps({f: v for f, v in workers[k].items() if f != 'run'})}")

        verify: dict[str, list[float]] = {"before": []} if with_before else {}
        verify["after checksums-only"] = []
        verify.update({f"after --workers {w}": [] for w in args.verify_workers})
        if args.verify_workers:
            for rep in range(max(1, args.repeats - 1)):
                for label in rotated(list(verify), rep):
                    if label == "before":
                        t = timed_cli(args.before, "verify", root, "--quiet")
                    elif label == "after checksums-only":
                        t = timed_cli(REPO, "verify", root, "--quiet", "--checksums-only", "--workers",
                                      max(args.verify_workers))
                    else:
                        t = timed_cli(REPO, "verify", root, "--quiet", "--workers", label.split()[-1])
                    verify[label].append(t)
                    log(f"[verify] {label}: {t:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    entries = runs["after"][0]["entries"]
    fields = ("open_s", "open_bytes", "validate_s", "info_s", "peak_bytes")
    rows = {k: {f: median(r[f] for r in v) for f in fields} for k, v in runs.items()}
    for r in rows.values():
        r["bytes_per_entry"] = r["open_bytes"] / entries
    start_rows = {}
    for k, by_mode in starts.items():
        fit_runs, test_runs = by_mode["fit"], by_mode["test"]
        start_rows[k] = {
            "import_s": median(r["import_s"] for r in fit_runs + test_runs),
            "fit_open_s": median(r["open_s"] for r in fit_runs),
            "fit_read_s": median(r["read_s"] for r in fit_runs),
            "fit_validate_s": median(r["validate_s"] for r in fit_runs),
            "fit_list_s": median(r["open_s"] + r["read_s"] + r["validate_s"] for r in fit_runs),
            "fit_load_data_s": median(r["load_data_s"] for r in fit_runs),
            "fit_first_step_s": median(r["first_step_s"] for r in fit_runs),
            "fit_first_step_runs": [r["first_step_s"] for r in fit_runs],
            "fit_step_data_s": median(r["step_data_s"] for r in fit_runs),
            "fit_peak_bytes": median(r["peak_bytes"] for r in fit_runs),
            "test_list_s": median(r["open_s"] + r["read_s"] + r["validate_s"] for r in test_runs),
            "test_first_video_s": median(r["first_video_s"] for r in test_runs),
            "test_first_video_runs": [r["first_video_s"] for r in test_runs],
            "test_peak_bytes": median(r["peak_bytes"] for r in test_runs)}
    finish(args.section, {"section": args.section, "template": "scale",
                          **stamp("tools.bench.scale", sys.argv[1:] if argv is None else argv, started, t0),
                          "machine": machine_info(), "cores": len(os.sched_getaffinity(0)), "videos": args.videos,
                          "entries": entries, "shards": args.shards, "repeats": args.repeats, "build_s": build_s,
                          "store_mb": store_bytes / 1e6, "images": args.videos * 10,
                          "before": code_version(args.before), "after": code_version(REPO),
                          "with_before": with_before, "before_max_videos": args.before_max_videos,
                          "rows": rows, "runs": runs,
                          "verify": {k: {"median": median(v), "runs": v} for k, v in verify.items() if v},
                          "loader": {"versions": {k: code_version(v) for k, v in loader_codes.items()},
                                     "list_videos": list_videos, "workers": args.loader_workers,
                                     "batch": args.batch, "repeats": loader_repeats,
                                     "worker_items": args.worker_items,
                                     "start": start_rows, "start_runs": starts, "memory": workers}}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
