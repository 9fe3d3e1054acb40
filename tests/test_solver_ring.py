"""The solver in a process of its own, fed through shared-memory slots (tsn_prep/extraction/solver_ring.py).

Real processes and real stores: the torch TV-L1 on the CPU with tiny settings (as in
test_engine.py), or ``ContentSolver``, whose flows are a function of each pair's frames, so a flow
that reached the wrong video or frame shows in the stored bytes. SIGKILLs are real: a solver child
that kills itself inside a batch, and a whole run killed from outside.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from functools import partial
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pytest

from tsn_prep.extraction import scheduler, solver_choice, solver_ring
from tsn_prep.extraction.backends import make_flow_fn
from tsn_prep.extraction.run import run_extraction
from tsn_prep.extraction.solver import SolverDied
from tsn_prep.extraction.solver_ring import RingSolver
from tsn_core.store import Store
from tsn_prep.verify import verify_store

from .conftest import (GUARD, REPO, VIDEOS, committed_ids, killed_after, link_videos, make_pipe,
                       open_pipe_writer, read_frames, torch_threads, wait_until)

from .test_engine import CLIPS, PARAMS, PLAN, TINY  # the engine tests' clips and settings


@pytest.fixture(autouse=True)
def eager_two_threads(monkeypatch):
    """Eager torch (compiling costs a minute per shape on the CPU), inherited by every child."""
    monkeypatch.setenv("TSN_TORCH_COMPILE", "0")
    monkeypatch.setattr(solver_choice, "cpu_solvers", lambda: 1)
    with torch_threads(2):
        yield


class ContentSolver:
    """A solver whose quantised flow of a pair is a function of its two frames (x: prev + 2 cur
    mod 256, y: prev xor cur), as a GPU solver's would be. With ``kill_at``: its process SIGKILLs
    itself in its ``kill_at``-th batch, once (``marker`` says it happened)."""

    batches, compiled, quantizes = True, False, True

    def __init__(self, kill_at: int = 0, marker: str = ""):
        self.kill_at, self.marker, self.calls = kill_at, marker, 0

    def batch(self, prev, cur, bound=None):
        self.calls += 1
        if self.calls == self.kill_at and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        prev, cur = np.asarray(prev, np.uint16), np.asarray(cur, np.uint16)
        return np.stack([((prev + 2 * cur) % 256).astype(np.uint8), (prev ^ cur).astype(np.uint8)], axis=-1)

    def close(self, wait: bool = True) -> None:
        """Nothing to end."""


def snapshot(out):
    """Every image and every entry's metadata (less its time of writing) of a store."""
    s = Store(out)
    images = {(vid, ch, i): data for _, vid, ch, i, data in s.iter_images()}
    meta = {k: {f: v for f, v in e.meta.to_dict().items() if f != "stored_at"} for k, e in s.index.items()}
    return images, meta


def use(monkeypatch, make) -> None:
    """The engine's one solver (on the CPU) made by ``make(gpu)``."""
    monkeypatch.setattr(scheduler, "solvers", lambda params, plan: ((None,), make))


