"""The batching flow engine (tsn_prep/extraction/scheduler.py): same store as the per-video path, byte for byte.

Real clips, real LMDB stores, the torch TV-L1 on the CPU with tiny settings (2 scales, 1 warping,
a loose epsilon, frames with a 48 px short side): the engine's results do not depend on those, and
the tests stay fast. Under ``--short-side 48`` carphone (176x144) gives 59x48 frames and the other
clips (4:3) 64x48, so one run mixes two frame sizes.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading

import cv2
import numpy as np
import pytest
import torch

from tsn_prep.extraction import batch_size, devices, scheduler, solver, solver_choice
from tsn_prep.extraction.backends import make_flow_fn
from tsn_prep.extraction.params import ExtractParams
from tsn_prep.extraction.plan import RunPlan
from tsn_prep.extraction.results import encode_flow
from tsn_prep.verify import verify_store
from tsn_prep.extraction.run import run_extraction
from tsn_core.store import Store
from tsn_prep.extraction.tvl1_params import TVL1Params
from tsn_core.video_files import VideoItem
from tsn_prep.video import VideoReader
from tsn_prep.extraction.warp import WarpedFlow, WarpParams

from tsn_core import modalities

from .conftest import (GUARD, VIDEOS, cli, committed_ids, killed_after, link_videos, make_pipe,
                       open_pipe_writer, start_cli, torch_threads, wait_until)

TINY = TVL1Params(scales=2, warps=1, epsilon=0.05)
TINY_ARGS = ("--scales", "2", "--warps", "1", "--epsilon", "0.05")
PARAMS = ExtractParams(modalities=("flow",), size=None, short_side=48, max_frames=6, tvl1=TINY)
PLAN = RunPlan(backend="torch")
CLIPS = {"a/arm.mp4": "armwrestling_kinetics.mp4", "a/car.mp4": "carphone.mp4",
         "b/eye.avi": "eyemakeup_ucf101like.avi", "b/pool.mp4": "poolcleaning.mp4",
         "c/tree.avi": "tree.avi", "c/car2.mp4": "carphone.mp4"}


@pytest.fixture(autouse=True)
def eager_two_threads(monkeypatch):
    """torch.compile costs a minute per shape on the CPU, far more than these few pairs. Runs in
    this process keep one CPU solver in the engine's thread (starting solver processes costs
    seconds); the tests run as commands, and two tests below, have the solver processes."""
    monkeypatch.setenv("TSN_TORCH_COMPILE", "0")
    monkeypatch.setattr(solver_choice, "cpu_solvers", lambda: 1)
    with torch_threads(2):
        yield


def snapshot(out):
    """Every image and every entry's metadata (less its time of writing) of a store."""
    s = Store(out)
    images = {(vid, ch, i): data for _, vid, ch, i, data in s.iter_images()}
    meta = {k: {f: v for f, v in e.meta.to_dict().items() if f != "stored_at"} for k, e in s.index.items()}
    return images, meta


def one_pair_at_a_time(videos, params: ExtractParams, backend: str = "torch") -> dict:
    """The images a store of ``videos`` must hold, made without the engine: each video's frames
    as ``VideoReader`` decodes them, grey, one TV-L1 call per pair (``WarpedFlow`` for warped
    flow), ``encode_flow``: {(video id, channel, index): JPEG bytes}."""
    solver = make_flow_fn(params.tvl1, None, backend, "tvl1")
    warper = WarpedFlow(solver, params.warp)
    images = {}
    for path in sorted(p for p in videos.rglob("*") if p.is_file()):
        vid = path.relative_to(videos).with_suffix("").as_posix()
        frames = VideoReader(path, params.size, params.short_side, params.max_frames).frames()
        greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        for i, (a, b) in enumerate(zip(greys, greys[1:])):
            flow = solver(a, b)
            for m in params.modalities:
                spec = modalities.get(m)
                got = warper(a, b, flow)[0] if spec.camera_compensated else flow
                for ch, jpeg in zip(spec.channels, encode_flow(got, params.bound, params.jpeg_quality)):
                    images[(vid, ch, i)] = jpeg
    return images


