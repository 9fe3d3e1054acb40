"""Progress everywhere (tsn_core/progress.py): bars on a terminal only, counting frames and pairs
inside a video, and nothing but the summary in a log."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

from tsn_prep.extraction.params import ExtractParams
from tsn_prep.extraction.scheduler import extract_one
from tsn_core.video_files import VideoItem

from .conftest import VIDEOS, cli_argv, link_videos


def run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with stderr on a pseudo-terminal (stdout a pipe); its exit code and what the
    terminal received."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    received = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed: the run is over
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    return proc.wait(), received.decode("utf-8", "replace")


def test_extraction_counts_frames_and_pairs_inside_a_video():
    seen: dict[str, list[int]] = {"frames": [], "pairs": []}
    result = extract_one(VideoItem("tree", VIDEOS / "tree.avi"),
                         ExtractParams(modalities=("flow",), size=(64, 48), max_frames=40),
                         progress=lambda what, n: seen[what].append(n))
    assert result.error is None
    assert sum(seen["frames"]) == 40 and sum(seen["pairs"]) == 39
    assert len(seen["frames"]) == 2  # two messages of the decoding worker (32 + 8 frames)


def test_a_terminal_gets_the_bar_with_rates_and_a_log_the_summary_alone(tmp_path):
    videos = link_videos(tmp_path / "videos", {"tree.avi": "tree.avi", "car.mp4": "carphone.mp4"})
    args = ("extract-flow", videos, tmp_path / "tty", "--size", "64x48", "--max-frames", "12")
    code, screen = run_on_a_terminal(cli_argv(*args))
    assert code == 0, screen
    last = screen.replace("\r", "\n").split("videos: 100%")[-1]
    assert "2/2" in last and "frames 24 (" in last and "pairs 22 (" in last and "/s)" in last, screen
    assert "2 extracted, 0 already complete, 0 failed" in screen

    log = subprocess.run(cli_argv(*args[:2], tmp_path / "log", *args[3:]), capture_output=True, text=True)
    assert log.returncode == 0
    assert log.stderr.splitlines() == [
        f"2 extracted, 0 already complete, 0 failed, of 2 videos in this shard "
        f"({log.stderr.split('(')[1].split(')')[0]}) -> {tmp_path / 'log'}"]
    code, screen = run_on_a_terminal(cli_argv(*args[:2], tmp_path / "quiet", *args[3:], "--quiet"))
    assert code == 0 and "videos:" not in screen and "2 extracted" in screen


def test_verify_and_predict_bars_only_on_a_terminal(train_store, tmp_path):
    r = subprocess.run(cli_argv("verify", train_store), capture_output=True, text=True)
    assert r.returncode == 0 and "verify:" not in r.stderr and r.stderr == ""
    code, screen = run_on_a_terminal(cli_argv("verify", train_store))
    assert code == 0 and "verify: " in screen and "img" in screen
