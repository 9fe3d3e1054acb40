"""Broken inputs: one clear line per file, recorded in the store, the rest finishes, exit code 1."""
import json
import shutil

import cv2
import numpy as np
import pytest

from tsn_core.store import Store

from .conftest import VIDEOS, cli, cli_subprocess


def write_video(path, n_frames):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(n_frames):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()


@pytest.fixture
def bad_dir(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    rng = np.random.default_rng(0)
    (d / "garbage.mp4").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (d / "notvideo.avi").write_text("this is a text file\n")
    (d / "empty.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes((VIDEOS / "poolcleaning.mp4").read_bytes()[:300_000])
    write_video(d / "one_frame.avi", 1)
    write_video(d / "zero_frames.avi", 0)
    shutil.copy(VIDEOS / "carphone.mp4", d / "dup.mp4")
    shutil.copy(VIDEOS / "carphone.mp4", d / "dup.avi")
    shutil.copy(VIDEOS / "carphone.mp4", d / "good.mp4")
    shutil.copy(VIDEOS / "tree.avi", d / "good2.avi")
    return d


EXPECTED = {
    "garbage.mp4": "not a readable video",
    "notvideo.avi": "not a readable video",
    "empty.mp4": "empty file",
    "truncated.mp4": "not a readable video",
    "one_frame.avi": "has 1 frame; at least 2",
    "zero_frames.avi": "no frames could be decoded",
    "dup.mp4": "duplicate video id 'dup'",
    "dup.avi": "duplicate video id 'dup'",
}


def test_each_bad_file_is_named_recorded_and_the_rest_finishes(bad_dir, tmp_path):
    """A real process: FFmpeg's own messages go to file descriptor 2 and must not appear."""
    out = tmp_path / "out"
    r = cli_subprocess("extract-frames", bad_dir, out, "--max-frames", 4, "--quiet")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(EXPECTED)
    for name, reason in EXPECTED.items():
        line = next(e for e in errors if e.startswith(f"error: {bad_dir / name}: "))
        assert reason in line, line
    assert "2 extracted, 0 already complete, 8 failed, of 10 videos" in r.stderr
    assert not [l for l in r.stderr.splitlines() if l and not l.startswith(("error: ", "warning: "))
                and "extracted" not in l and "failed;" not in l]  # nothing else, e.g. FFmpeg noise

    s = Store(out)
    assert s.videos("rgb") == ["good", "good2"]
    failures = {f["video_id"]: f for f in json.loads(cli("info", out, "--json").stdout)["failures"]}
    assert set(failures) == {"garbage", "notvideo", "empty", "truncated", "one_frame", "zero_frames", "dup"}
    assert "not a readable video" in failures["garbage"]["error"]

    # fix one, re-run: the good ones are skipped, the fixed one is extracted, its failure forgotten
    (bad_dir / "garbage.mp4").unlink()
    shutil.copy(VIDEOS / "carphone.mp4", bad_dir / "garbage.mp4")
    r = cli("extract-frames", bad_dir, out, "--max-frames", 4, "--quiet", expect=1)
    assert "1 extracted, 2 already complete, 7 failed" in r.stderr
    s = Store(out)
    assert s.videos("rgb") == ["garbage", "good", "good2"]
    assert "garbage" not in {f.video_id for f in s.failures()}


def test_flow_of_a_one_frame_video_fails_cleanly(bad_dir, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{bad_dir / 'one_frame.avi'}\n{tmp_path / 'missing.mp4'}\n{bad_dir / 'good.mp4'}\n"
                   f"# a comment\n\n{bad_dir / 'good.mp4'}\n{tmp_path}\n")
    r = cli("extract-flow", lst, tmp_path / "out", "--max-frames", 2, "--size", "64x48", "--quiet",
            expect=1)
    assert f"error: {bad_dir / 'one_frame.avi'}: has 1 frame" in r.stderr
    assert f"error: {tmp_path / 'missing.mp4'}: no such file" in r.stderr
    assert f"error: {tmp_path}: is a directory" in r.stderr
    assert "duplicate" not in r.stderr  # the same file listed twice is one video
    assert Store(tmp_path / "out").videos("flow") == ["videos/good"]  # ids relative to the list's folder


def test_unwritable_output_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("extract-frames", VIDEOS, blocker / "out", "--quiet", expect=1)
    assert r.stderr.startswith(f"Error: {blocker / 'out'}/shard-00000-of-00001: cannot write the store here")


def test_missing_inputs_are_usage_errors(tmp_path):
    r = cli("extract-frames", tmp_path / "nope", tmp_path / "out", expect=2)
    assert f"Path '{tmp_path / 'nope'}' does not exist" in r.stderr
    r = cli("info", tmp_path, expect=1)
    assert r.stderr == f"Error: {tmp_path}: not a tsn store (no shard-*-of-* directories)\n"