class Spy:
    """Records every batch the engine sends: its pairs' (video, index, second pass) and shape."""

    def __init__(self, monkeypatch):
        self.batches = []
        self.bounds = []  # the quantisation bound each batch was sent with (None: float flows back)
        real = devices.Device.send

        def send(device, pairs, *rest):
            self.batches.append(([(p.key, p.index, p.second) for p in pairs], pairs[0].prev.shape,
                                 {p.prev.shape for p in pairs}))
            self.bounds.append(rest[1] if len(rest) > 1 else None)
            return real(device, pairs, *rest)

        monkeypatch.setattr(devices.Device, "send", send)


def test_mixed_sizes_batched_across_videos_equal_one_pair_at_a_time(tmp_path, monkeypatch):
    videos = link_videos(tmp_path / "videos", CLIPS)
    spy = Spy(monkeypatch)
    plan = dataclasses.replace(PLAN, batch_pairs=3, workers=2)  # 5 pairs per video: batches span videos
    got = run_extraction(videos, tmp_path / "engine", PARAMS, plan, progress=False)
    assert (got.done, got.pairs, got.frames, got.failed) == (6, 30, 36, [])
    batches = list(spy.batches)
    ref = run_extraction(videos, tmp_path / "ref", PARAMS, dataclasses.replace(PLAN, batch_pairs=1, workers=0),
                         progress=False)
    assert (ref.done, ref.pairs, ref.frames) == (6, 30, 36)
    assert snapshot(tmp_path / "engine") == snapshot(tmp_path / "ref")
    assert snapshot(tmp_path / "engine")[0] == one_pair_at_a_time(videos, PARAMS)

    sizes = Store(tmp_path / "engine").index
    assert sizes[("a/car", "flow")].meta.stored_size == (59, 48)
    assert sizes[("a/arm", "flow")].meta.stored_size == (64, 48)
    assert all(len(shapes) == 1 for _, _, shapes in batches)  # sizes never share a batch
    assert {shape for _, shape, _ in batches} == {(48, 59), (48, 64)}
    assert any(len({key for key, _, _ in pairs}) > 1 for pairs, _, _ in batches)  # across videos
    sent = sorted(p for pairs, _, _ in batches for p in pairs)
    assert sent == sorted((k, i, False) for k in range(6) for i in range(5))  # each pair once


def test_warped_flow_through_the_engine_equals_one_pair_at_a_time(tmp_path, monkeypatch):
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if not k.startswith("c/")})
    spy = Spy(monkeypatch)
    # Homography thresholds for 48 px frames (corners only: 67 to 91 RANSAC inliers a pair here):
    # the second TV-L1 pass runs through the batched solver for some pairs and is skipped
    # (identity homography) for others.
    warp = WarpParams(detector="none", min_pairs=8, min_inliers=80)
    params = dataclasses.replace(PARAMS, modalities=("flow", "warped_flow"), warp=warp)
    two = dataclasses.replace(PLAN, workers=2)
    # The first run stores flow of some videos only: the second run adds warped flow to those
    # (only the missing modality) and does both for the rest, in the same batches.
    first = run_extraction(videos, tmp_path / "engine", dataclasses.replace(params, modalities=("flow",)),
                           PLAN, progress=False)
    assert first.done == 4
    Store(tmp_path / "engine").close()
    got = run_extraction(videos, tmp_path / "engine", dataclasses.replace(params, modalities=("warped_flow",)),
                         two, progress=False)
    assert (got.done, got.pairs, got.failed) == (4, 20, [])
    spy.batches.clear()
    spy.bounds.clear()
    both = run_extraction(videos, tmp_path / "both", params, two, progress=False)
    assert both.done == 4
    batches, bounds = list(spy.batches), list(spy.bounds)
    ref = run_extraction(videos, tmp_path / "ref", params, dataclasses.replace(PLAN, batch_pairs=1),
                         progress=False)
    assert ref.done == 4
    images, meta = snapshot(tmp_path / "ref")
    assert snapshot(tmp_path / "both") == (images, meta)
    assert snapshot(tmp_path / "engine")[0] == images == one_pair_at_a_time(videos, params)
    second = [p for pairs, _, _ in batches for p in pairs if p[2]]
    assert 0 < len(second) < 20  # some pairs took the second pass, not all of them
    # first passes come back as floats (their homographies need them), second passes quantised
    # by the solver: the stores above are the same all the same
    for (pairs, _, _), bound in zip(batches, bounds):
        assert bound == (params.bound if all(p[2] for p in pairs) else None)