class Recording:
    """The parent's end of the control channel, recording the size of every message sent."""

    def __init__(self, conn):
        self.conn, self.sizes = conn, []

    def send(self, msg):
        self.sizes.append(len(ForkingPickler.dumps(msg)))
        self.conn.send(msg)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_the_ring_solver_gives_the_in_thread_solvers_flows_and_survives_a_death(tmp_path, monkeypatch):
    """Float and quantised flows equal the torch solver's in this process; two batches in flight
    each get their own; bigger frames grow a slot; the control channel carries no pixels; the
    child's exception is the batch's; a child SIGKILLed inside a batch fails that batch (and the
    one queued behind it) with SolverDied, and the next batch gets a new child."""
    greys = np.stack(read_frames(VIDEOS / "carphone.mp4", 5, (40, 30), grey=True))
    big = np.stack(read_frames(VIDEOS / "tree.avi", 3, (340, 256), grey=True))
    monkeypatch.setattr(solver_ring, "MIN_SLOT", 0)  # slots as small as a batch allows: 1 MiB here
    local = make_flow_fn(TINY, None, "torch", "tvl1")
    solver = RingSolver(partial(make_flow_fn, TINY, None, "torch", "tvl1"))
    try:
        assert (solver.batches, solver.compiled, solver.quantizes) == (True, False, True)
        solver.requests = Recording(solver.requests)
        got = solver.batch(greys[:-1], greys[1:])
        assert got.dtype == np.float32 and np.array_equal(got, local.batch(greys[:-1], greys[1:]))
        first = solver.submit(list(greys[:2]), list(greys[1:3]), 20.0)  # lists of frames, as the engine's
        second = solver.submit(greys[2:4], greys[3:5], 20.0)  # queued behind it, in the other slot
        want = local.batch(greys[:-1], greys[1:], 20.0)
        assert first.result().dtype == np.uint8
        assert np.array_equal(first.result(), want[:2]) and np.array_equal(second.result(), want[2:])
        assert first.result()[0][..., 0].flags.c_contiguous  # a pair's channel: ready for the JPEG encoder
        sizes = {slot.size for slot in solver.slots}
        assert np.array_equal(solver.batch(big[:-1], big[1:]), local.batch(big[:-1], big[1:]))
        assert sizes == {1 << 20} and max(slot.size for slot in solver.slots) == 2 << 20  # 2 pairs of 340x256
        assert max(solver.requests.sizes) < 300  # slot, N, H, W, bound: no pixels
        with pytest.raises(ValueError, match="bound must be positive"):  # raised in the child
            solver.batch(greys[:1], greys[1:2], -1.0)
        assert np.array_equal(solver.batch(greys[:-1], greys[1:], 20.0), want)  # the child lives on
        child = solver.proc
    finally:
        solver.close()
    assert child.exitcode == 0

    marker = tmp_path / "killed"
    solver = RingSolver(partial(ContentSolver, kill_at=2, marker=str(marker)))
    try:
        content = ContentSolver().batch  # what any child of it gives
        assert np.array_equal(solver.batch(greys[:2], greys[1:3], 20.0), content(greys[:2], greys[1:3]))
        dying = solver.proc
        doomed = [solver.submit(greys[:2], greys[1:3], 20.0), solver.submit(greys[2:4], greys[3:5], 20.0)]
        for future in doomed:
            with pytest.raises(SolverDied, match=r"the solver process died \(exit code -9\)"):
                future.result()
        assert int(marker.read_text()) == dying.pid and dying.exitcode == -9
        assert np.array_equal(solver.batch(greys[2:4], greys[3:5], 20.0), content(greys[2:4], greys[3:5]))
        assert solver.proc is not dying and solver.proc.is_alive() and solver.deaths == 1
    finally:
        solver.close()


def test_the_engine_routes_every_flow_of_the_ring_to_its_video_and_frame(tmp_path, monkeypatch):
    """Six videos of two frame sizes, flow and warped flow (float first passes, quantised second
    passes, through one ring), in batches of 3 that span videos, two decoding workers: the store
    equals a run without the ring, one pair at a time, byte for byte."""
    videos = link_videos(tmp_path / "videos", CLIPS)
    from tsn_prep.extraction.warp import WarpParams

    params = dataclasses.replace(PARAMS, modalities=("flow", "warped_flow"),
                                 warp=WarpParams(detector="none", min_pairs=8, min_inliers=80))
    rings = []

    def make(gpu):
        rings.append(RingSolver(partial(make_flow_fn, TINY, None, "torch", "tvl1")))
        return rings[-1]

    ref = run_extraction(videos, tmp_path / "ref", params, dataclasses.replace(PLAN, batch_pairs=1, workers=0),
                         progress=False)
    assert (ref.done, ref.pairs, ref.failed) == (6, 30, [])
    use(monkeypatch, make)
    got = run_extraction(videos, tmp_path / "ring", params, dataclasses.replace(PLAN, batch_pairs=3, workers=2),
                         progress=False)
    assert (got.done, got.pairs, got.failed) == (6, 30, [])
    assert len(rings) == 1 and rings[0].stats["batches"] >= 10  # 30 first passes, in threes, and second passes
    assert rings[0].proc.exitcode == 0  # ended with the run
    assert snapshot(tmp_path / "ring") == snapshot(tmp_path / "ref")


