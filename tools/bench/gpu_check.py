"""The committed GPU check (issue 27): everything measured on a lent GPU in one call of at most 8
minutes, as one JSON of figures (``gpu_check-YYYY-MM-DD.json``) plus the flows to compare against
OpenCV at home. docs/performance.md, "GPU check", says how to run it and what each figure is.

    python -m tools.bench.gpu_check --prepare            # here: .gpu_check/ (clips, Grove3, refs, wheels)
    bash tools/gpu_check.sh                              # there: the check, figures into $OUT
    python -m tools.bench.gpu_check --device cpu --tiny  # anywhere: every part, tiny sizes, on the CPU

Parts (``PARTS``): env, flow (the solver; gpu_check_flow.py), e2e (``extract-flow --gpu``), frames,
trainstore, fit and test (gpu_check_train.py). Each runs in processes of its own, killed whole when
its budget is spent: what is left before the deadline less the later parts' plan. A part that fails
or is stopped is recorded with what it measured until then, and the JSON is rewritten after every
result, so a killed call still returns figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tools.bench.common import REPO, code_version, find_clips, log, now, write_json
from tools.bench.gpu_check_prepare import TINY_TVL1

DIR = REPO / ".gpu_check"
REQUIRED = ("device", "date", "solver_pairs_per_s", "end_to_end_pairs_per_s", "gpu_busy_fraction",
            "mean_epe_vs_opencv_px", "fit_images_per_s", "fit_data_fraction")
STREAMS, DECODES = ("rgb", "flow"), ("loader", "device")  # fit --decode-on: loader = CPU workers
# name, planned seconds on a GPU, in --tiny on 2 CPU cores (ceilings: parts end when done)
PARTS = (("env", 20, 40), ("flow", 165, 90), ("e2e", 80, 60), ("frames", 25, 40),
         ("trainstore", 20, 40), ("fit", 100, 150), ("test", 35, 80))
SELF_TEST = {"sleep": (5, 5)}  # a part that outlives any budget: tests the stopping


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one mode of the check: the GPU's, or ``tiny`` (seconds on a CPU)."""

    size: tuple[int, int] = (340, 256)
    solver_pairs: int = 256               # pairs per timed pass (divisible by every batch)
    batches: tuple[int, ...] = (128, 64, 256)  # in this order: the first is measured whatever the time
    accuracy_batches: tuple[int, int] = (64, 128)
    profile_batch: int = 128
    min_passes: int = 2
    max_passes: int = 5
    min_seconds: float = 2.0
    variant_reserve_s: float = 25.0       # kept for each later variant while the first runs
    copies: int = 24                      # e2e: 24 x 5 clips = 120 videos
    e2e_frames: int = 80                  # frames per clip: 79 pairs, 9,480 in all
    e2e_workers: int = 8
    train_frames: int = 6                 # per training video: 6 frames, 5 flows (one snippet)
    fit_steps: int = 50                   # SGD steps (--max-steps)
    fit_batch: int = 32
    fit_accumulate: int = 4
    fit_workers: int = 16
    fit_arch: str = "bn_inception"
    fit_input_size: Optional[int] = None
    fit_log_every: int = 10
    fit_warmup_batches: int = 20
    num_classes: int = 101
    test_videos: int = 60
    test_segments: int = 25               # the paper's test protocol: 25 snippets x 10 crops
    test_crops: int = 10
    test_workers: int = 8                 # a 25 x 10 flow video is 125 MB of shared memory
    predict_clips: Optional[tuple[str, ...]] = None   # None: every clip
    amp: str = "bf16"
    tvl1: tuple = ()                      # TV-L1 parameters other than OpenCV's defaults


TINY = Settings(size=(64, 48), solver_pairs=8, batches=(4, 8), accuracy_batches=(4, 8), profile_batch=4,
                min_passes=1, max_passes=2, min_seconds=0.0, variant_reserve_s=2.0, copies=2, e2e_frames=6,
                e2e_workers=1, fit_steps=2, fit_batch=2, fit_accumulate=1, fit_workers=1, fit_arch="resnet18",
                fit_input_size=32, fit_log_every=1, fit_warmup_batches=0, test_videos=2, test_segments=5,
                test_crops=1, test_workers=1, predict_clips=("carphone.mp4",), tvl1=tuple(TINY_TVL1.items()),
                amp="off")  # bf16 autocast on a CPU without bf16 units: 7x slower here