def test_opencv_solvers_run_side_by_side_and_give_direct_calls_bytes(tmp_path, monkeypatch):
    """OpenCV's TV-L1 is a PairSolver: one per usable core, in threads of the parent (OpenCV
    releases the GIL), one pair at a time whatever --batch-pairs says; the store holds what one
    direct call per pair gives, warped flow included."""
    monkeypatch.setattr(solver_choice, "usable_cores", lambda: 2)
    threads = []
    real = solver.PairSolver.batch

    def batch(self, prev, cur, bound=None):
        threads.append((threading.current_thread().name, len(prev)))
        return real(self, prev, cur, bound)

    monkeypatch.setattr(solver.PairSolver, "batch", batch)
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if not k.startswith("c/")})
    params = dataclasses.replace(PARAMS, modalities=("flow", "warped_flow"), max_frames=4,
                                 warp=WarpParams(detector="none", min_pairs=8, min_inliers=80))
    plan = RunPlan(workers=2, batch_pairs=8)
    got = run_extraction(videos, tmp_path / "out", params, plan, progress=False)
    assert (got.done, got.pairs, got.failed) == (4, 12, [])
    assert snapshot(tmp_path / "out")[0] == one_pair_at_a_time(videos, params, "opencv")
    assert {n for _, n in threads} == {1} and len(threads) > 12  # some second passes
    assert {name for name, _ in threads} == {"tsn-solver-0-cpu", "tsn-solver-1-cpu"}
    meta = Store(tmp_path / "out").entry("a/arm", "warped_flow").meta
    assert meta.parameters["flow_backend"] == "opencv" and meta.num_frames == 4


def test_a_broken_file_among_good_ones_fails_alone(tmp_path, capsys):
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if k.startswith("a/")})
    (videos / "a" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    (videos / "b").mkdir()
    (videos / "b" / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    r = cli("extract-flow", videos, out, "--backend", "torch", "--short-side", 48, "--max-frames", 6,
            "--workers", 2, "--quiet", *TINY_ARGS, expect=1)
    assert "2 extracted, 0 already complete, 2 failed, of 4 videos" in r.output
    assert f"error: {videos / 'a' / 'broken.mp4'}: " in r.output
    s = Store(out)
    assert s.videos("flow") == ["a/arm", "a/car"]
    failures = {f.video_id: f.error for f in s.failures()}
    assert failures["b/empty"] == "empty file (0 bytes)"
    # the same failures, worded the same, decoding in this process
    run_extraction(videos, tmp_path / "ref", PARAMS, dataclasses.replace(PLAN, batch_pairs=8, workers=0),
                   progress=False)
    assert {f.video_id: f.error for f in Store(tmp_path / "ref").failures()} == failures
    assert snapshot(out)[0] == snapshot(tmp_path / "ref")[0]


def test_batch_auto_on_the_cpu_equals_batch_one(tmp_path, capsys):
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if k.startswith("a/")})
    auto = run_extraction(videos, tmp_path / "auto", PARAMS, PLAN, progress=False)
    err = capsys.readouterr().err
    assert "batch pairs auto: 64x48 frames on cpu: 8" in err
    assert "batch pairs auto: 59x48 frames on cpu: 8" in err
    assert batch_size.cpu_batch((256, 340)) == 1 and batch_size.cpu_batch((128, 170)) == 3
    one = run_extraction(videos, tmp_path / "one", PARAMS, dataclasses.replace(PLAN, batch_pairs=1),
                         progress=False)
    assert "batch pairs auto" not in capsys.readouterr().err
    assert auto.done == one.done == 2
    assert snapshot(tmp_path / "auto") == snapshot(tmp_path / "one")


class FakeSolver:
    """Stands in for a compiled solver: flow = (prev - cur, prev + cur) per pixel, records shapes."""

    batches = True
    compiled = True
    quantizes = False

    def __init__(self):
        self.shapes = []

    def close(self, wait=True):
        pass

    def batch(self, prev, cur):
        self.shapes.append(prev.shape)
        a, b = prev.astype(np.float32), cur.astype(np.float32)
        return np.stack([(a - b) / 8, (a + b) / 64 - 4], axis=-1)


