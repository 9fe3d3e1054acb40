"""Fault injection, the way storage engines test themselves: damage a real store every way a disk,
an interrupted copy or a crash can (every shard file cut short, bits flipped, pages zeroed, garbage,
deleted), then run every reader (info, verify, export, extract-frames resuming, fit, test) as a
real process on a fresh damaged copy. A case fails when a command is killed by a signal, prints a
traceback, or exits 0 claiming all is well when data is missing: any command on a store that
cannot be opened as written; ``verify`` whenever what a reader can read (every key and value,
through ``tsn_core.lmdbfile``) differs from the intact store.

    python -m tools.faults                   # a store made from ../shared/data, 400 cases
    python -m tools.faults --cases 2000 --seed 7

The last line counts runs, signals, tracebacks and silent passes; exit 1 if any.
tests/test_faults.py runs a fixed-seed sample of this in the suite.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tsn_core.errors import Damaged
from tsn_core.lmdbfile import LMDBFile

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TSN_TEST_DATA") or REPO.parent / "shared" / "data")
PAGE = 4096
COMMAND_TIMEOUT = 300  # s; bounds a hung command (reported as one)


@dataclass(frozen=True)
class Fault:
    """One way to damage one file of a store: ``kind`` truncate (to ``offset`` bytes), flip (the
    bits ``mask`` of the bytes at ``offsets``), zero (``length`` bytes at ``offset``: a page),
    garbage (the whole file, same size), delete."""

    file: str  # relative to the store
    kind: str
    offset: int = 0
    length: int = 0
    offsets: tuple[int, ...] = ()
    masks: tuple[int, ...] = ()

    def __str__(self) -> str:
        what = {"truncate": f"cut to {self.offset} bytes", "zero": f"{self.length} bytes zeroed at {self.offset}",
                "flip": f"bits flipped at {', '.join(map(str, self.offsets))}", "garbage": "garbage",
                "delete": "deleted"}[self.kind]
        return f"{self.file}: {what}"

    def apply(self, root: Path) -> None:
        path = root / self.file
        if self.kind == "delete":
            path.unlink()
            return
        data = bytearray(path.read_bytes())
        if self.kind == "truncate":
            data = data[:self.offset]
        elif self.kind == "zero":
            data[self.offset:self.offset + self.length] = bytes(len(data[self.offset:self.offset + self.length]))
        elif self.kind == "flip":
            for at, mask in zip(self.offsets, self.masks):
                data[at] ^= mask
        elif self.kind == "garbage":
            data = bytearray(random.Random(len(data)).randbytes(len(data)))
        path.write_bytes(bytes(data))


def faults(store: Path, rng: random.Random, per_kind: int) -> list[Fault]:
    """``per_kind`` faults of each kind for every file of every shard of ``store`` (the deletion and
    the garbage once each), in a fixed order for a given ``rng``."""
    out: list[Fault] = []
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        rel, size = str(path.relative_to(store)), path.stat().st_size
        cuts = sorted({0, min(PAGE, size - 1), size // 2, max(size - 1, 0),
                       *(rng.randrange(max(size, 1)) for _ in range(per_kind))})
        out += [Fault(rel, "truncate", offset=c) for c in cuts[:per_kind + 2] if c < size]
        for _ in range(per_kind):
            n = rng.randint(1, 4)
            offsets = tuple(rng.randrange(size) for _ in range(n)) if size else ()
            out.append(Fault(rel, "flip", offsets=offsets, masks=tuple(1 << rng.randrange(8) for _ in offsets)))
        pages = max(1, size // PAGE)
        out += [Fault(rel, "zero", offset=rng.randrange(pages) * PAGE, length=PAGE) for _ in range(per_kind)]
        out += [Fault(rel, "garbage"), Fault(rel, "delete")]
    return out


def contents(store: Path) -> object:
    """Everything a reader can read of ``store`` (every database's keys and values), or the
    message of the damage that stops it being read: what a fault changed, if anything."""
    out = {}
    for shard in sorted(p for p in store.iterdir() if p.is_dir()):
        try:
            f = LMDBFile(str(shard / "data.mdb"), name=shard.name)
            out[shard.name] = {name: list(f.items(db)) for name, db in sorted(f.dbs.items())}
            f.close()
        except FileNotFoundError:
            out[shard.name] = "data.mdb is missing"
        except Damaged as exc:
            out[shard.name] = str(exc)
    return out


def opens(store: Path) -> bool:
    """Whether every shard of ``store`` opens (meta pages, the file long enough, the main
    database): if not, no command may succeed on it."""
    for shard in sorted(p for p in store.iterdir() if p.is_dir()):
        try:
            LMDBFile(str(shard / "data.mdb"), name=shard.name).close()
        except (FileNotFoundError, Damaged):
            return False
    return True


@dataclass
class Setup:
    """A small real store and what the commands need to read it."""

    store: Path
    videos: Path
    train_list: Path
    checkpoint: Optional[Path]
    extract: tuple[str, ...]  # the extraction options the store was made with


def make_setup(root: Path, with_training: bool = True) -> Setup:
    """Two real clips as RGB frames and flow at 64x48 (6 frames), a list, and a one-step
    checkpoint trained on them."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    for name in ("carphone.mp4", "tree.avi"):
        (videos / name).symlink_to(DATA / "videos" / name)
    store = root / "store"
    extract = ("--size", "64x48", "--max-frames", "6", "--quiet")
    for step in ("extract-frames", "extract-flow"):
        _run([sys.executable, "-m", "tsn_prep.cli", step, str(videos), str(store), *extract], root, check=True)
    train_list = root / "train.txt"
    train_list.write_text("carphone 0\ntree 1\n")
    checkpoint = None
    if with_training:
        run = root / "run"
        _run([sys.executable, "-m", "tsn_train.cli", *_fit(store, train_list, run)], root, check=True)
        checkpoint = run / "last.pt"
    return Setup(store, videos, train_list, checkpoint, extract)


def _fit(store: Path, train_list: Path, out: Path) -> list[str]:
    return ["fit", "--modality", "rgb", "--store", str(store), "--train-list", str(train_list),
            "--out", str(out), "--arch", "resnet18", "--epochs", "1", "--max-steps", "1",
            "--batch-size", "2", "--accumulate", "1", "--workers", "0", "--segments", "1",
            "--input-size", "32", "--device", "cpu", "--log-every", "0", "--no-partial-bn"]


def commands(setup: Setup, store: Path, scratch: Path) -> dict[str, list[str]]:
    """Every reader of ``store`` (a damaged copy), as a command line."""
    prep, train = [sys.executable, "-m", "tsn_prep.cli"], [sys.executable, "-m", "tsn_train.cli"]
    out = {
        "info": [*prep, "info", str(store)],
        "verify": [*prep, "verify", str(store), "--quiet"],
        "export": [*prep, "export", str(store), str(scratch / "export"), "--quiet"],
        "extract": [*prep, "extract-frames", str(setup.videos), str(store), *setup.extract],
        "fit": [*train, *_fit(store, setup.train_list, scratch / "run")],
    }
    if setup.checkpoint is not None:
        out["test"] = [*train, "test", "--checkpoint", str(setup.checkpoint), "--store", str(store),
                       "--list", str(setup.train_list), "--out", str(scratch / "scores.npz"),
                       "--segments", "1", "--crops", "1", "--workers", "0"]
    return out


@dataclass
class Result:
    fault: Fault
    command: str
    returncode: int
    stderr: str
    problems: list[str] = field(default_factory=list)


def _run(argv: list[str], cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="error:resource_tracker:UserWarning", OMP_NUM_THREADS="1")
    try:
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -999, "", f"hung: no exit within {COMMAND_TIMEOUT} s")
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr}")
    return r


