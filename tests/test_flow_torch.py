"""The PyTorch TV-L1 (tsn_prep.flow_torch) against ground truth and against OpenCV, on real data."""
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from tsn_prep.flow import BACKENDS
from tsn_prep.tvl1_params import TVL1Params
from tsn_prep.flow_torch import TorchTVL1

from .conftest import VIDEOS
from .test_flow_accuracy import GROVE, OPENCV_EPE

CLIPS = ("armwrestling_kinetics.mp4", "carphone.mp4", "poolcleaning.mp4")
SIZE = (340, 256)  # (w, h), the usual TSN frame size
FIRST, PAIRS = 2, 2  # frames 2..4 of each clip: pairs (2, 3) and (3, 4)


def grey_frames(path, first, count, size=None):
    cap = cv2.VideoCapture(str(path))
    out = []
    try:
        while len(out) < first + count:
            ok, frame = cap.read()
            assert ok, f"{path}: could not read frame {len(out)}"
            if size is not None:
                frame = cv2.resize(frame, size)
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        cap.release()
    return out[first:]


@pytest.fixture(scope="module")
def tvl1():
    return TorchTVL1(TVL1Params(), "cpu")


@pytest.fixture(scope="module")
def pairs():
    """[(clip, prev, next)]: PAIRS consecutive pairs from each clip, at 340x256."""
    out = []
    for clip in CLIPS:
        frames = grey_frames(VIDEOS / clip, FIRST, PAIRS + 1, SIZE)
        out += [(clip, a, b) for a, b in zip(frames, frames[1:])]
    return out


@pytest.fixture(scope="module")
def singles(tvl1, pairs):
    """Our flow for each pair, one pair per call (the FlowFn interface)."""
    return [tvl1(a, b) for _, a, b in pairs]


def test_grove3_end_point_error_matches_opencv(tvl1):
    grey = [cv2.cvtColor(cv2.imread(str(GROVE / f"frame{i}.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
            for i in (10, 11)]
    gt = cv2.readOpticalFlow(str(GROVE / "grove3.flo"))  # Middlebury .flo
    known = (np.abs(gt) < 1e9).all(axis=2)
    flow = tvl1(*grey)
    assert flow.shape == (480, 640, 2) and flow.dtype == np.float32
    ours = float(np.linalg.norm(flow - gt, axis=2)[known].mean())
    assert abs(ours - OPENCV_EPE) <= 0.05 * OPENCV_EPE, ours


def test_real_clips_match_opencv_within_a_quarter_pixel(pairs, singles):
    ocv = cv2.optflow.DualTVL1OpticalFlow_create()
    diffs = {}
    for (clip, a, b), ours in zip(pairs, singles):
        assert ours.shape == (SIZE[1], SIZE[0], 2) and ours.dtype == np.float32
        ref = ocv.calc(a, b, None)
        diffs.setdefault(clip, []).append(float(np.linalg.norm(ours - ref, axis=2).mean()))
    assert all(d <= 0.25 for ds in diffs.values() for d in ds), diffs
    # and the clips do move (the comparison is not between two zero fields)
    assert max(np.linalg.norm(f, axis=2).mean() for f in singles) > 1.0


def test_batch_equals_one_at_a_time(tvl1, pairs, singles):
    # one pair from each clip: pairs that converge after different iteration counts
    pick = list(range(0, len(pairs), PAIRS))
    prev = np.stack([pairs[i][1] for i in pick])
    nxt = np.stack([pairs[i][2] for i in pick])
    batched = tvl1.batch(prev, nxt)
    assert batched.shape == (len(pick), SIZE[1], SIZE[0], 2) and batched.dtype == np.float32
    diff = max(float(np.abs(batched[k] - singles[i]).max()) for k, i in enumerate(pick))
    assert diff < 1e-3, diff
    # torch tensors in, same answer
    from_tensors = tvl1.batch(torch.from_numpy(prev), torch.from_numpy(nxt))
    assert np.abs(from_tensors - batched).max() < 1e-5


def test_registered_backend_and_lazy_import():
    fn = BACKENDS["torch"](TVL1Params(), None)
    assert isinstance(fn, TorchTVL1) and fn.device == torch.device("cpu")
    code = "import sys, tsn_prep.flow; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_torch_backend_matches_opencv_and_batching_changes_no_byte(tmp_path):
    from tsn_prep.quantize import dequantize
    from tsn_prep.store import Store

    from .conftest import cli, decode, link_videos

    videos = link_videos(tmp_path / "videos", {"carphone.mp4": "carphone.mp4"})
    runs = {"opencv": ["--backend", "opencv"], "torch1": ["--backend", "torch", "--batch-pairs", "1"],
            "torch4": ["--backend", "torch", "--batch-pairs", "4"]}  # 7 pairs: batches of 4 and 3
    for name, args in runs.items():
        cli("extract-flow", videos, tmp_path / name, "--size", "176x144", "--max-frames", "8",
            "--modality", "flow", "--modality", "warped_flow", *args)
    stores = {name: Store(tmp_path / name) for name in runs}
    assert stores["torch4"].entry("carphone", "flow").meta["parameters"]["flow_backend"] == "torch"
    assert stores["opencv"].entry("carphone", "flow").meta["parameters"]["flow_backend"] == "opencv"
    for i in range(7):
        for ch in ("flow_x", "flow_y", "warped_flow_x", "warped_flow_y"):
            assert stores["torch1"].get("carphone", ch, i) == stores["torch4"].get("carphone", ch, i)
        ours, ref = ([dequantize(decode(stores[n].get("carphone", ch, i))) for ch in ("flow_x", "flow_y")]
                     for n in ("torch4", "opencv"))
        assert np.hypot(ours[0] - ref[0], ours[1] - ref[1]).mean() <= 0.25
