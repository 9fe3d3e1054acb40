#!/usr/bin/env python
"""Whole-store scans from a cold page cache: ``tsn-prep verify`` and ``tsn-prep export`` of one
checkout against another's (a benchmark, not a test).

Every run is a fresh ``python -m tsn_prep.cli`` process of the checkout named by ``--before`` or
``--after`` (their ``tsn_prep`` on ``PYTHONPATH``), started right after ``sync`` and dropping the
page cache (root). Runs are interleaved, medians reported, with the read requests and bytes the
disk served (``/proc/diskstats``). Made for the store's read-ahead during scans
(``Store.sequential``): before it, a scan faulted its shards in one 4 KiB page at a time.

    git worktree add /tmp/before <commit>
    python tools/bench_scan.py --before /tmp/before --store STORE
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path[:0] = [str(TOOLS)]  # sibling scripts; no tsn package is imported here
from bench_loader import COPIES, DEFAULT_CACHE, code_version, drop_caches  # noqa: E402

SECTION = "bench_scan"
DEFAULT_STORE = DEFAULT_CACHE / f"copies-{COPIES}" / "store"  # the training benchmarks' data


def disk(path: Path) -> tuple[int, int]:
    """Read requests completed and bytes read so far by the block device holding ``path``."""
    from bench_train import disk_reads  # imports torch: only once the runs are set up

    requests, read, _ = disk_reads(path)
    return requests, read


def run_once(repo: Path, command: list[str], store: Path, scratch: Path) -> dict:
    """One cold run of ``python -m tsn_prep.cli COMMAND`` with ``repo``'s tsn_prep."""
    shutil.rmtree(scratch, ignore_errors=True)
    drop_caches()
    env = dict(os.environ, PYTHONPATH=str(repo))
    d0, t0 = disk(store), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tsn_prep.cli", *command], env=env, cwd=str(repo),
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d1 = disk(store)
    if r.returncode not in (0, 3):  # verify's 3: extraction failures recorded, no damage
        raise RuntimeError(f"{' '.join(command)} with {repo} failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"wall": wall, "requests": d1[0] - d0[0], "bytes": d1[1] - d0[1]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="the checkout to compare against")
    p.add_argument("--after", type=Path, default=REPO, help="default: this checkout")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE,
                   help=f"the store to scan (default: {DEFAULT_STORE}, bench_train.py's data)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-docs", action="store_true", help="print only; do not write docs/performance.md")
    args = p.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tsn-bench-scan-")) / "folders"
    commands = {"verify": ["verify", str(args.store), "--quiet"],
                "export": ["export", str(args.store), str(scratch), "--quiet"]}
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs = {(c, s): [] for c in commands for s in sides}
    started, t0 = dt.datetime.now().astimezone(), time.perf_counter()
    for rep in range(args.repeats):
        for c, command in commands.items():
            order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
            for s in order:
                r = run_once(sides[s], command, args.store, scratch)
                runs[(c, s)].append(r)
                print(f"[scan] {rep + 1}/{args.repeats} {c:6s} {s:6s} {r['wall']:6.1f} s, "
                      f"{r['requests']} read requests, {r['bytes'] / 1e6:.0f} MB", flush=True)
    shutil.rmtree(scratch.parent, ignore_errors=True)
    minutes = (time.perf_counter() - t0) / 60
    store_mb = sum(f.stat().st_size for f in args.store.rglob("*.mdb")) / 1e6

    def med(c, s, k):
        return statistics.median(r[k] for r in runs[(c, s)])

    lines = [
        "# Whole-store scans from a cold page cache (verify, export)\n",
        f"Measured on {started:%Y-%m-%d} ({started:%H:%M %Z}) by `tools/bench_scan.py` ({minutes:.1f} min) "
        f"on this machine (2 cores, ext4 on a virtual disk whose `read_ahead_kb` is "
        f"{read_ahead_kb(args.store)}). To reproduce, from the repository root:\n",
        "```\ngit worktree add /tmp/before COMMIT   # the before commit named below\n"
        "python tools/bench_scan.py --before /tmp/before --store STORE\n```\n",
        f"Store: {store_mb:.0f} MB in one shard (`{args.store}`: the training benchmark's 200 videos, RGB "
        "and TV-L1 flow at 340x256). Every run is a fresh `python -m tsn_prep.cli` process started "
        "right after `sync` and `echo 3 > /proc/sys/vm/drop_caches`; before: "
        f"{code_version(sides['before'])}; after: {code_version(sides['after'])}. `export` writes every "
        f"image as a file (all modalities). Medians of {args.repeats} interleaved repeats; read "
        "requests and bytes from `/proc/diskstats` (the whole disk).\n",
        "| command | before | after | speed-up (time before / after) | read requests before / after | MB read before / after |",
        "|---|---|---|---|---|---|",
    ]
    for c in commands:
        b, a = med(c, "before", "wall"), med(c, "after", "wall")
        lines.append(f"| `tsn-prep {c}` | {b:.1f} s | {a:.1f} s | **{b / a:.2f}x** | "
                     f"{med(c, 'before', 'requests'):.0f} / {med(c, 'after', 'requests'):.0f} | "
                     f"{med(c, 'before', 'bytes') / 1e6:.0f} / {med(c, 'after', 'bytes') / 1e6:.0f} |")
    lines.append(
        "\nThe store's readers map each shard with read-ahead off, right for training's scattered "
        "reads (a few images per video; with read-ahead on, every page fault would fetch "
        "`read_ahead_kb` around it). A scan reads in file order instead, and with read-ahead off "
        "each 4 KiB page was one synchronous disk read. `Store.sequential()` (used by `verify` and "
        "`export`) advises the kernel that the maps are read sequentially for the scan's duration, "
        "so it reads ahead in large requests, and gives the random advice back afterwards.\n")
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_docs:
        from docs_section import write_section
        write_section(REPO / "docs" / "performance.md", SECTION, text)
    return 0


def read_ahead_kb(path: Path) -> str:
    dev = os.stat(path).st_dev
    for cand in (Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/queue/read_ahead_kb"),
                 Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/../queue/read_ahead_kb")):
        if cand.exists():
            return cand.read_text().strip() + " KiB"
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
