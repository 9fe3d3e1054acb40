"""Kill extraction with SIGKILL at any moment, re-run: the same store as an uninterrupted run."""
import signal
import subprocess
import sys
import time

from tsn_prep.store import Store
from tsn_prep.report import verify_store

from .conftest import cli_subprocess, link_videos

CLIPS = ["armwrestling_kinetics.mp4", "poolcleaning.mp4", "eyemakeup_ucf101like.avi", "carphone.mp4"]


def start(videos, out):
    return subprocess.Popen(
        [sys.executable, "-m", "tsn_prep.cli", "extract-frames", str(videos), str(out),
         "--max-frames", "60", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def complete(out):
    try:
        return len(Store(out).index)
    except Exception:  # not created yet
        return 0


def snapshot(out):
    s = Store(out)
    images = {(vid, ch, i): data for _, vid, ch, i, data in s.iter_images()}
    counts = {k: e.meta["count"] for k, e in s.index.items()}
    return counts, images


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    videos = link_videos(tmp_path / "videos", {f"c{k}/{i}_{clip}": clip
                                               for k in range(3) for i, clip in enumerate(CLIPS)})
    n = 12
    ref = tmp_path / "ref"
    assert cli_subprocess("extract-frames", videos, ref, "--max-frames", 60, "--quiet").returncode == 0

    out = tmp_path / "out"
    partial = []
    for wait_for in (2, 6):  # kill once 2, then 6, videos are committed: mid-run, between or in writes
        proc = start(videos, out)
        deadline = time.time() + 120
        while complete(out) < wait_for and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        done = complete(out)
        partial.append(done)
        assert verify_store(Store(out)) == []  # whatever is there is whole
    assert 0 < partial[0] < n and partial[0] <= partial[1] < n

    r = cli_subprocess("extract-frames", videos, out, "--max-frames", 60, "--quiet")
    assert r.returncode == 0
    assert f"{n - partial[1]} extracted, {partial[1]} already complete" in r.stderr
    assert snapshot(out) == snapshot(ref)


def test_ctrl_c_says_how_to_resume(tmp_path):
    videos = link_videos(tmp_path / "videos", {f"{i}_{clip}": clip for i, clip in enumerate(CLIPS * 2)})
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsn_prep.cli", "extract-frames", str(videos), str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while complete(out) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished videos are safe" in err and "Traceback" not in err
    done = complete(out)
    assert 0 < done < 8 and verify_store(Store(out)) == []
