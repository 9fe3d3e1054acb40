import numpy as np
import pytest

from tsn_prep.extract import encode_flow
from tsn_prep.quantize import dequantize, quantize

from .conftest import VIDEOS, decode, read_frames


def test_reference_mapping_points():
    q = quantize(np.array([-20.0, 0.0, 20.0, -25.0, 31.0, 10.0]), bound=20)
    # zero motion sits at 127.5 and rounds up to 128 (mmaction2's flooring script gives 127)
    assert q.tolist() == [0, 128, 255, 0, 255, 191]
    assert q.dtype == np.uint8


def test_every_level_is_reachable_and_inverts():
    levels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(quantize(dequantize(levels, 20), 20), levels)
    assert np.array_equal(quantize(dequantize(levels, 7.5), 7.5), levels)


@pytest.mark.parametrize("bound", [20.0, 5.0])
def test_round_trip_within_half_a_step(bound):
    rng = np.random.default_rng(0)
    v = rng.uniform(-bound, bound, size=(100, 100, 2)).astype(np.float32)
    err = np.abs(dequantize(quantize(v, bound), bound) - v)
    half_step = bound / 255
    assert err.max() <= half_step + 1e-5
    # uniform values: the mean error is a quarter step (measured 0.995 of it), so they really were
    # rounded to the nearest level, not truncated (half a step) or left alone (0)
    assert err.mean() == pytest.approx(half_step / 2, rel=0.02)


def test_bound_must_be_positive():
    with pytest.raises(ValueError):
        quantize(np.zeros(3), 0)


def test_jpeg_round_trip_of_real_flow():
    """Quantised TV-L1 flow of a real pair survives JPEG within half a step plus JPEG's error."""
    import cv2

    a, b = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in read_frames(VIDEOS / "carphone.mp4", 2))
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    bound = 20.0
    x, y = encode_flow(flow, bound, quality=95)
    back = np.stack([dequantize(decode(x), bound), dequantize(decode(y), bound)], axis=-1)
    assert back.shape == flow.shape
    err = np.abs(back - np.clip(flow, -bound, bound))
    step = 2 * bound / 255
    # measured: 99th percentile 1.26 steps (0.197 px), mean 0.043 px
    assert np.percentile(err, 99) <= 1.5 * step
    assert err.mean() <= 0.05
    assert np.abs(flow).max() > 5  # real motion, not a near-zero field