def test_compiled_solvers_get_one_shape_per_frame_size(tmp_path):
    """Partial batches are padded to the batch size (a new shape would be a new compilation) and
    the padding's flows are dropped."""
    from .conftest import read_frames

    videos = link_videos(tmp_path / "videos", {"arm.mp4": "armwrestling_kinetics.mp4", "car.mp4": "carphone.mp4"})
    cfg = dataclasses.replace(PARAMS, size=(40, 30), short_side=None, max_frames=7)
    todo = [scheduler.Job(VideoItem(p.stem, p), cfg.modalities) for p in sorted(videos.iterdir())]
    solver = FakeSolver()
    results = list(scheduler.engine_results(todo, cfg, dataclasses.replace(PLAN, batch_pairs=4),
                                         say=lambda line: None, make_solver=lambda gpu: solver))
    assert sorted(r.item.id for r in results) == ["arm", "car"] and not any(r.error for r in results)
    assert set(solver.shapes) == {(4, 30, 40)}  # 12 pairs: 3 batches of 4, whichever videos
    for r in results:
        greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in read_frames(r.item.path, 7, (40, 30))]
        expected = [encode_flow(FakeSolver().batch(a[None], b[None])[0], cfg.bound, cfg.jpeg_quality)
                    for a, b in zip(greys, greys[1:])]
        assert list(zip(r.images["flow"]["flow_x"], r.images["flow"]["flow_y"])) == expected
        assert r.pairs == 6 and r.meta["flow"].num_frames == 7


class Failing(FakeSolver):
    """Runs out of memory above 2 pairs a batch; cannot do 37x30 frames at all."""

    compiled = False

    def __init__(self):
        super().__init__()
        self.attempts = []

    def batch(self, prev, cur):
        self.attempts.append(prev.shape)
        if prev.shape[2] == 37:
            raise ValueError("no 37 px wide frames")
        if len(prev) > 2:
            raise RuntimeError("out of memory")
        return super().batch(prev, cur)


def test_a_failing_batch_is_solved_pair_by_pair_and_the_batch_halved(tmp_path):
    videos = link_videos(tmp_path / "videos", {"arm.mp4": "armwrestling_kinetics.mp4", "car.mp4": "carphone.mp4",
                                               "eye.avi": "eyemakeup_ucf101like.avi"})
    cfg = dataclasses.replace(PARAMS, short_side=30, max_frames=7)  # car: 37x30, others 40x30
    todo = [scheduler.Job(VideoItem(p.stem, p), cfg.modalities) for p in sorted(videos.iterdir())]
    lines = []
    solver = Failing()
    results = {r.item.id: r for r in scheduler.engine_results(
        todo, cfg, dataclasses.replace(PLAN, batch_pairs=4, workers=2), say=lines.append,
        make_solver=lambda gpu: solver)}
    assert results["car"].error == "unexpected ValueError: no 37 px wide frames"
    assert results["arm"].error is None and results["eye"].error is None
    assert any(line.startswith("a batch of 4 pairs of 40x30 frames failed on cpu (RuntimeError: out of "
                               "memory); solved them one at a time; batches of 2 from now on")
               for line in lines), lines
    tried = [n for n, h, w in solver.attempts if w == 40 and n > 1]
    # the batches of 4 in flight when the first failed (at most DEPTH), then at most 2 a batch
    fours = next((i for i, n in enumerate(tried) if n != 4), len(tried))
    assert 1 <= fours <= devices.DEPTH and set(tried[fours:]) <= {2}, tried
    assert sum("of 40x30 frames failed" in line for line in lines) == 1, lines  # halved once, to 2
    fine = run_extraction(videos, tmp_path / "ref", cfg, dataclasses.replace(PLAN, batch_pairs=1),
                          progress=False)
    assert fine.done == 3  # (the real solver does 37x30)
    ref = Store(tmp_path / "ref")
    for vid in ("arm", "eye"):
        assert results[vid].pairs == 6
        got = results[vid].images["flow"]["flow_x"]
        assert len(got) == 6 and got != ref.read(vid, "flow_x", list(range(6)))  # the fake's flows


