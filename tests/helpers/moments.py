"""Run a tsn command (``python tests/helpers/moments.py tsn_prep.cli ARGS...``) that marks chosen
moments of its work and holds at one of them, so that a test can send a signal exactly there.

``TSN_MOMENTS`` is a folder: at each moment the run creates the file ``<moment>.<n>`` (its n-th
occurrence, from 1). ``TSN_HOLD=<moment>[:<n>]`` makes the run wait at the n-th occurrence (default
the first) until a signal ends it; with ``TSN_HOLD_ONCE=<file>``, only in the run that creates the
file. The moments:

- ``start``: extraction begins, before the first video is decoded (in ``run_extraction``);
- ``frames``: the run has received frames of a video it has not finished (mid-video);
- ``solve``: a solver thread is inside native code: the pair's TV-L1 solve, repeated for two
  seconds (not held there: the solves just last), then the pair's own;
- ``write``: inside the LMDB transaction that stores a video, after its puts, before the commit;
- ``test``: ``tsn-train test`` is about to load its checkpoint and store and score;
- ``step``: ``tsn-train fit`` has logged a training step (``--log-every 1``: every step);
- ``verify``: ``tsn-prep verify`` (one process) is about to check a range of a shard;
- ``predict``: ``tsn-train predict`` is about to score a video (its streams loaded).

The hooks wrap real functions; nothing else changes. Spawned helper processes import this file as
their main module, so the hooks exist there too (none of them is used there).
"""
from __future__ import annotations

import os
import runpy
import sys
import time

MARKS = os.environ.get("TSN_MOMENTS")
HOLD, _, NTH = os.environ.get("TSN_HOLD", "").partition(":")
NTH = int(NTH or 1)
ONCE = os.environ.get("TSN_HOLD_ONCE")
_seen: dict[str, int] = {}


def mark(moment: str) -> bool:
    """Record an occurrence of ``moment``; whether the run is to hold at it."""
    _seen[moment] = n = _seen.get(moment, 0) + 1
    if MARKS:
        open(os.path.join(MARKS, f"{moment}.{n}"), "w").close()
    if moment != HOLD or n != NTH:
        return False
    if ONCE:  # hold in the first run only (a requeued job runs the same command again)
        try:
            os.close(os.open(ONCE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
    return True


def hold() -> None:
    deadline = time.monotonic() + 300  # only bounds a broken test
    while time.monotonic() < deadline:
        time.sleep(0.01)


def install() -> None:
    from tsn_prep import writer
    from tsn_prep.extraction import events, run, scheduler, solver

    extraction = run.run_extraction

    def run_extraction(*args, **kwargs):
        if mark("start"):
            hold()
        return extraction(*args, **kwargs)

    run.run_extraction = run_extraction

    message = scheduler.Scheduler._message

    def _message(self, msg, finished):
        message(self, msg, finished)
        if isinstance(msg, events.Frames) and msg.key in self.videos and mark("frames"):
            hold()

    scheduler.Scheduler._message = _message

    batch = solver.PairSolver.batch

    def solver_batch(self, prev, cur, bound=None):
        if mark("solve"):
            # two seconds of the pair's solve over and over: inside OpenCV's C++ code with the GIL
            # released, coming back for it every few milliseconds (a thread that comes back while
            # the interpreter finalises is what made C++ abort)
            until = time.monotonic() + 2
            while time.monotonic() < until:
                self.fn(prev[0], cur[0])
        return batch(self, prev, cur, bound)

    solver.PairSolver.batch = solver_batch

    write = writer.ShardWriter._write

    class HoldAfter(list):
        """The puts; iterating them to the end (inside the transaction) marks ``write``."""

        def __iter__(self):
            yield from list.__iter__(self)
            if mark("write"):
                hold()

    def _write(self, puts, deletes=()):
        if any(db == "images" for db, _, _ in puts):
            puts = HoldAfter(puts)
        return write(self, puts, deletes)

    writer.ShardWriter._write = _write

    from tsn_prep import verify

    check = verify._check

    def _check(*args, **kwargs):
        if mark("verify"):
            hold()
        return check(*args, **kwargs)

    verify._check = _check

    try:
        from tsn_train import fit, protocol
    except ImportError:
        return
    step = fit.RunLog.step

    def log_step(self, record):
        step(self, record)
        if mark("step"):
            hold()

    fit.RunLog.step = log_step

    from tsn_train import predict

    predict_video = predict.predict_video

    def _predict_video(*args, **kwargs):
        if mark("predict"):
            hold()
        return predict_video(*args, **kwargs)

    predict.predict_video = _predict_video

    run_test = protocol.run_test

    def _run_test(*args, **kwargs):
        if mark("test"):
            hold()
        return run_test(*args, **kwargs)

    protocol.run_test = _run_test


install()

if __name__ == "__main__":
    module = sys.argv.pop(1)
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
