"""TV-L1 through our extraction code against Middlebury Grove3 ground truth."""
from functools import lru_cache

import av
import cv2
import numpy as np
import pytest

from tsn_prep.extraction.backends import OpenCVTVL1
from tsn_prep.extraction.params import ExtractParams
from tsn_prep.extraction.plan import RunPlan
from tsn_prep.extraction.scheduler import Job, engine_results
from tsn_prep.extraction.solver import PairSolver
from tsn_core.video_files import VideoItem
from tsn_prep.video import VideoReader
from tsn_prep.extraction.tvl1_params import TVL1Params
from tsn_core.quantize import dequantize

from .conftest import DATA, decode

GROVE = DATA / "flow_gt" / "middlebury_grove3"


def epe(flow, gt):
    return float(np.linalg.norm(flow - gt, axis=2).mean())


@lru_cache(maxsize=None)
def grove3_opencv():
    """(grey frames, ground truth, OpenCV's TV-L1 flow with its defaults), computed once per
    session (test_flow_torch compares the PyTorch solver with the same OpenCV flow)."""
    grey = tuple(cv2.cvtColor(cv2.imread(str(GROVE / f"frame{i}.png"), cv2.IMREAD_COLOR),
                              cv2.COLOR_BGR2GRAY) for i in (10, 11))
    gt = cv2.readOpticalFlow(str(GROVE / "grove3.flo"))
    return grey, gt, cv2.optflow.DualTVL1OpticalFlow_create().calc(grey[0], grey[1], None)


@pytest.fixture(scope="module")
def grove():
    frames = [cv2.imread(str(GROVE / f"frame{i}.png"), cv2.IMREAD_COLOR) for i in (10, 11)]
    gt = cv2.readOpticalFlow(str(GROVE / "grove3.flo"))
    assert frames[0].shape[:2] == gt.shape[:2] == (480, 640)
    assert (np.abs(gt) < 1e9).all()  # Grove3 has no unknown pixels
    return frames, gt


@pytest.fixture(scope="module")
def extracted(grove, tmp_path_factory):
    """Grove3 as a lossless (FFV1) two-frame video through the extraction engine, keeping the
    float flow its solver computed."""
    frames, _ = grove
    path = tmp_path_factory.mktemp("grove") / "grove3.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "bgr0"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24").reformat(format="bgr0")))
        container.mux(stream.encode())
    tvl1 = OpenCVTVL1(TVL1Params())
    raw, fed = [], []

    def recording(a, b):
        fed.append((a, b))
        raw.append(tvl1(a, b))
        return raw[-1]

    params = ExtractParams(modalities=("flow",), size=None, bound=20.0, jpeg_quality=95)
    (result,) = engine_results([Job(VideoItem("grove3", path), params.modalities)], params,
                               RunPlan(workers=0), say=print, make_solver=lambda gpu: PairSolver(recording))
    assert result.error is None
    decoded = list(VideoReader(path).frames())
    assert all(np.array_equal(d, f) for d, f in zip(decoded, frames))  # lossless: Grove3's pixels
    return result.images["flow"], raw, result.meta["flow"].num_frames, fed


def test_pipeline_flow_is_opencvs_tvl1_on_grove3(grove, extracted):
    frames, gt = grove
    images, raw, n, fed = extracted
    assert n == 2 and len(images["flow_x"]) == len(images["flow_y"]) == 1 == len(raw)
    # the pipeline hands the solver the grey frames a direct call gets, with OpenCV's defaults
    grey, _, direct = grove3_opencv()
    assert all(np.array_equal(g, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)) for g, f in zip(grey, frames))
    assert np.array_equal(fed[0][0], grey[0]) and np.array_equal(fed[0][1], grey[1])
    assert raw[0].dtype == direct.dtype == np.float32
    assert np.array_equal(raw[0], direct)
    # and it is a good flow: TV-L1 with OpenCV's defaults is well under a pixel on Grove3
    # (0.757 px measured with OpenCV 5.0; zero motion would be 3.91 px)
    assert epe(raw[0], gt) < 0.8 < epe(np.zeros_like(gt), gt)


def test_quantisation_and_jpeg_cost_at_most_002_px(grove, extracted):
    _, gt = grove
    images, raw, _, _ = extracted
    stored = np.stack([dequantize(decode(images["flow_x"][0]), 20.0),
                       dequantize(decode(images["flow_y"][0]), 20.0)], axis=-1)
    assert stored.shape == gt.shape
    added = epe(stored, gt) - epe(raw[0], gt)
    # measured: 0.0189 px more end-point error against the ground truth (OpenCV 5.0, bound 20,
    # JPEG quality 95)
    assert 0 <= added <= 0.02, added
    # the stored flow is the computed flow to within the quantisation step (40/255 = 0.157 px):
    # measured 0.093 px mean distance (rounding to the step plus JPEG's own error)
    assert epe(stored, raw[0]) <= 0.1
