"""What every benchmark shares: paths, logging, statistics, timing with the machine's other load,
clips and frame pairs, end-point error, the page cache, disk and process counters, machine facts
and the JSON a benchmark leaves for ``tools.bench.render``."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("TSN_TEST_DATA") or REPO.parent / "shared" / "data")
VIDEOS = DATA / "videos"
GROVE = DATA / "flow_gt" / "middlebury_grove3"
BENCH_JSON = REPO / "docs" / "bench"
TICK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def rotated(items: list, k: int) -> list:
    """The k-th rotation: interleaved repeats that do not always run the same thing first."""
    k %= len(items)
    return items[k:] + items[:k]


# --------------------------------------------------------------------------- timing

def cpu_seconds() -> float:
    """CPU time of this process and of its children, finished or still running (from /proc)."""
    me, dead = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    parent, ticks = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        parent[int(stat.parent.name)] = int(fields[1])
        ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])
    mine, total, stack = {os.getpid()}, 0, [os.getpid()]
    while stack:
        pid = stack.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in mine:
                mine.add(child)
                stack.append(child)
                total += ticks[child]
    return me.ru_utime + me.ru_stime + dead.ru_utime + dead.ru_stime + total / TICK


def own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def busy_seconds() -> float:
    """CPU time spent by the whole machine, all processes (/proc/stat, minus idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


@dataclasses.dataclass
class Timing:
    wall: float   # s
    cpu: float    # CPU s of this process and its children
    other: float  # cores kept busy by OTHER processes meanwhile (noise indicator)


def timed(fn: Callable[[], T]) -> tuple[Timing, T]:
    c0, b0, t0 = cpu_seconds(), busy_seconds(), time.perf_counter()
    value = fn()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return Timing(wall, cpu, max(0.0, (busy_seconds() - b0 - cpu) / wall)), value


@dataclasses.dataclass
class RetryPolicy:
    """A run during which other processes kept more than ``max_other`` cores busy is run again, at
    most ``retries`` times; the last attempt counts whatever happened."""

    max_other: float = 0.3
    retries: int = 2
    disturbed: list[float] = dataclasses.field(default_factory=list)

    def run(self, label: str, fn: Callable[[], T], timing: Callable[[T], Timing] = lambda r: r) -> T:
        for attempt in range(self.retries + 1):
            result = fn()
            other = timing(result).other
            if other <= self.max_other or attempt == self.retries:
                return result
            self.disturbed.append(other)
            log(f"  ({label}: other processes used {other:.2f} cores meanwhile; running it again)")
        raise AssertionError("unreachable")

    def figures(self, kept: list[float]) -> dict:
        return {"max_other": self.max_other, "retries": self.retries, "disturbed": len(self.disturbed),
                "disturbed_worst": max(self.disturbed, default=0.0), "busiest": max(kept, default=0.0)}

    @classmethod
    def of(cls, args: argparse.Namespace) -> "RetryPolicy":
        return cls(args.max_other_load, args.retries)


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` processes spinning on a core each while measurements run (a busy machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- clips and flow

def find_clips(videos: Path) -> list[Path]:
    clips = sorted(p for p in Path(videos).iterdir() if p.suffix.lower() in (".mp4", ".avi"))
    if not clips:
        raise SystemExit(f"no .mp4/.avi clips in {videos}")
    return clips


def grey_pairs(clip: Path, size: tuple[int, int], max_frames: Optional[int]) -> list[tuple]:
    """Consecutive grey frame pairs exactly as the pipeline sees them: same decoder, same resize."""
    import cv2

    from tsn_prep.video import VideoReader

    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in VideoReader(clip, size, None, max_frames).frames()]
    return list(zip(greys, greys[1:]))


def cycled_pairs(videos: Path, size: tuple[int, int], n: int, max_frames: int, first: list = ()) -> tuple:
    """(prev, nxt) of ``n`` grey pairs: ``first``, then pair k of every clip in turn, k = 0, 1, ...
    (a clip's pairs cycled), each clip decoded to ``max_frames`` frames."""
    per_clip = [grey_pairs(c, size, max_frames) for c in find_clips(videos)]
    pairs, k = list(first), 0
    while len(pairs) < n:
        pairs += [c[k % len(c)] for c in per_clip][:n - len(pairs)]
        k += 1
    return np.stack([a for a, _ in pairs[:n]]), np.stack([b for _, b in pairs[:n]])


def epe(flow: np.ndarray, other: np.ndarray) -> float:
    """Mean end-point error (px) between two (..., 2) flows."""
    return float(np.linalg.norm(np.asarray(flow, np.float64) - other, axis=-1).mean())


def grove3(grove: Path = GROVE):
    """Middlebury Grove3: the two grey frames and the ground-truth flow."""
    import cv2

    grey = [cv2.imread(str(grove / f"frame{i}.png"), cv2.IMREAD_GRAYSCALE) for i in (10, 11)]
    return grey, cv2.readOpticalFlow(str(grove / "grove3.flo"))


# --------------------------------------------------------------------------- page cache, counters

def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (no root needed; clean, unmapped pages only)."""
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


def drop_caches() -> None:
    """Write back dirty pages, then drop the whole page cache, dentries and inodes (root)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def can_drop_caches() -> str:
    """"" when this process may drop the page cache, else why not."""
    try:
        drop_caches()
        return ""
    except OSError as exc:
        return f"cannot drop the page cache ({exc.strerror or exc}): cold passes skipped"


def resident_bytes(paths: list[Path]) -> Optional[int]:
    """Bytes of ``paths`` in the page cache, from util-linux ``fincore``; None without it."""
    if shutil.which("fincore") is None:
        return None
    total = 0
    for i in range(0, len(paths), 2000):  # stay far below the argument-list limit
        out = subprocess.run(["fincore", "-b", "-n", "-r", "-o", "RES", *map(str, paths[i:i + 2000])],
                             check=True, capture_output=True, text=True).stdout
        total += sum(int(v) for v in out.split())
    return total


def disk_reads(path: Path) -> tuple[int, int, int]:
    """Read requests completed, bytes read and ms spent reading so far by the block device holding
    ``path`` (/proc/diskstats; the whole device, other processes included)."""
    dev = os.stat(path).st_dev
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if (int(f[0]), int(f[1])) == (os.major(dev), os.minor(dev)):
            return int(f[3]), int(f[5]) * 512, int(f[6])
    return 0, 0, 0


def proc_io() -> dict[str, int]:
    """This process's /proc/self/io: ``read_bytes`` fetched from storage for it (mmap faults
    included), ``rchar`` bytes its read() calls returned, ``syscr`` read calls."""
    return {k: int(v) for k, v in (line.split(":") for line in Path("/proc/self/io").read_text().splitlines())}


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- machine, code, output

def code_version(repo: Path = REPO) -> str:
    """The commit of the checkout ``repo``, and whether its tsn packages differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "tsn_core", "tsn_prep", "tsn_train")
    return f"commit {head}" + (", with uncommitted changes in tsn_core/, tsn_prep/ or tsn_train/" if dirty
                               else ", tsn_prep/ and tsn_train/ as committed")


def machine_info(torch_too: bool = False) -> dict:
    """The machine table of the docs: CPU, cores, GPU, Python, OpenCV (and torch)."""
    import cv2

    from tsn_prep.extraction.backends import cuda_device_count

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    framework = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                      if "Parallel framework" in line), "?")
    gpu = f"cv2 sees {cuda_device_count()} CUDA devices"
    info = {"CPU": model, "cores (os.cpu_count)": os.cpu_count(),
            "cores usable (sched_getaffinity)": len(os.sched_getaffinity(0)), "GPU": f"none ({gpu})",
            "Python": platform.python_version(), "platform": platform.platform(),
            "cv2 version": cv2.__version__, "cv2.getNumThreads()": cv2.getNumThreads(),
            "cv2 parallel framework": framework}
    if torch_too:
        import torch
        b = torch.backends
        info["GPU"] = f"none (torch.cuda.is_available() = {torch.cuda.is_available()}, {gpu})"
        info.update({"torch": torch.__version__, "torch threads (intra-op)": torch.get_num_threads(),
                     "torch backends": f"MKL {b.mkl.is_available()}, oneDNN {b.mkldnn.is_available()}, "
                                       f"OpenMP {b.openmp.is_available()}"})
    return info


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is near it (../shared/...), else absolute."""
    path = Path(path).absolute()
    return os.path.relpath(path, REPO) if path.is_relative_to(REPO.parent) else str(path)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Clock:
    """A benchmark run's start (UTC time and ``perf_counter``) and its command line: the figures
    every section opens with, from ``stamp``."""

    def __init__(self, argv: Optional[list[str]]):
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.started, self.t0 = now(), time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.t0) / 60

    def stamp(self, module: str) -> dict:
        return {"date": f"{self.started:%Y-%m-%d}", "time": f"{self.started:%H:%M} UTC",
                "script": f"python -m {module}", "args": self.argv, "minutes": self.minutes()}


def parser(doc: str, videos: bool = False, retry: bool = False) -> argparse.ArgumentParser:
    """A benchmark's parser, described by its docstring's first paragraph, with the options
    several declare: ``--videos`` (the clips), and with ``retry`` ``RetryPolicy``'s."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if videos:
        p.add_argument("--videos", type=Path, default=VIDEOS, help=f"directory of the clips (default: {VIDEOS})")
    if retry:
        p.add_argument("--max-other-load", type=float, default=0.3,
                       help="run a measurement again when other processes kept more cores than this "
                            "busy meanwhile (default: 0.3)")
        p.add_argument("--retries", type=int, default=2,
                       help="at most this many re-runs of a disturbed measurement (default: 2)")
    return p


def parse_args(p: argparse.ArgumentParser, argv: Optional[list[str]], **quick) -> argparse.Namespace:
    """Parse with the output options (``--json``, ``--write-docs``: what ``finish`` reads), and
    ``--quick`` setting ``quick``'s values (a short run)."""
    if quick:
        p.add_argument("--quick", action="store_true",
                       help="a short run: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in quick.items()))
    p.add_argument("--json", type=Path, help="write the figures here (JSON)")
    p.add_argument("--write-docs", action="store_true",
                   help="write the figures into docs/bench/ and re-render the docs from them")
    args = p.parse_args(argv)
    if quick and args.quick:
        vars(args).update(quick)
    return args


def write_json(path: Path, figures: dict) -> None:
    """``figures`` as indented JSON at ``path``, whole or not at all (a temporary file renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    tmp.replace(path)


def finish(section: str, figures: dict, args: argparse.Namespace) -> None:
    """Write the figures (``--json``; ``--write-docs``: docs/bench/SECTION.json, then render the
    docs) and print the section they render to."""
    from tools.bench import render

    figures = json.loads(json.dumps(figures))  # what a reader of the JSON gets
    if args.json:
        write_json(args.json, figures)
    if args.write_docs:
        write_json(BENCH_JSON / f"{section}.json", figures)
        render.render_all()
    for r in render.renders(figures):
        print(render.section_text(figures, r["template"]))
