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


def build(root: Path, videos: int, shards: int) -> float:
    """N videos' rgb (4 frames) and flow (3 pairs) entries through ShardWriter; seconds taken."""
    from tsn_core.meta import EntryMeta
    from tsn_prep.extract import ExtractParams
    from tsn_prep.store import ShardWriter, shard_of

    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    grey = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes()
    params = ExtractParams(modalities=("rgb", "flow"))
    writers = [ShardWriter(root, k, shards) for k in range(shards)]
    t0 = time.perf_counter()
    for i in range(videos):
        vid = f"label_{i % 700:03d}/{i:011d}_000014_000024"
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


def probe(code: Path, root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE, str(root)], env=env, cwd="/", check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_cli(code: Path, *args) -> float:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tsn_prep.cli", *map(str, args)], env=env, cwd="/",
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
    p.add_argument("--dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                   help="where the store is written (default /dev/shm: the writer's fsyncs cost nothing there)")
    p.add_argument("--quick", action="store_true", help="5000 videos, 2 repeats")
    from tools.bench.common import add_output_options
    add_output_options(p)
    args = p.parse_args(argv)
    if args.quick:
        args.videos, args.repeats = 5000, 2
    started, t0 = now(), time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale-", dir=args.dir))
    try:
        root = tmp / "store"
        build_s = build(root, args.videos, args.shards)
        store_bytes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        log(f"[build] {args.videos} videos in {build_s:.0f} s, {store_bytes / 1e6:.0f} MB")
        codes = {"before": args.before, "after": REPO}
        runs: dict[str, list[dict]] = {k: [] for k in codes}
        for rep in range(args.repeats):
            for k in rotated(list(codes), rep):
                runs[k].append(probe(codes[k], root))
                log(f"[probe] {k} {runs[k][-1]}")
        verify: dict[str, list[float]] = {"before": [], "after checksums-only": []}
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
    finish("bench_scale", {"section": "bench_scale", "template": "scale",
                           **stamp("tools.bench.scale", sys.argv[1:] if argv is None else argv, started, t0),
                           "machine": machine_info(), "cores": len(os.sched_getaffinity(0)), "videos": args.videos, "entries": entries,
                           "shards": args.shards, "repeats": args.repeats, "build_s": build_s,
                           "store_mb": store_bytes / 1e6, "images": args.videos * 10,
                           "before": code_version(args.before), "after": code_version(REPO),
                           "rows": rows, "runs": runs,
                           "verify": {k: {"median": median(v), "runs": v} for k, v in verify.items() if v}}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
