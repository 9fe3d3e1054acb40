"""Interrupt extraction (SIGKILL, Ctrl-C) mid-run, re-run: the same store as an uninterrupted run.

No timing: the moment of interruption is fixed by a named pipe among the videos. With one worker the
videos are decoded one at a time in sorted order, so the run commits every video sorted before the
pipe and then blocks opening it. The test waits until the run has the pipe open (only then can it
open the write end without blocking), holds the write end open so that the run's reads keep
waiting, waits until exactly the earlier videos are in the store (the last of them may still be
being written when the worker reaches the pipe), interrupts, and closes the write end: the reads
see end-of-file and return.
"""
import errno
import os
import signal
import subprocess

from tsn_core.store import Store
from tsn_prep.verify import verify_store

from .conftest import (VIDEOS, cli, committed_ids, killed_after, link_videos, make_pipe, open_pipe_writer,
                       start_cli, wait_until)

CLIPS = ["armwrestling_kinetics.mp4", "poolcleaning.mp4", "eyemakeup_ucf101like.avi", "carphone.mp4"]
ARGS = ("--max-frames", "10", "--size", "112x84", "--quiet")


def start(videos, out, stderr=subprocess.DEVNULL):
    """The extraction started, SIGKILLed after the block."""
    return killed_after(start_cli("extract-frames", videos, out, *ARGS, stderr=stderr))


def unblock(path, clip):
    """Make ``path`` the real clip again."""
    path.unlink()
    path.symlink_to(VIDEOS / clip)


def release(fifo, proc):
    """Open and close the pipe's write end until ``proc`` exits: each open() of the reader returns
    and reads end-of-file."""

    def poke() -> bool:
        if proc.poll() is not None:
            return True
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:  # ENXIO: no reader has it open at this instant
            assert exc.errno == errno.ENXIO, exc
        return False

    wait_until(poke, "the interrupted run did not exit")
    proc.wait()


def snapshot(out):
    s = Store(out)
    images = {(vid, ch, i): data for _, vid, ch, i, data in s.iter_images()}
    counts = {k: e.meta.count for k, e in s.index.items()}
    return counts, images


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    names = {f"c{k}/{i}_{clip}": clip for k in range(3) for i, clip in enumerate(CLIPS)}
    videos = link_videos(tmp_path / "videos", names)
    ids = sorted(name.rsplit(".", 1)[0] for name in names)
    n = len(ids)
    ref = tmp_path / "ref"
    cli("extract-frames", videos, ref, *ARGS)

    out = tmp_path / "out"
    # Pipes at sorted positions 3 and 7: the first run stops after 2 videos, the second after 6.
    pipes = [videos / "c0" / f"2_{CLIPS[2]}", videos / "c1" / f"2_{CLIPS[2]}"]
    for p in pipes:
        make_pipe(p)
    for pipe, done in zip(pipes, (2, 6)):
        with start(videos, out) as proc:
            writer = open_pipe_writer(pipe, proc)  # the run is decoding the pipe, so it is past ids[:done]
            # the worker decodes ahead of the writes: the last video before the pipe may still be
            # on its way to the store, and none after it can be
            wait_until(lambda: committed_ids(out) == ids[:done], lambda: committed_ids(out), proc, poll=0.05)
            proc.send_signal(signal.SIGKILL)  # mid-run, in the middle of a video
            proc.wait()
            os.close(writer)
        assert proc.returncode == -signal.SIGKILL
        assert committed_ids(out) == ids[:done]
        assert verify_store(Store(out)) == []  # whatever is there is whole
        unblock(pipe, CLIPS[2])

    r = cli("extract-frames", videos, out, *ARGS)
    assert f"{n - 6} extracted, 6 already complete, 0 failed, of {n} videos" in r.stderr
    assert snapshot(out) == snapshot(ref)


def test_ctrl_c_says_how_to_resume(tmp_path):
    names = {f"{i}_{clip}": clip for i, clip in enumerate(CLIPS + CLIPS)}
    videos = link_videos(tmp_path / "videos", names)
    pipe = videos / f"2_{CLIPS[2]}"
    make_pipe(pipe)
    first = [f"0_{CLIPS[0][:-4]}", f"1_{CLIPS[1][:-4]}"]  # sorted before the pipe
    out = tmp_path / "out"
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err_file, start(videos, out, stderr=err_file) as proc:
        writer = open_pipe_writer(pipe, proc)
        wait_until(lambda: committed_ids(out) == first, lambda: committed_ids(out), proc, poll=0.05)
        proc.send_signal(signal.SIGINT)  # while the run is decoding the third video
        os.close(writer)  # its read() ends; Python raises KeyboardInterrupt on return
        release(pipe, proc)
    err = err_path.read_text()
    assert proc.returncode == 130, err
    assert (f"interrupted (Ctrl-C): finished videos are safe in {out}; re-run the same command to do the "
            "rest") in err
    assert "Traceback" not in err and " extracted, " not in err  # no summary of a finished run
    assert committed_ids(out) == first
    assert verify_store(Store(out)) == []