class FakeCuda(FakeSolver):
    """A solver "on a GPU": its batches take 300 bytes plus 100 per pair above what is allocated."""

    compiled = False
    allocated, reserved, free = 1000, 3000, 10000

    def __init__(self):
        super().__init__()
        self.peak = self.allocated

    def batch(self, prev, cur):
        self.peak = max(self.peak, self.allocated + 300 + 100 * len(prev))
        return super().batch(prev, cur)


def test_batch_auto_on_cuda_probes_the_memory_per_pair(tmp_path, monkeypatch):
    """The probe's arithmetic, with torch.cuda's memory counters played by a fake (no GPU here):
    per pair = peak(2 pairs) - peak(1 pair) = 100 bytes; free = 10000 + the 2000 cached by torch;
    batch = floor(0.6 * 12000 / 100) = 72. Two devices: batches are dealt to both."""

    solvers = {}
    for name, fn in {"set_device": lambda d: None, "synchronize": lambda d=None: None,
                     "reset_peak_memory_stats": lambda d=None: [setattr(s, "peak", s.allocated)
                                                                for s in solvers.values()],
                     "memory_allocated": lambda d=None: FakeCuda.allocated,
                     "memory_reserved": lambda d=None: FakeCuda.reserved,
                     "max_memory_allocated": lambda d=None: solvers[torch.device(d).index].peak,
                     "mem_get_info": lambda d=None: (FakeCuda.free, 10 ** 6)}.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    videos = link_videos(tmp_path / "videos", {"arm.mp4": "armwrestling_kinetics.mp4", "car.mp4": "carphone.mp4"})
    lines = []

    cfg = dataclasses.replace(PARAMS, size=(40, 30), short_side=None, max_frames=20)

    def run(plan):
        solvers.clear()
        todo = [scheduler.Job(VideoItem(p.stem, p), cfg.modalities) for p in sorted(videos.iterdir())]
        make = lambda gpu: solvers.setdefault(gpu, FakeCuda())  # noqa: E731
        return sorted((r.item.id, r.error, r.images["flow"]["flow_x"]) for r in
                      scheduler.engine_results(todo, cfg, plan, say=lines.append, make_solver=make))

    auto = run(dataclasses.replace(PLAN, gpus=(0,)))
    assert lines == ["batch pairs auto: 40x30 frames on cuda:0: 72 (0.0 MiB per pair, 0.0 GiB free)"]
    assert set(solvers[0].shapes) - {(1, 30, 40), (2, 30, 40)} <= {(n, 30, 40) for n in range(1, 73)}
    two = run(dataclasses.replace(PLAN, gpus=(0, 1), batch_pairs=4))
    assert two == auto  # same flows, however batched and whichever device
    assert all(solver.shapes for solver in solvers.values())  # both devices got batches
    assert lines[1:] == []  # a fixed batch size is not announced


# -- SIGKILL, Ctrl-C and a dying decoder with the engine running -----------------------------------

FIFO_ARGS = ("extract-flow", "--backend", "torch", "--short-side", "48", "--max-frames", "5",
             "--workers", "1", "--quiet", *TINY_ARGS)
ENV = dict(os.environ, TSN_TORCH_COMPILE="0", OMP_NUM_THREADS="2")


def _start(videos, out, stderr=subprocess.DEVNULL):
    """The FIFO_ARGS run started, SIGKILLed after the block."""
    return killed_after(start_cli(FIFO_ARGS[0], videos, out, *FIFO_ARGS[1:], stderr=stderr, env=ENV))


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _descendants(pid: int) -> set[int]:
    """Live processes under ``pid`` (its children, theirs...)."""
    found, frontier = set(), {pid}
    while frontier:
        kids = set()
        for p in filter(str.isdigit, os.listdir("/proc")):
            try:
                if _parent(int(p)) in frontier and int(p) not in found:
                    kids.add(int(p))
            except (OSError, ValueError, IndexError):
                continue
        found |= kids
        frontier = kids
    return found


def _holders(path) -> set[int]:
    """Processes other than this one with ``path`` open."""
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    pids.add(int(pid))
            except OSError:
                pass
    return pids - {os.getpid()}


def _decoder_of(pipe, proc) -> int:
    """The pid of the decoding worker reading ``pipe``: a child of ``proc``, not ``proc`` itself."""
    wait_until(lambda: _holders(pipe), f"no process opened {pipe}")
    (pid,) = _holders(pipe)
    assert pid != proc.pid and _parent(pid) == proc.pid
    return pid


