"""Whole-store scans from a cold page cache: ``tsn-prep verify`` and ``export`` of one checkout
against another's.

Every run is a fresh ``python -m tsn_prep.cli`` process of the checkout ``--before`` or ``--after``
(its tsn packages on ``PYTHONPATH``), started right after ``sync`` and dropping the page cache
(root). Runs interleaved, medians, with the disk's read requests and bytes (/proc/diskstats).

    git worktree add /tmp/before <commit>
    python -m tools.bench.scan --before /tmp/before --store STORE [--quick]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from tools.bench.common import (REPO, Clock, can_drop_caches, code_version, disk_reads, drop_caches, finish, log,
                                median, parse_args, read_ahead_kb)
from tools.bench.data import COPIES, DEFAULT_CACHE
from tsn_prep.store import Store

DEFAULT_STORE = DEFAULT_CACHE / f"copies-{COPIES}" / "store"  # the training benchmarks' data


def run_once(repo: Path, command: list[str], store: Path, scratch: Path) -> dict:
    shutil.rmtree(scratch, ignore_errors=True)
    drop_caches()
    d0, t0 = disk_reads(store), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tsn_prep.cli", *command], env=dict(os.environ, PYTHONPATH=str(repo)),
                       cwd=str(repo), capture_output=True, text=True)
    wall, d1 = time.perf_counter() - t0, disk_reads(store)
    if r.returncode not in (0, 3):  # verify's 3: extraction failures recorded, no damage
        raise RuntimeError(f"{' '.join(command)} with {repo} failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"wall": wall, "requests": d1[0] - d0[0], "mb": (d1[1] - d0[1]) / 1e6}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="the checkout to compare against")
    p.add_argument("--after", type=Path, default=REPO, help="default: this checkout")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"default: {DEFAULT_STORE}")
    p.add_argument("--repeats", type=int, default=3)
    args = parse_args(p, argv, repeats=1)
    why = can_drop_caches()
    if why:
        raise SystemExit(f"{why}: every run of this benchmark is cold")
    repeats = args.repeats
    scratch = Path(tempfile.mkdtemp(prefix="tsn-bench-scan-")) / "folders"
    commands = {"verify": ["verify", str(args.store), "--quiet"], "export": ["export", str(args.store), str(scratch), "--quiet"]}
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict = {(c, s): [] for c in commands for s in sides}
    clock = Clock(argv)
    for rep in range(repeats):
        for c, command in commands.items():
            for s in list(sides)[::1 if rep % 2 == 0 else -1]:
                runs[(c, s)].append(run_once(sides[s], command, args.store, scratch))
                log(f"[scan] {rep + 1}/{repeats} {c} {s}: {runs[(c, s)][-1]}")
    shutil.rmtree(scratch.parent, ignore_errors=True)
    med = {key: {k: median(r[k] for r in rs) for k in ("wall", "requests", "mb")} for key, rs in runs.items()}
    finish("bench_scan", {
        "section": "bench_scan", "template": "scan", **clock.stamp("tools.bench.scan"),
        "cores": len(os.sched_getaffinity(0)), "read_ahead": read_ahead_kb(args.store),
        "store_mb": sum(f.stat().st_size for f in args.store.rglob("*.mdb")) / 1e6, "store": str(args.store),
        "videos": len(list(Store(args.store).videos("rgb"))),
        "before": code_version(sides["before"]), "after": code_version(sides["after"]), "repeats": repeats,
        "rows": {c: {"before": med[(c, "before")], "after": med[(c, "after")],
                     "speedup": med[(c, "before")]["wall"] / med[(c, "after")]["wall"]} for c in commands}}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
