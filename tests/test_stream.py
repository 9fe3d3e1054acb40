"""``tsn-train stream``: update points and window sampling pinned exactly, a file read in lockstep
scored exactly as the frames say, a real-time run that never falls behind, Ctrl-C and bad input."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import (CLIPS, GUARD, TRAIN, VIDEOS, count_frames, killed_after, read_frames,
                            start_cli, train_cli)
from tests.helpers.synthetic_models import random_checkpoint
from tsn_train import checkpoint
from tsn_train.export import Deployable
from tsn_train.stream import plan_update, window_snippets
from tsn_train.transforms import EvalCrops

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP = VIDEOS / "carphone.mp4"   # 120 frames at 29.97 fps, 176x144: 4 s


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """An rgb and an rgbdiff ResNet-18 stream (untrained, scores far from zero), 112x84 frames."""
    root = tmp_path_factory.mktemp("stream")
    paths = root / "rgb.pt", root / "rgbdiff.pt"
    for p, modality in zip(paths, ("rgb", "rgbdiff")):
        random_checkpoint(p, "resnet18", modality, CLIPS)
    return paths


def test_plan_update_takes_the_latest_point_and_counts_the_rest():
    assert plan_update(1, 0.49, 0.5) == (0, 0)        # not reached yet
    assert plan_update(1, 0.5, 0.5) == (1, 0)         # exactly at the point
    assert plan_update(1, 1.73, 0.5) == (3, 2)        # scoring fell behind: points 1 and 2 skipped
    assert plan_update(4, 1.99, 0.5) == (0, 0)
    assert plan_update(3, 0.3, 0.1) == (3, 0)         # 0.3 / 0.1 = 2.9999999999999996 in floats
    assert plan_update(1, 100 / 29.97, 1 / 29.97) == (100, 99)


def test_window_snippets_are_segment_centres_centre_cropped():
    # frame i is uniformly i: the picked frames can be read back from the pixels
    frames = [np.full((84, 112, 3), i, np.uint8) for i in range(60)]
    crop = EvalCrops(64, 73, 1, False)
    x = window_snippets(frames, 6, 3, crop)
    assert x.shape == (1, 3, 6, 64, 64, 3) and x.dtype == np.uint8
    # starts: P = 60 - 6 + 1 = 55 positions, centres (2k+1)*55//6 = 9, 27, 45
    want = [[s + i for i in range(6)] for s in (9, 27, 45)]
    assert x[0, :, :, 0, 0, 0].tolist() == want
    assert (x == x[..., :1, :1, :1]).all()            # each frame still uniform after crop+resize
    short = window_snippets(frames[:4], 6, 3, crop)   # fewer frames than a snippet: clamped
    assert short[0, :, :, 0, 0, 0].tolist() == [[0, 1, 2, 3, 3, 3]] * 3


def expected_probs(pair, frames: list[np.ndarray], weights=(1.0, 1.0)) -> np.ndarray:
    fused = 0.0
    for path, w in zip(pair, weights):
        ckpt = checkpoint.load(path)
        prep = ckpt.preprocessing
        length = 6 if prep.modality == "rgbdiff" else 1
        x = window_snippets(frames, length, 3, EvalCrops(prep.input_size, prep.scale_size, 1, False))
        with torch.no_grad():
            scores = Deployable(checkpoint.model_from_checkpoint(ckpt), prep)(torch.from_numpy(x))
        fused = fused + w * torch.softmax(scores, 1)[0].numpy()
    return fused / sum(weights)


def run_lines(output: str) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert "summary" in lines[-1]
    return lines[:-1], lines[-1]["summary"]


def test_lockstep_file_scores_every_update_from_its_window(pair, tmp_path):
    out = tmp_path / "annotated.mp4"
    result = train_cli("stream", "--checkpoint", pair[0], "--checkpoint", pair[1], "--weights", "1,1.5",
                       "--window", "1.0", "--every", "0.5", "--no-realtime", "--out", out, CLIP)
    updates, summary = run_lines(result.output)
    cap = cv2.VideoCapture(str(CLIP))
    fps, count = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    last = (count - 1) / fps
    n = math.floor(last / 0.5 + 1e-9)
    assert summary["updates"] == len(updates) == n == 7 and summary["skipped"] == 0
    assert summary["frames"] == count
    frames = read_frames(CLIP, count, size=(112, 84))
    classes = list(CLIPS)
    for k, u in enumerate(updates, 1):
        due = math.ceil(k * 0.5 * fps - 1e-6)          # the first frame at or past k * 0.5 s
        assert u["frame"] == due and u["skipped"] == 0
        assert u["time"] == pytest.approx(due / fps, abs=1e-3)
        window = [f for i, f in enumerate(frames) if due / fps - 1.0 < i / fps <= due / fps]
        want = expected_probs(pair, window, (1.0, 1.5))
        got = {t["class"]: t["probability"] for t in u["top"]}
        assert [t["class"] for t in u["top"]] == [classes[i] for i in np.argsort(-want, kind="stable")]
        for c, p in got.items():
            assert p == pytest.approx(want[classes.index(c)], abs=2e-5)
    # the annotated video: every decoded frame, the source's size
    cap = cv2.VideoCapture(str(out))
    written = 0
    while cap.read()[0]:
        written += 1
    assert written == count and (cap.get(3), cap.get(4)) == (176, 144)
    cap.release()


class SlowScorer:
    """The real scorer, made slower than the source by a fixed wait per update."""

    def __init__(self, scorer, wait: float):
        self.scorer, self.wait, self.sizes = scorer, wait, scorer.sizes

    def __call__(self, window):
        time.sleep(self.wait)
        return self.scorer(window)


def test_realtime_never_falls_behind(pair, tmp_path):
    from tsn_train.predict import load_streams
    from tsn_train.stream import Scorer, run_stream

    # the clip's first 2.5 s (75 frames at 30 fps) as a file of its own
    source = tmp_path / "short.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (176, 144))
    for frame in read_frames(CLIP, 75):
        writer.write(frame)
    writer.release()
    streams = load_streams(list(pair), None, torch.device("cpu"))
    # updates every 0.1 s of video but each takes at least 0.4 s: most points must be skipped
    scorer = SlowScorer(Scorer(streams), 0.4)
    updates = []
    summary = run_stream(str(source), scorer, list(CLIPS), 1.0, 0.1, realtime=True,
                         emit=updates.append)
    points = math.floor(summary.source_seconds / 0.1 + 1e-9)
    # timing decides which points are scored; whatever it is, every point is scored or counted
    assert summary.updates + summary.skipped == points == 24   # last frame at 74 / 30 s
    assert summary.skipped >= points // 2 and summary.updates == len(updates) >= 2
    assert sum(u["skipped"] for u in updates) == summary.skipped
    assert summary.frames == 75
    times = [u["time"] for u in updates]
    assert times == sorted(times)
    # played at the frame rate: the run lasts at least the clip
    assert summary.wall_seconds >= summary.source_seconds


def test_ctrl_c_prints_a_summary_and_closes_the_video(pair, tmp_path):
    out = tmp_path / "annotated.mp4"
    with killed_after(start_cli("stream", "--checkpoint", pair[0], "--every", "0.2", "--threads", "1",
                                "--out", out, CLIP, module=TRAIN, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)) as proc:
        first = json.loads(proc.stdout.readline())  # an update has been scored: now interrupt
        assert first["frame"] >= 1
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 130, err  # the interrupt contract of every command (issue 38)
    summary = json.loads(rest.splitlines()[-1])["summary"]
    assert summary["interrupted"] and summary["updates"] >= 1 and "Traceback" not in err
    assert err.splitlines() == [f"interrupted (Ctrl-C): stopped: {summary['updates']} updates, "
                                f"{summary['skipped']} skipped, {summary['frames']} frames decoded, "
                                f"mean latency {summary['mean_latency_ms']} ms (max "
                                f"{summary['max_latency_ms']} ms); annotated video: {out} (complete)"]
    written = count_frames(out)  # finalised: readable, as many frames as were decoded
    assert written == summary["frames"] >= 1


def test_bad_inputs_are_named(pair, tmp_path):
    missing = tmp_path / "nope.mp4"
    result = train_cli("stream", "--checkpoint", pair[0], missing, expect=1)
    assert str(missing) in result.output and "Traceback" not in result.output
    flow = tmp_path / "flow.pt"
    random_checkpoint(flow, "resnet18", "flow", CLIPS)
    result = train_cli("stream", "--checkpoint", pair[0], "--checkpoint", flow, CLIP, expect=1)
    assert "flow stream needs optical flow" in result.output
    result = train_cli("stream", "--checkpoint", pair[0], "--out", tmp_path / "no" / "dir" / "a.mp4",
                       CLIP, expect=1)
    assert "a.mp4" in result.output
    weighted = tmp_path / "weighted.pt"  # its consensus has one weight per training segment
    random_checkpoint(weighted, "resnet18", "rgb", CLIPS, consensus="weighted")
    result = train_cli("stream", "--checkpoint", weighted, "--segments", "5", CLIP, expect=1)
    assert "weighted-consensus stream scores exactly its 3 training segments" in result.output