class Budget:
    """Seconds for each of several steps before ``deadline`` (time.monotonic): step i gets what
    is left less the planned seconds of the steps after it."""

    def __init__(self, deadline: float, planned: list[float]):
        self.deadline, self.planned = deadline, list(planned)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, i: int) -> float:
        return self.left() - sum(self.planned[i + 1:])


# --------------------------------------------------------------------------- processes

@dataclasses.dataclass
class ChildResult:
    status: str            # ok, failed (non-zero exit), stopped (its budget ran out)
    seconds: float = 0.0
    returncode: Optional[int] = None
    tail: list[str] = dataclasses.field(default_factory=list)


PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar's update: not echoed
ACTIVE: set[int] = set()           # process groups of running children


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _end_children(signum, frame) -> None:
    """SIGTERM / SIGHUP of the check: its children's groups go first."""
    for pid in list(ACTIVE):
        _kill_group(pid)
    raise SystemExit(128 + signum)


def run_child(cmd: list[str], timeout: float, env: dict, poll: Callable[[], None] = lambda: None) -> ChildResult:
    """``cmd`` in a process group of its own, its output echoed (indented) and its last lines
    kept; after ``timeout`` seconds the whole group is killed. ``poll`` runs every second."""
    t0 = time.monotonic()
    # a process group of its own, to kill with its workers, but the caller's session: whoever
    # ends the session (the device tool, at the end of its call) ends these too
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **group)
    ACTIVE.add(proc.pid)
    tail: list[str] = []

    def reader():
        for raw in proc.stdout:
            for line in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
                if line.strip() and not PROGRESS.search(line):
                    print(f"  {line}", flush=True)
                    tail.append(line)
                    del tail[:-40]
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    stopped = False
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout:
            stopped = True
            break
        poll()
        try:
            proc.wait(timeout=min(1.0, max(0.05, timeout - (time.monotonic() - t0))))
        except subprocess.TimeoutExpired:
            pass
    _kill_group(proc.pid)  # when stopped, and grandchildren left behind (loader workers of a crashed run)
    proc.wait()
    ACTIVE.discard(proc.pid)
    thread.join(timeout=5)
    poll()
    status = "stopped" if stopped else ("ok" if proc.returncode == 0 else "failed")
    return ChildResult(status, time.monotonic() - t0, proc.returncode, tail)


def worst(statuses) -> str:
    """A part's status from its runs': stopped if one was, else failed if one did, else ok."""
    statuses = list(statuses)
    return next((s for s in ("stopped", "failed") if s in statuses), "ok")


def read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in (Path(path).read_text().splitlines() if Path(path).exists() else []):
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a kill
            pass
    return out


# --------------------------------------------------------------------------- GPU utilisation