def _wait_for(out, ids, proc):
    # the parent commits them, then has nothing more to do
    wait_until(lambda: committed_ids(out) == ids, lambda: committed_ids(out), proc, poll=0.05)


NAMES = {"0_arm.mp4": "armwrestling_kinetics.mp4", "1_car.mp4": "carphone.mp4",
         "2_eye.avi": "eyemakeup_ucf101like.avi", "3_pool.mp4": "poolcleaning.mp4"}


def _pipe_videos(tmp_path):
    videos = link_videos(tmp_path / "videos", NAMES)
    pipe = videos / "2_eye.avi"
    make_pipe(pipe)
    return videos, pipe


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    """One decoding worker takes the videos in sorted order; the third is a named pipe, so the run
    commits the first two (their flows are solved while the worker waits on the pipe) and can go
    no further. Then SIGKILL: the decoding worker and the CPU solver processes (one per usable
    core) must die with it, the store must hold exactly the two whole videos, and a re-run must
    finish the store as an uninterrupted run does."""
    ref = tmp_path / "ref"
    cli(FIFO_ARGS[0], link_videos(tmp_path / "ref_videos", NAMES), ref, *FIFO_ARGS[1:])
    videos, pipe = _pipe_videos(tmp_path)
    out = tmp_path / "out"
    with _start(videos, out) as proc:
        writer = open_pipe_writer(pipe, proc)  # the worker is past the first two videos
        decoder = _decoder_of(pipe, proc)
        _wait_for(out, ["0_arm", "1_car"], proc)
        helpers = _descendants(proc.pid)
        assert decoder in helpers and len(helpers) >= 1 + min(2, solver_choice.usable_cores())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not helpers & {int(p) for p in os.listdir("/proc") if p.isdigit()},
                   "a helper process outlived the killed run", poll=0.05)  # all die with the run
        assert decoder not in _holders(pipe)
        os.close(writer)
    assert proc.returncode == -signal.SIGKILL
    assert committed_ids(out) == ["0_arm", "1_car"]
    assert verify_store(Store(out)) == []

    pipe.unlink()
    pipe.symlink_to(VIDEOS / NAMES["2_eye.avi"])
    r = cli(FIFO_ARGS[0], videos, out, *FIFO_ARGS[1:])  # the re-run, in-process
    assert "2 extracted, 2 already complete, 0 failed, of 4 videos" in r.output
    got, want = snapshot(out), snapshot(ref)
    assert got[0] == want[0]
    strip = lambda meta: {k: dict(m, source=os.path.basename(m["source"])) for k, m in meta.items()}  # noqa: E731
    assert strip(got[1]) == strip(want[1])


def test_ctrl_c_with_the_engine_running(tmp_path):
    videos, pipe = _pipe_videos(tmp_path)
    out = tmp_path / "out"
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err_file, _start(videos, out, stderr=err_file) as proc:
        writer = open_pipe_writer(pipe, proc)
        decoder = _decoder_of(pipe, proc)
        _wait_for(out, ["0_arm", "1_car"], proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=GUARD)
        assert decoder not in _holders(pipe)  # the run ended its worker before exiting
        os.close(writer)
    err = err_path.read_text()
    assert proc.returncode == 130, err
    assert f"interrupted (Ctrl-C): finished videos are safe in {out}; re-run the same command" in err
    assert "Traceback" not in err and " extracted, " not in err
    assert committed_ids(out) == ["0_arm", "1_car"] and verify_store(Store(out)) == []


def test_a_decoding_worker_that_dies_fails_its_video_only(tmp_path):
    videos, pipe = _pipe_videos(tmp_path)
    out = tmp_path / "out"
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err_file, _start(videos, out, stderr=err_file) as proc:
        writer = open_pipe_writer(pipe, proc)
        os.kill(_decoder_of(pipe, proc), signal.SIGKILL)  # as the kernel's OOM killer would
        os.close(writer)
        proc.wait(timeout=GUARD)
    err = err_path.read_text()
    assert proc.returncode == 1, err
    assert "3 extracted, 0 already complete, 1 failed, of 4 videos" in err
    s = Store(out)
    assert s.videos("flow") == ["0_arm", "1_car", "3_pool"]
    assert [f.error for f in s.failures()] == ["unexpected WorkerDied: the decoding process died (exit code -9)"]