def judge(command: str, returncode: int, stderr: str, changed: bool, opened: bool) -> list[str]:
    """What is wrong with how ``command`` ended on a damaged copy (see the module's docstring)."""
    problems = []
    if returncode < 0:
        problems.append("hung" if returncode == -999 else f"killed by signal {-returncode}")
    if returncode in (134, 135, 139):  # a shell's report of SIGABRT, SIGBUS, SIGSEGV
        problems.append(f"exit {returncode} (as if killed by a signal)")
    if "Traceback" in stderr:
        problems.append("printed a traceback")
    if "resource_tracker" in stderr:
        problems.append("a resource tracker warning")
    if returncode == 0 and not opened:
        problems.append("exit 0 on a store that cannot be opened")
    if returncode == 0 and command == "verify" and changed:
        problems.append("verify exit 0 although what the store holds has changed")
    return problems


def run_case(setup: Setup, fault: Fault, names: tuple[str, ...], reference: object,
             work: Path) -> list[Result]:
    """Damage a copy of the store with ``fault`` and run the commands ``names`` on it, each on
    a fresh damaged copy (a writer, or a reader's side effects, must not decide the next one)."""
    results = []
    changed = opened = None
    for name in names:
        case = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        store = case / "store"
        shutil.copytree(setup.store, store)
        fault.apply(store)
        if changed is None:
            changed, opened = contents(store) != reference, opens(store)
        r = _run(commands(setup, store, case)[name], case)
        problems = judge(name, r.returncode, r.stderr, changed, opened)
        if name == "extract" and not r.returncode and not opened and opens(store) \
                and "data.mdb is missing (lost or deleted)" in r.stderr:
            # a writer that says it makes a lost shard again (its videos extracted again: as the
            # docs tell a user to do), and did
            problems = [p for p in problems if not p.startswith("exit 0")]
        results.append(Result(fault, name, r.returncode, r.stderr, problems))
        shutil.rmtree(case, ignore_errors=True)
    return results