def test_a_solver_child_killed_mid_run_fails_only_its_batch(tmp_path, monkeypatch, capsys):
    """The child SIGKILLs itself in its 3rd batch (the 4th waits in the other slot): those pairs
    are solved again one at a time by a new child, and the store equals a run with the same solver
    in the engine's thread. With batches of one pair, the killed pair fails its video clearly;
    the others are stored, and a re-run completes the store."""
    videos = link_videos(tmp_path / "videos", CLIPS)
    plan = dataclasses.replace(PLAN, batch_pairs=4, workers=2)
    use(monkeypatch, lambda gpu: ContentSolver())
    ref = run_extraction(videos, tmp_path / "ref", PARAMS, plan, progress=False)
    assert (ref.done, ref.pairs) == (6, 30)

    marker = tmp_path / "killed"
    rings = []
    use(monkeypatch, lambda gpu: rings.append(RingSolver(partial(ContentSolver, 3, str(marker)))) or rings[-1])
    got = run_extraction(videos, tmp_path / "ring", PARAMS, plan, progress=False)
    assert marker.exists() and rings[0].deaths == 1
    assert (got.done, got.pairs, got.failed) == (6, 30, [])
    err = capsys.readouterr().err
    assert "failed on cpu (SolverDied: the solver process died (exit code -9)); solved them one at a time" in err
    assert snapshot(tmp_path / "ring") == snapshot(tmp_path / "ref")

    marker.unlink()
    one = dataclasses.replace(plan, batch_pairs=1)
    got = run_extraction(videos, tmp_path / "ones", PARAMS, one, progress=False)
    died = "unexpected SolverDied: the solver process died (exit code -9)"
    assert got.done == 5 and [e for _, e in got.failed] == [died]
    (failure,) = Store(tmp_path / "ones").failures()
    again = run_extraction(videos, tmp_path / "ones", PARAMS, one, progress=False)  # marker there: no kill
    assert (again.done, again.failed) == (1, [])
    assert snapshot(tmp_path / "ones")[0] == snapshot(tmp_path / "ref")[0]
    assert failure.error == died
    assert Store(tmp_path / "ones").failures() == []  # the re-run stored it, and forgot the failure


RUN = """
import sys
from functools import partial
from pathlib import Path
from tsn_prep.extraction import scheduler
from tsn_prep.extraction.run import run_extraction
from tsn_prep.extraction import solver_ring
from tsn_prep.extraction.solver_ring import RingSolver
from tests.test_solver_ring import PARAMS, PLAN, ContentSolver

scheduler.solvers = lambda params, plan: ((None,), lambda gpu: RingSolver(partial(ContentSolver)))
run_extraction(Path(sys.argv[1]), Path(sys.argv[2]), PARAMS, PLAN.__class__(backend="torch", workers=1,
               batch_pairs=3), progress=False)
"""

NAMES = {"0_arm.mp4": "armwrestling_kinetics.mp4", "1_car.mp4": "carphone.mp4",
         "2_eye.avi": "eyemakeup_ucf101like.avi", "3_pool.mp4": "poolcleaning.mp4"}


def test_sigkill_of_a_run_with_the_ring_then_rerun_equals_an_uninterrupted_run(tmp_path):
    """One decoding worker takes the videos in sorted order; the third is a named pipe, so the run
    commits the first two and waits. SIGKILL: its solver child and decoding worker die with it, the
    store holds exactly the two whole videos, and a re-run finishes it as an uninterrupted run
    does (all with the ring)."""
    from .test_engine import _descendants, _holders

    def start(videos, out):
        return subprocess.Popen([sys.executable, "-c", RUN, str(videos), str(out)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ref = tmp_path / "ref"
    with killed_after(start(link_videos(tmp_path / "ref_videos", NAMES), ref)) as proc:
        assert proc.wait(timeout=GUARD) == 0
    videos = link_videos(tmp_path / "videos", NAMES)
    pipe = videos / "2_eye.avi"
    make_pipe(pipe)
    out = tmp_path / "out"
    with killed_after(start(videos, out)) as proc:
        writer = open_pipe_writer(pipe, proc)
        wait_until(lambda: committed_ids(out) == ["0_arm", "1_car"], lambda: committed_ids(out), proc, poll=0.05)
        helpers = _descendants(proc.pid)
        assert len(helpers) >= 2  # the decoding worker and the solver child at least
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not helpers & {int(p) for p in os.listdir("/proc") if p.isdigit()},
                   "a helper process outlived the killed run", poll=0.05)
        assert not _holders(pipe)
        os.close(writer)
    assert proc.returncode == -signal.SIGKILL
    assert committed_ids(out) == ["0_arm", "1_car"] and verify_store(Store(out)) == []

    pipe.unlink()
    pipe.symlink_to(VIDEOS / NAMES["2_eye.avi"])
    with killed_after(start(videos, out)) as proc:
        assert proc.wait(timeout=GUARD) == 0
    got, want = snapshot(out), snapshot(ref)
    assert got[0] == want[0]
    strip = lambda meta: {k: dict(m, source=os.path.basename(m["source"])) for k, m in meta.items()}  # noqa: E731
    assert strip(got[1]) == strip(want[1])