def nvml_reader(index: int = 0) -> tuple[Optional[Callable[[], Optional[float]]], str]:
    """A function returning the GPU's utilisation now (0..1), and what it reads: NVML's
    utilization.gpu, the share of the last sample period (1/6 s to 1 s) in which at least one
    kernel was running. Through pynvml, else nvidia-smi; (None, why) without either."""
    try:
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return (lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100), "pynvml utilization.gpu"
    except Exception as exc:  # noqa: BLE001 - no pynvml, no driver: try nvidia-smi
        why = f"pynvml: {type(exc).__name__}: {exc}"
    if not shutil.which("nvidia-smi"):
        return None, f"no GPU utilisation source ({why}; no nvidia-smi)"

    def read() -> Optional[float]:
        out = subprocess.run(["nvidia-smi", "-i", str(index), "--query-gpu=utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True)
        try:
            return float(out.stdout.strip().splitlines()[0]) / 100
        except (ValueError, IndexError):
            return None
    return read, "nvidia-smi utilization.gpu"


class Sampler:
    """Samples ``read()`` every ``interval`` seconds in a thread: (time.time(), value) pairs."""

    def __init__(self, read: Optional[Callable[[], Optional[float]]], interval: float = 0.2):
        self.read, self.interval = read, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                v = self.read()
            except Exception:  # noqa: BLE001 - a failed reading is a missing sample
                v = None
            if v is not None:
                self.samples.append((time.time(), v))
            self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        if self.read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def fraction(self, t0: Optional[float] = None, t1: Optional[float] = None) -> Optional[float]:
        """Mean utilisation of the samples taken in [t0, t1] (time.time()); None without any."""
        vals = [v for t, v in self.samples if (t0 is None or t >= t0) and (t1 is None or t <= t1)]
        return float(np.mean(vals)) if vals else None


def device_name(device: str) -> str:
    """What the check runs on, without importing torch (the env part's reading replaces it)."""
    if not device.startswith("cuda"):
        return f"cpu ({platform.machine()}, {len(os.sched_getaffinity(0))} cores)"
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip().splitlines()
        if out:
            return out[int(device.split(":")[1]) if ":" in device else 0].strip()
    return device


# --------------------------------------------------------------------------- the check

class Check:
    """One run of the check: settings, folders, the figures (``self.figures``, the JSON) and
    the parts (``part_NAME``: each returns how its processes ended)."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.tiny, self.device = args, args.tiny, args.device
        self.s = TINY if args.tiny else Settings()
        self.cuda = self.device.startswith("cuda")
        self.dir, self.out, self.work = (Path(p).resolve() for p in (args.dir, args.out, args.work))
        self.started, self.t0 = now(), time.monotonic()
        self.json_path = self.out / f"gpu_check-{self.started:%Y-%m-%d}.json"
        self.read_util, self.util_source = nvml_reader() if self.cuda else (None, "none: the check ran on the CPU")
        # the children: no progress bars; on the CPU no compiling
        self.env = {"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "TQDM_MININTERVAL": "30",
                    **({} if self.cuda else {"TSN_TORCH_COMPILE": "0"})}
        try:
            prepared = json.loads((self.dir / "prepare.json").read_text())
            prepared = {k: prepared.get(k) for k in ("date", "code", "bytes")}
        except (OSError, ValueError):
            prepared = None
        self.figures: dict = {
            "schema": 1, "device": device_name(self.device), "date": f"{self.started:%Y-%m-%d}",
            "time": f"{self.started:%H:%M} UTC", "mode": "tiny" if self.tiny else "full", "torch_device": self.device,
            "command": ["python", "-m", "tools.bench.gpu_check", *sys.argv[1:]], "code": code_version(),
            "prepared": prepared, "settings": dataclasses.asdict(self.s),
            "deadline_s": args.deadline, "seconds": None, "parts": {},
            "solver_pairs_per_s": None, "solver_best_batch": None, "bandwidth_bound_fraction": None,
            "end_to_end_pairs_per_s": None, "gpu_busy_fraction": None, "gpu_busy_source": self.util_source,
            "mean_epe_vs_opencv_px": None, "bit_identical_across_batches": None, "grove3_epe_px": None,
            "fit_images_per_s": {m: {d: None for d in DECODES} for m in STREAMS},
            "fit_data_fraction": {m: {d: None for d in DECODES} for m in STREAMS},
            "test_videos_per_s": {m: None for m in STREAMS}, "predict_equals_test": None,
        }

    def write(self) -> None:
        self.figures["seconds"] = time.monotonic() - self.t0
        write_json(self.json_path, self.figures)

    def child(self, name: str, spec: dict, timeout: float, on_results: Callable[[list[dict]], None]) -> ChildResult:
        """The child ``name`` (``CHILDREN``) with ``spec``; its results file (WORK/NAME.jsonl) merged as it grows."""
        results = self.work / f"{name}.jsonl"
        results.unlink(missing_ok=True)
        seen = [0]

        def poll():
            lines = read_jsonl(results)
            if len(lines) != seen[0]:
                seen[0] = len(lines)
                on_results(lines)
                self.write()
        spec = {**spec, "results": str(results), "child": name}
        return run_child([sys.executable, "-m", "tools.bench.gpu_check", "--child", json.dumps(spec)],
                         timeout, self.env, poll)

    def cli(self, tool: str, *args) -> list[str]:
        return [sys.executable, "-m", f"{tool}.cli", *map(str, args)]

    def fresh(self, name: str, files: dict[str, Path]) -> Path:
        """WORK/NAME emptied, then ``files`` (relative path -> source) copied into it."""
        folder = self.work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for rel, src in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / rel)
        return folder

    def hidden(self, cmd: list[str], *paths: tuple[Path, str]) -> str:
        """The command as recorded: no interpreter, the work folder (and ``paths``) by name."""
        text = " ".join(map(str, cmd[1:]))
        for path, name in (*paths, (self.work, "WORK")):
            text = text.replace(str(path), name)
        return text

    # -- parts -----------------------------------------------------------------------------
    def part_env(self, timeout: float) -> ChildResult:
        def merge(lines):
            if lines:
                self.figures["env"] = lines[-1]
                self.figures["device"] = lines[-1].get("device")
        return self.child("env", {"device": self.device, "work": str(self.work)}, timeout, merge)

    def part_sleep(self, timeout: float) -> ChildResult:
        """Self-test: a child that records one figure and then outlives its budget."""
        return self.child("sleep", {}, timeout, lambda lines: self.figures.update(sleep=lines))

    def part_flow(self, timeout: float) -> ChildResult:
        from tools.bench.gpu_check_flow import variants_for
        refs = self.dir / ("refs-tiny.npz" if self.tiny else "refs.npz")
        if not refs.exists():
            raise FileNotFoundError(f"{refs}: run `python -m tools.bench.gpu_check --prepare` first")
        spec = {**dataclasses.asdict(self.s), "device": self.device, "refs": str(refs),
                "videos": str(self.dir / "videos"), "grove": str(self.dir / "grove3"),
                "flows_dir": str(self.out / "flows"), "budget_s": max(1.0, timeout - 3),
                "variants": self.args.variants.split(",") if self.args.variants else None}
        variants = variants_for(self.device)
        r = self.child("flow", spec, timeout, lambda lines: self.figures.update(solver_figures(lines, variants)))
        failed = [f"{x['variant']}{' ' + x['step'] if 'step' in x else ''}: {x['error']}"
                  for x in read_jsonl(self.work / "flow.jsonl") if x["kind"] == "failed"]
        return dataclasses.replace(r, status="failed", tail=failed) if failed and r.status == "ok" else r

    def part_e2e(self, timeout: float) -> ChildResult:
        s = self.s
        clips = find_clips(self.dir / "videos")
        many = self.fresh("many", {f"c{k:02d}/{c.name}": c for k in range(s.copies) for c in clips})
        store = self.work / "store"
        shutil.rmtree(store, ignore_errors=True)
        cmd = self.cli("tsn_prep", "extract-flow", many, store, "--max-frames", s.e2e_frames,
                       "--workers", s.e2e_workers, "--quiet")
        cmd += ["--gpu", self.device.split(":")[1] if ":" in self.device else "0"] if self.cuda else []
        cmd += ["--size", "x".join(map(str, s.size))] if self.tiny else []
        cmd += [str(a) for k, v in s.tvl1 for a in (f"--{k}", v)]
        with Sampler(self.read_util) as sampler:
            r = run_child(cmd, timeout, self.env)
            ended = time.time()
        figs = e2e_figures(store, r, sampler, ended, len(clips) * s.copies)
        figs.update(clips=len(clips) * s.copies, copies=s.copies, frames_per_clip=s.e2e_frames,
                    workers=s.e2e_workers, command=self.hidden(cmd),
                    how_clips_were_made=f"the {len(clips)} real clips copied {s.copies} times as distinct "
                                        f"files c00/..c{s.copies - 1:02d}/, first {s.e2e_frames} frames each")
        self.figures.update(end_to_end=figs, end_to_end_pairs_per_s=figs["pairs_per_s"],
                            gpu_busy_fraction=figs["gpu_busy_fraction"])
        return r

    def part_frames(self, timeout: float) -> ChildResult:
        s = self.s
        real = self.fresh("real", {c.name: c for c in find_clips(self.dir / "videos")
                                   if s.predict_clips is None or c.name in s.predict_clips})
        opts = ["--quiet", "--workers", max(1, len(os.sched_getaffinity(0)))]
        opts += ["--size", "x".join(map(str, s.size))] if self.tiny else []
        budget = Budget(time.monotonic() + timeout, [timeout * 0.7, timeout * 0.3])
        runs = {}
        for i, (name, cmd) in enumerate((
                ("clips", self.cli("tsn_prep", "extract-frames", self.work / "many", self.work / "store",
                                   "--max-frames", s.e2e_frames, *opts)),
                ("real_clips_whole", self.cli("tsn_prep", "extract-frames", real, self.work / "real_store", *opts)))):
            r = run_child(cmd, budget.timeout(i), self.env)
            runs[name] = {"status": r.status, "seconds": r.seconds, **(_summary_line(r.tail) or {}),
                          **({"tail": r.tail[-5:]} if r.status != "ok" else {})}
        self.figures["frames"] = runs
        return ChildResult(worst(v["status"] for v in runs.values()))

    def videos_to_train(self) -> int:
        return self.s.fit_steps * self.s.fit_batch * self.s.fit_accumulate

    def part_trainstore(self, timeout: float) -> ChildResult:
        # on /dev/shm where it has room (no fsync per video), else in the work folder
        shm = Path("/dev/shm")
        if self.cuda and shm.is_dir() and shutil.disk_usage(shm).free > self.videos_to_train() * 400_000 * 2:
            store = shm / f"tsn-gpu-check-{os.getpid()}" / "train_store"
        else:
            store = self.work / "train_store"
        shutil.rmtree(store, ignore_errors=True)
        (self.work / "train_store_path").write_text(str(store))
        spec = {"source": str(self.work / "store"), "store": str(store), "list": str(self.work / "train.txt"),
                "videos": self.videos_to_train(), "frames": self.s.train_frames}
        return self.child("store", spec, timeout,
                          lambda lines: self.figures.update(train_store=lines[-1] if lines else None))

    def part_fit(self, timeout: float) -> ChildResult:
        from tools.bench.gpu_check_train import fit_figures
        s = self.s
        store = Path((self.work / "train_store_path").read_text())
        runs = [(m, d) for m in STREAMS for d in DECODES
                if not self.args.fit_runs or f"{m}-{d}" in self.args.fit_runs.split(",")]
        budget = Budget(time.monotonic() + timeout, [timeout / len(runs)] * len(runs))
        self.figures.setdefault("fit", {m: {} for m in STREAMS})
        statuses = []
        for i, (m, d) in enumerate(runs):
            out = self.work / "runs" / f"{m}-{d}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = self.cli("tsn_train", "fit", "--modality", m, "--store", store,
                           "--train-list", self.work / "train.txt", "--num-classes", s.num_classes,
                           "--out", out, "--arch", s.fit_arch, "--batch-size", s.fit_batch,
                           "--accumulate", s.fit_accumulate, "--workers", s.fit_workers, "--decode-on", d,
                           "--amp", s.amp, "--channels-last", "--epochs", 1, "--max-steps", s.fit_steps,
                           "--log-every", s.fit_log_every, "--device", self.device)
            cmd += ["--input-size", str(s.fit_input_size)] if s.fit_input_size else []
            t = budget.timeout(i)
            if t < 3:
                self.figures["fit"][m][d] = {"status": "skipped", "reason": "no time left"}
                statuses.append("stopped")
                continue
            with Sampler(self.read_util) as sampler:
                r = run_child(cmd, t, self.env)
            metrics = out / "metrics.jsonl"
            figs = fit_figures(metrics, s.fit_batch, m, s.fit_warmup_batches) if metrics.exists() else {}
            figs.update(status=r.status, seconds=r.seconds, budget_s=t, gpu_busy_fraction=sampler.fraction(),
                        checkpoint=(out / "last.pt").exists(), command=self.hidden(cmd, (store, "STORE")))
            if r.status != "ok":
                figs["tail"] = r.tail[-8:]
            self.figures["fit"][m][d] = figs
            self.figures["fit_images_per_s"][m][d] = figs.get("images_per_s")
            self.figures["fit_data_fraction"][m][d] = figs.get("data_fraction")
            statuses.append(r.status)
            self.write()
        return ChildResult(worst(statuses))

    def part_test(self, timeout: float) -> ChildResult:
        s = self.s
        ckpts: dict = {}
        for m, d in ((m, d) for m in STREAMS for d in DECODES):
            if (self.work / "runs" / f"{m}-{d}" / "last.pt").exists():
                ckpts.setdefault(m, str(self.work / "runs" / f"{m}-{d}" / "last.pt"))
        if not ckpts:
            raise FileNotFoundError("no fit checkpoint: the fit part did not finish a run")
        spec = {"checkpoints": ckpts, "store": str(self.work / "store"), "test_videos": s.test_videos,
                "real_store": str(self.work / "real_store"), "clips": [str(p) for p in find_clips(self.work / "real")],
                "segments": s.test_segments, "crops": s.test_crops, "workers": s.test_workers,
                "device": self.device, "amp": s.amp}

        def merge(lines):
            self.figures["test"] = lines
            for line in lines:
                if line["kind"] == "test":
                    self.figures["test_videos_per_s"][line["modality"]] = line["videos_per_s"]
                if line["kind"] == "predict":
                    self.figures["predict_equals_test"] = line["equal_within_1e_5"]
        return self.child("test", spec, timeout, merge)

    # -- the run ---------------------------------------------------------------------------
    def run(self, parts: list[str], planned: dict[str, float]) -> dict:
        self.work.mkdir(parents=True, exist_ok=True)
        budget = Budget(self.t0 + self.args.deadline, [planned[p] for p in parts])
        self.write()
        for i, name in enumerate(parts):
            timeout = budget.timeout(i)
            record = {"status": None, "planned_s": planned[name], "budget_s": round(timeout, 1),
                      "seconds": None, "error": None}
            self.figures["parts"][name] = record
            if timeout < min(3.0, planned[name] / 2):
                record.update(status="skipped", error=f"no time left ({timeout:.0f} s before the deadline "
                                                     "less the later parts' plan)")
                log(f"[gpu_check] {name}: skipped, {record['error']}")
                self.write()
                continue
            log(f"[gpu_check] {name}: up to {timeout:.0f} s ({budget.left():.0f} s left in all)")
            t0 = time.monotonic()
            try:
                child: ChildResult = getattr(self, f"part_{name}")(timeout)
                record["status"] = child.status
                if child.status == "stopped":
                    record["error"] = f"stopped: exceeded its budget of {timeout:.0f} s; figures up to then kept"
                elif child.status == "failed":
                    record["error"] = (f"exit {child.returncode}: " if child.returncode else "") + \
                        " | ".join(child.tail[-3:])
            except Exception as exc:  # noqa: BLE001 - one part failing must not end the others
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                log(traceback.format_exc())
            record["seconds"] = round(time.monotonic() - t0, 1)
            log(f"[gpu_check] {name}: {record['status']} in {record['seconds']:.0f} s"
                + (f" ({record['error']})" if record["error"] else ""))
            self.write()
        if not self.args.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
            shutil.rmtree(Path("/dev/shm") / f"tsn-gpu-check-{os.getpid()}", ignore_errors=True)
        self.write()
        return self.figures


# --------------------------------------------------------------------------- figures

def solver_figures(lines: list[dict], variants: tuple) -> dict:
    """The solver's figures from the flow child's result lines: a table per variant and the
    headline keys, taken from the first variant in ``variants`` order that ran (the default)."""
    table: dict = {}
    order = [v[0] for v in variants]
    for line in lines:
        v = line.get("variant")
        if v is None:
            continue
        t = table.setdefault(v, {"status": "ran", "throughput": []})
        kind = line["kind"]
        if kind == "throughput":
            t["throughput"].append(line)
        elif kind in ("skipped", "failed", "stopped") and "batch" not in line and "step" not in line:
            t["status"], t["reason"] = kind, line.get("reason") or line.get("error")
        else:
            t[kind] = line
    out = {"solver": {"variants": table, "pairs": next((x for x in lines if x["kind"] == "pairs"), None)}}
    ran = [v for v in order if table.get(v, {}).get("accuracy")]
    rows = [r for v in ran for r in table[v]["throughput"]]
    if ran:
        default = table[ran[0]]
        acc = default["accuracy"]
        out.update(solver_variant=ran[0], mean_epe_vs_opencv_px=acc["mean_epe_vs_opencv_px"],
                   bit_identical_across_batches=acc["bit_identical"] and acc["iterations_equal"],
                   grove3_epe_px=default.get("grove3", {}).get("epe_px"))
        if default["throughput"]:
            best = max(default["throughput"], key=lambda r: r["pairs_per_s"])
            out.update(solver_pairs_per_s=best["pairs_per_s"], solver_best_batch=best["batch"],
                       bandwidth_bound_fraction=best["bandwidth_bound_fraction"])
    if rows:
        best = max(rows, key=lambda r: r["pairs_per_s"])
        acc = table[best["variant"]]["accuracy"]
        out["solver_best_any_variant"] = {"variant": best["variant"], "batch": best["batch"],
                                          "pairs_per_s": best["pairs_per_s"],
                                          "mean_epe_vs_opencv_px": acc["mean_epe_vs_opencv_px"],
                                          "bit_identical_across_batches": acc["bit_identical"]}
    return out


def _summary_line(tail: list[str]) -> Optional[dict]:
    """extract-flow/-frames' last line: 'N extracted ..., F failed, of T videos ... (S s) -> OUT'."""
    for line in reversed(tail):
        m = re.search(r"(\d+) extracted.*?(\d+) failed, of (\d+) videos.*\(([\d.]+) s\)", line)
        if m:
            return {"extracted": int(m[1]), "failed": int(m[2]), "videos": int(m[3]), "cli_seconds": float(m[4])}
    return None


def e2e_figures(store: Path, r: ChildResult, sampler: Sampler, ended: float, clips: int) -> dict:
    """pairs/s of an extract-flow run and the GPU's utilisation over the same span: the CLI's own
    seconds (its run, from listing the videos to the last write) when it finished, else from its
    start to the last video it stored; and the steady part, from the 10th to the 90th
    percentile of the videos' commit times."""
    figs: dict = {"status": r.status, "process_s": r.seconds, "pairs": 0, "videos_stored": 0,
                  "pairs_per_s": None, "gpu_busy_fraction": None, "summary": _summary_line(r.tail)}
    figs["said"] = [x for x in r.tail if x.startswith(("flow backend", "batch pairs", "warning", "error"))][:10]
    if r.status != "ok":
        figs["tail"] = r.tail[-8:]
    stored = []
    try:
        from tsn_core.store import Store
        s = Store(store)
        stored = sorted((e.meta.stored_at, e.count) for (v, m), e in s.index.items() if m == "flow")
        s.close()
    except Exception as exc:  # noqa: BLE001 - no store: nothing was stored
        figs["store_error"] = f"{type(exc).__name__}: {exc}"
    if not stored:
        return figs
    pairs = sum(c for _, c in stored)
    started = ended - r.seconds
    span = (figs["summary"] or {}).get("cli_seconds") if r.status == "ok" else None
    t1 = ended if span else stored[-1][0]
    t0 = t1 - span if span else started
    figs.update(pairs=pairs, videos_stored=len(stored), videos_listed=clips, seconds=t1 - t0,
                pairs_per_s=pairs / (t1 - t0), gpu_busy_fraction=sampler.fraction(t0, t1),
                gpu_busy_whole_process=sampler.fraction(started, ended), gpu_samples=len(sampler.samples),
                span="the CLI's seconds" if span else "process start to the last video stored (stopped)")
    i0, i1 = int(0.1 * len(stored)), int(0.9 * len(stored)) - 1
    if i1 > i0 and stored[i1][0] > stored[i0][0]:
        a, b = stored[i0][0], stored[i1][0]
        figs["steady"] = {"videos": i1 - i0, "pairs_per_s": sum(c for _, c in stored[i0 + 1:i1 + 1]) / (b - a),
                          "gpu_busy_fraction": sampler.fraction(a, b), "seconds": b - a}
    return figs


# --------------------------------------------------------------------------- children

def env_child(spec: dict, emit) -> None:
    """The machine and versions; on CUDA the device-to-device copy bandwidth (bytes read plus
    written, 1 GiB of random floats, median of 10 copies timed with CUDA events)."""
    import cv2
    import torch

    info: dict = {"python": platform.python_version(), "platform": platform.platform(),
                  "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__, "cv2": cv2.__version__,
                  "cv2_optflow": hasattr(cv2, "optflow"), "numpy": np.__version__,
                  "cuda_available": torch.cuda.is_available()}
    for mod in ("triton", "lmdb", "torchvision", "pynvml", "av"):
        try:
            info[mod] = getattr(__import__(mod), "__version__", "installed")
        except Exception as exc:  # noqa: BLE001
            info[mod] = f"missing ({type(exc).__name__})"
    shm = Path("/dev/shm")
    info["dev_shm_free_gib"] = shutil.disk_usage(shm).free / 2**30 if shm.is_dir() else None
    info["work_free_gib"] = shutil.disk_usage(spec["work"]).free / 2**30
    dev = torch.device(spec["device"])
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(device=torch.cuda.get_device_name(dev), capability=list(torch.cuda.get_device_capability(dev)),
                    multiprocessors=p.multi_processor_count, memory_gib=p.total_memory / 2**30,
                    cuda=torch.version.cuda)
        if shutil.which("nvidia-smi"):
            q = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"
            info["nvidia_smi"] = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv"],
                                                capture_output=True, text=True).stdout.strip().splitlines()
        x = torch.rand(2**28, device=dev)  # 1 GiB
        y = torch.empty_like(x)
        times = []
        for _ in range(12):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            y.copy_(x)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1000)
        info["copy_tb_per_s"] = 2 * x.numel() * 4 / float(np.median(times[2:])) / 1e12
    else:
        info["device"] = device_name(spec["device"])
    emit("env", **info)