class DiesOnReceipt:
    """A solver process's pipe whose process is SIGKILLed right after a batch is sent to it."""

    def __init__(self, conn, proc):
        self.conn, self.proc = conn, proc

    def send(self, job):
        self.conn.send(job)
        self.proc.kill()
        self.proc.join(GUARD)

    def recv(self):
        return self.conn.recv()

    def close(self):
        self.conn.close()


def test_solver_processes_give_the_in_thread_solvers_flows_and_survive_a_death():
    """A SolverProcess solves as the solver in the engine's thread does (frames and flows through
    a pipe; eager in the child too, as TSN_TORCH_COMPILE is inherited); a failing batch raises
    the child's exception; a child killed mid-run (as the OOM killer would) fails its batch with
    SolverDied, and the next batch gets a new process with the same results."""
    from tsn_prep.extraction.backends import make_flow_fn
    from tsn_prep.extraction.solver import SolverDied
    from tsn_prep.extraction.solver_process import SolverProcess

    from .conftest import read_frames

    greys = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
                      for f in read_frames(VIDEOS / "carphone.mp4", 4, (40, 30))])
    local = make_flow_fn(TINY, None, "torch", "tvl1")
    want = local.batch(greys[:-1], greys[1:])
    solver = SolverProcess(TINY)
    try:
        got = solver.batch(greys[:-1], greys[1:])
        assert got.dtype == np.float32 and np.array_equal(got, want)
        with pytest.raises(ValueError):  # frames of two shapes: the child's own error
            solver.batch(greys[:1], greys[1:, :20])
        first = solver.proc
        solver.conn = DiesOnReceipt(solver.conn, first)
        with pytest.raises(SolverDied, match=r"the CPU solver process died \(exit code -9\)"):
            solver.batch(greys[:1], greys[1:2])
        assert np.array_equal(solver.batch(greys[:-1], greys[1:]), want)
        assert solver.proc is not first and solver.proc.is_alive()
    finally:
        solver.close()
    assert first.exitcode == -9 and solver.proc is None


def test_the_cpu_solvers_are_one_per_usable_core(tmp_path, monkeypatch):
    """With 2 usable cores the engine solves in 2 one-thread processes (1 core: one solver in its
    own thread), both kept busy, and the store is one solver's, byte for byte."""
    monkeypatch.setattr(solver_choice, "usable_cores", lambda: 2)
    monkeypatch.setattr(solver_choice, "cpu_solvers", lambda: solver_choice.usable_cores())
    made = []
    real = solver_choice.SolverProcess

    class Counting(real):
        def batch(self, prev, cur, bound=None):
            made.append((id(self), bound))
            return super().batch(prev, cur, bound)

    monkeypatch.setattr(solver_choice, "SolverProcess", Counting)
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if k.startswith("a/")})
    plan = dataclasses.replace(PLAN, batch_pairs=1)
    run_extraction(videos, tmp_path / "out", PARAMS, plan, progress=False)
    # 2 videos of 6 frames: 10 batches of 1 pair, over both, each quantised in its process
    assert len(made) == 10 and {b for _, b in made} == {PARAMS.bound} and len(set(made)) == 2
    monkeypatch.setattr(solver_choice, "cpu_solvers", lambda: 1)
    run_extraction(videos, tmp_path / "ref", PARAMS, plan, progress=False)
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "ref")
    devices, make = scheduler.solvers(PARAMS, plan)
    assert devices == (None,) and make(None).threads == 1  # one core: in the engine's thread


def test_cpu_solvers_use_at_most_half_the_available_memory(monkeypatch):
    monkeypatch.undo()  # the real cpu_solvers, not the fixture's
    monkeypatch.setattr(solver_choice, "usable_cores", lambda: 16)
    per = solver_choice.SOLVER_PROCESS_BYTES
    for available, solvers in [(None, 16), (100 * per, 16), (10 * per, 5), (3 * per, 1), (0, 1)]:
        monkeypatch.setattr(solver_choice, "available_memory", lambda a=available: a)
        assert solver_choice.cpu_solvers() == solvers
