import numpy as np
import pytest
import torch

from tsn_prep.extraction.results import encode_flow
from tsn_core.quantize import dequantize, quantize, quantize_tensor

from .conftest import VIDEOS, decode, read_frames

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            quantize(np.zeros(3), bad)


def reference_level(v: np.float32, bound: float) -> int:
    """dense_flow / denseflow ``convertFlowToImage`` for one float32 value, written from its C:
    ``v > H ? 255 : v < L ? 0 : cvRound(255 * (v - L) / (H - L))`` in double, where cvRound rounds
    half to even, as Python's round() on a float does."""
    lo, hi = -float(bound), float(bound)
    x = float(v)
    if x > hi:
        return 255
    if x < lo:
        return 0
    return round(255 * (x - lo) / (hi - lo))


def exact_halves(bound: float, count: int) -> list[np.float32]:
    """float32 values whose level computes to exactly k + 0.5 in double (where half-up and
    half-to-even disagree for even k), found by walking float32 neighbours of each k + 0.5."""
    found = []
    for k in range(0, 255):
        target = (k + 0.5) * 2 * bound / 255 - bound
        v = np.float32(target)
        for _ in range(64):
            level = 255 * (float(v) + bound) / (2 * bound)
            if level == k + 0.5:
                found.append(v)
                break
            v = np.nextafter(v, np.float32(np.inf) if level < k + 0.5 else np.float32(-np.inf))
        if len(found) == count:
            break
    return found


@pytest.mark.parametrize("bound", [20.0, 25.5, 15])
def test_bit_exact_with_the_reference_on_edge_values(bound):
    tiny = np.float32(1e-30)
    step = 2 * bound / 255
    edges = [0.0, -0.0, tiny, -tiny, np.float32(-1e-6), np.float32(1e-6), bound, -bound,
             np.nextafter(np.float32(bound), np.float32(0)), np.nextafter(np.float32(-bound), np.float32(0)),
             np.nextafter(np.float32(bound), np.float32(np.inf)), 1e30, -1e30, np.inf, -np.inf]
    # just below and above every level boundary
    for k in range(255):
        mid = np.float32((k + 0.5) * step - bound)
        edges += [np.nextafter(mid, np.float32(-np.inf)), mid, np.nextafter(mid, np.float32(np.inf))]
    halves = exact_halves(bound, 40)
    values = np.array(edges + halves, dtype=np.float32)
    expected = [reference_level(v, bound) for v in values]
    assert quantize(values, bound).tolist() == expected
    for device in DEVICES:  # the solver's twin, on its device: the same bytes
        assert quantize_tensor(torch.from_numpy(values).to(device), bound).cpu().tolist() == expected
    # the exact halves really are halves and really go to even: half-up would differ on them
    if bound == 25.5:  # 255 (v + 25.5) / 51 = 5 v + 127.5: every integer v is an exact half
        assert quantize(np.array([1.0, -1.0, 3.0, 2.0], np.float32), bound).tolist() == [132, 122, 142, 138]
    assert halves, "no exact halves found"
    half_up = np.floor(255 * (np.asarray(halves, np.float64) + bound) / (2 * bound) + 0.5)
    assert (half_up != quantize(np.array(halves), bound)).any()


def test_bit_exact_with_the_reference_on_real_flow():
    import cv2

    a, b = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in read_frames(VIDEOS / "carphone.mp4", 2))
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None).ravel()
    expected = np.array([reference_level(v, 20.0) for v in flow])
    assert np.array_equal(quantize(flow, 20.0), expected)
    for device in DEVICES:
        assert np.array_equal(quantize_tensor(torch.from_numpy(flow).to(device)).cpu().numpy(), expected)


def test_nan_is_zero_motion_and_the_bound_is_checked_in_both():
    values = np.array([np.nan, 0.0], np.float32)
    assert quantize(values).tolist() == quantize_tensor(torch.from_numpy(values)).tolist() == [128, 128]
    with pytest.raises(ValueError):
        quantize_tensor(torch.zeros(3), 0)


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