def sleep_child(spec: dict, emit) -> None:
    emit("partial", value=1.0)
    time.sleep(600)


# the children a part starts (``--child SPEC``): name -> (module, function(spec, emit))
CHILDREN = {"env": (__name__, "env_child"), "sleep": (__name__, "sleep_child"),
            "flow": ("tools.bench.gpu_check_flow", "run"), "store": ("tools.bench.gpu_check_train", "build_store"),
            "test": ("tools.bench.gpu_check_train", "test_and_predict")}


def run_named_child(spec: dict) -> None:
    import importlib

    from tools.bench.gpu_check_flow import Results
    module, function = CHILDREN[spec["child"]]
    getattr(importlib.import_module(module), function)(spec, Results(spec["results"], spec["child"]))


# --------------------------------------------------------------------------- command line

def print_summary(f: dict) -> None:
    def num(x, spec=".1f"):
        return "-" if x is None else format(x, spec)
    print("\n== GPU check", f["date"], f["time"], "on", f["device"], f"({f['mode']}, {num(f['seconds'], '.0f')} s)")
    for name, p in f["parts"].items():
        print(f"  {name:<11} {p['status']:<8} {num(p['seconds'], '.0f'):>4} s of {p['budget_s']:.0f}"
              + (f"  {p['error'][:150]}" if p["error"] else ""))
    print(f"  solver {num(f['solver_pairs_per_s'])} pairs/s (batch {f['solver_best_batch']}, "
          f"{num(f['bandwidth_bound_fraction'], '.3f')} of the bandwidth bound); EPE vs OpenCV "
          f"{num(f['mean_epe_vs_opencv_px'], '.4f')} px; bit-identical across batches: "
          f"{f['bit_identical_across_batches']}; Grove3 {num(f['grove3_epe_px'], '.4f')} px")
    print(f"  extract-flow {num(f['end_to_end_pairs_per_s'])} pairs/s, GPU busy {num(f['gpu_busy_fraction'], '.2f')}")
    for m in STREAMS:
        print(f"  fit {m}: " + ", ".join(f"{d} {num(f['fit_images_per_s'][m][d], '.0f')} images/s "
                                         f"(data {num(f['fit_data_fraction'][m][d], '.3f')})" for d in DECODES))
    print(f"  test videos/s: {f['test_videos_per_s']}; predict equals test: {f['predict_equals_test']}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepare", action="store_true", help="fill --dir here (clips, Grove3, OpenCV references, wheels)")
    p.add_argument("--dir", type=Path, default=DIR, help="the prepared folder (default: .gpu_check)")
    p.add_argument("--out", type=Path, default=os.environ.get("OUT") or Path(tempfile.gettempdir()) / "gpu_check_out",
                   help="where the JSON and the flows go (default: $OUT, else a temporary folder)")
    p.add_argument("--work", type=Path, default=None, help="stores and runs (default: a temporary folder, deleted)")
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--device", default=None, help="cuda:0 (default where nvidia-smi is) or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: seconds on a CPU, every part")
    p.add_argument("--parts", help="comma separated subset of: " + ", ".join(n for n, *_ in PARTS))
    p.add_argument("--variants", help="solver variants to run (default: all of gpu_check_flow.VARIANTS)")
    p.add_argument("--fit-runs", help="fit runs, e.g. rgb-loader,flow-device (default: all four)")
    p.add_argument("--deadline", type=float, help="seconds for the whole check (default: the parts' plan, "
                                                  "450 on a GPU)")
    p.add_argument("--budget", action="append", default=[], metavar="PART=S", help="a part's planned seconds")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        run_named_child(json.loads(args.child))
        return 0
    if args.prepare:
        from tools.bench.gpu_check_prepare import prepare
        prepare(args.dir)
        return 0
    args.device = args.device or ("cuda:0" if shutil.which("nvidia-smi") else "cpu")
    if not args.device.startswith("cuda") and not args.tiny:
        raise SystemExit("--device cpu needs --tiny: the full check is sized for a GPU")
    table = {n: (g, t) for n, g, t in PARTS} | SELF_TEST
    parts = args.parts.split(",") if args.parts else [n for n, *_ in PARTS]
    unknown = [x for x in parts if x not in table]
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; parts: {', '.join(table)}")
    planned = {n: table[n][1 if args.tiny else 0] for n in parts}
    for item in args.budget:
        name, _, sec = item.partition("=")
        planned[name] = float(sec)
    if args.deadline is None:  # the whole check on a GPU: 450 s, leaving 30 of the call's 8 minutes
        args.deadline = 450.0 if not (args.tiny or args.parts) else sum(planned.values())
    args.work = args.work or Path(tempfile.mkdtemp(prefix="tsn-gpu-check-"))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _end_children)
    check = Check(args)
    log(f"[gpu_check] {check.figures['mode']} check on {args.device}, parts {', '.join(parts)}, "
        f"deadline {args.deadline:.0f} s; figures -> {check.json_path}")
    figures = check.run(parts, planned)
    print_summary(figures)
    print(f"figures: {check.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