def campaign(setup: Setup, cases: list[Fault], names: tuple[str, ...], work: Path, jobs: int = 2,
             on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    """Every fault of ``cases`` with every command of ``names``, ``jobs`` cases at a time."""
    reference = contents(setup.store)
    results: list[Result] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for batch in pool.map(lambda f: run_case(setup, f, names, reference, work), cases):
            for r in batch:
                on_result(r)
            results += batch
    return results


def summary(results: list[Result]) -> str:
    signals = sum(any("signal" in p for p in r.problems) for r in results)
    tracebacks = sum("printed a traceback" in r.problems for r in results)
    silent = sum(any(p.startswith(("exit 0", "verify exit 0")) for p in r.problems) for r in results)
    bad = sum(bool(r.problems) for r in results)
    faults_run = len({r.fault for r in results})
    return (f"{faults_run} faults x commands = {len(results)} runs: {signals} killed by a signal, "
            f"{tracebacks} tracebacks, {silent} exit 0 on missing or changed data; {bad} runs with "
            f"a problem")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=400, help="faults to inject (sampled from all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", default="info,verify,export,extract,fit,test",
                        help="which readers to run on each damaged copy")
    parser.add_argument("--jobs", type=int, default=2, help="cases run side by side")
    args = parser.parse_args(argv)
    names = tuple(args.commands.split(","))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="tsn-faults-") as tmp:
        work = Path(tmp)
        print("making a small store from", DATA / "videos", flush=True)
        setup = make_setup(work / "setup", with_training="test" in names)
        every = faults(setup.store, rng, per_kind=max(3, args.cases // 20))
        cases = rng.sample(every, min(args.cases, len(every)))
        print(f"{len(cases)} faults (of {len(every)} made), commands: {', '.join(names)}", flush=True)

        def show(r: Result) -> None:
            if r.problems:
                print(f"PROBLEM {r.fault} | {r.command}: {'; '.join(r.problems)} | "
                      f"{r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else ''}", flush=True)

        results = campaign(setup, cases, names, work, args.jobs, show)
    print(summary(results))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
