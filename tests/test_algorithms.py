"""--algorithm farneback|dis: the pipeline runs exactly OpenCV's algorithm, records it, and refuses
GPU settings that only TV-L1 has."""
import json

import cv2
import numpy as np
import pytest

from tsn_prep.extraction.backends import ALGORITHMS, BackendUnavailable, make_flow_fn
from tsn_prep.extraction.params import ExtractParams
from tsn_prep.extraction.results import encode_flow
from tsn_core.store import Store
from tsn_prep.video import VideoReader

from .conftest import DATA, VIDEOS, cli, link_videos

GROVE = DATA / "flow_gt" / "middlebury_grove3"
DIRECT = {
    "farneback": lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0),
    "dis": lambda a, b: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None),
}


def epe(flow, gt):
    return float(np.linalg.norm(flow - gt, axis=2).mean())


def test_grove3_flow_is_opencvs_and_ranks_as_published():
    a, b = (cv2.imread(str(GROVE / f"frame{i}.png"), cv2.IMREAD_GRAYSCALE) for i in (10, 11))
    gt = cv2.readOpticalFlow(str(GROVE / "grove3.flo"))
    errors = {}
    for name in ("farneback", "dis"):
        flow = make_flow_fn(algorithm=name)(a, b)
        np.testing.assert_array_equal(flow, DIRECT[name](a, b))
        errors[name] = epe(flow, gt)
    # The data's reference figures: DIS-medium 0.853, Farneback 1.333, zero flow 3.913 px.
    assert errors["dis"] < errors["farneback"] < epe(np.zeros_like(gt), gt)
    assert errors["dis"] == pytest.approx(0.853, abs=0.01)
    assert errors["farneback"] == pytest.approx(1.333, abs=0.01)


@pytest.mark.parametrize("algorithm", ["dis", "farneback"])
def test_extract_flow_stores_that_algorithms_flow_and_records_it(tmp_path, algorithm):
    videos = link_videos(tmp_path / "videos", {"clip.mp4": "carphone.mp4"})
    out = tmp_path / "out"
    cli("extract-flow", videos, out, "--algorithm", algorithm, "--size", "96x80", "--max-frames", "4",
        "--modality", "flow", "--modality", "warped_flow", "--quiet")
    store = Store(out)
    meta = store.entry("clip", "flow").meta
    params = meta.parameters
    assert params["algorithm"] == algorithm and params["flow_backend"] == "opencv"
    assert "tvl1" not in params and params[algorithm]
    assert store.entry("clip", "warped_flow").meta.parameters["algorithm"] == algorithm
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
            for f in VideoReader(VIDEOS / "carphone.mp4", (96, 80), None, 4).frames()]
    for i in range(3):
        x, y = encode_flow(DIRECT[algorithm](grey[i], grey[i + 1]), 20.0, 95)
        assert (store.get("clip", "flow_x", i), store.get("clip", "flow_y", i)) == (x, y)
    info = json.loads(cli("info", out, "--json").output)
    assert info["modalities"]["flow"]["parameters"][0]["algorithm"] == algorithm
    # predict re-extracts a raw video with exactly the settings its training store recorded
    for modality in ("flow", "warped_flow"):
        recorded = dict(store.entry("clip", modality).meta.parameters, max_frames=None)
        assert ExtractParams.from_parameters(recorded, modality).parameters(modality) == recorded  # all frames


def test_tvl1_is_the_default_and_gpu_settings_are_refused_for_the_others(tmp_path):
    assert list(ALGORITHMS)[0] == "tvl1"
    with pytest.raises(BackendUnavailable, match="--algorithm dis runs on the CPU through OpenCV only"):
        make_flow_fn(gpu=0, algorithm="dis")
    with pytest.raises(BackendUnavailable, match="--algorithm farneback runs on the CPU"):
        make_flow_fn(backend="torch", algorithm="farneback")
    videos = link_videos(tmp_path / "videos", {"clip.mp4": "carphone.mp4"})
    result = cli("extract-flow", videos, tmp_path / "out", "--algorithm", "farneback", "--gpu", "0",
                 expect=1)
    assert "--algorithm farneback runs on the CPU through OpenCV only" in result.output
    assert not (tmp_path / "out").exists()
