"""Tests for tsn_prep.extraction.warp (camera-motion-compensated "warped" flow) on a real Kinetics frame."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import pytest

from tsn_prep.extraction.warp import (
    WarpedFlow,
    WarpParams,
    estimate_homography,
    match_features,
    track_corners,
    warp_to_previous,
)

from .conftest import VIDEOS, read_frames

VIDEO = VIDEOS / "armwrestling_kinetics.mp4"
MARGIN = 20  # px ignored at the border when comparing flow with the true motion field


def _apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    q = np.c_[pts, np.ones(len(pts))] @ H.T
    return q[:, :2] / q[:, 2:]


def _motion_field(H: np.ndarray, h: int, w: int) -> np.ndarray:
    """Displacement H x - x at every pixel, HxWx2 (dx, dy)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return (_apply_h(H, pts) - pts).reshape(h, w, 2)


def _mag(flow: np.ndarray) -> np.ndarray:
    return np.linalg.norm(flow, axis=2)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Frames 40 and 41 (1-based) of the clip, grey."""
    pair = read_frames(VIDEO, 2, first=39, grey=True)
    assert len(pair) == 2 and pair[0].shape == (256, 340)
    return pair


@pytest.fixture(scope="module")
def tvl1():
    tv = cv2.optflow.DualTVL1OpticalFlow_create()
    return lambda a, b: tv.calc(a, b, None)


@pytest.fixture(scope="module")
def camera_pair(frames):
    """A real frame and the same frame under a known camera motion (shift, 1 deg, 1% zoom)."""
    prev = frames[0]
    h, w = prev.shape
    centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)
    a, s = np.deg2rad(1.0), 1.01
    rot_zoom = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0],
                         [0, 0, 1]])
    shift = np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]])
    H_true = shift @ np.linalg.inv(centre) @ rot_zoom @ centre
    # Reflected rather than black borders, so TV-L1 is not pulled by an artificial edge.
    cur = cv2.warpPerspective(prev, H_true, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    return prev, cur, H_true


@pytest.fixture(scope="module")
def camera_flows(camera_pair, tvl1):
    """Plain TV-L1 flow and WarpedFlow output for the camera pair; counts TV-L1 calls."""
    prev, cur, _ = camera_pair
    calls = []

    def counting(a, b):
        calls.append(1)
        return tvl1(a, b)

    flow = counting(prev, cur)
    warped_flow, H = WarpedFlow(counting, WarpParams())(prev, cur, flow=flow)
    return flow, warped_flow, H, len(calls)


# --- camera motion on a real frame -------------------------------------------------------------

def test_plain_flow_matches_homography_motion_field(camera_pair, camera_flows):
    prev, _, H_true = camera_pair
    flow = camera_flows[0]
    h, w = prev.shape
    field = _motion_field(H_true, h, w)
    inner = (slice(MARGIN, h - MARGIN), slice(MARGIN, w - MARGIN))
    epe = _mag(flow - field)[inner].mean()
    zero_epe = _mag(field)[inner].mean()
    # Measured 0.055 px; a wrong field (zero, transposed, wrong sign) is ~4 px off.
    assert zero_epe > 3.0
    assert epe < 0.08, f"TV-L1 end-point error vs true field {epe:.3f} px"


def test_estimate_homography_recovers_camera_motion(camera_pair, camera_flows):
    prev, cur, H_true = camera_pair
    flow = camera_flows[0]
    h, w = prev.shape
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    for detector in ("orb", "sift", "none"):
        H, inliers = estimate_homography(prev, cur, flow, WarpParams(detector=detector))
        assert H.shape == (3, 3) and H.dtype == np.float64
        assert inliers > WarpParams().min_inliers
        err = np.linalg.norm(_apply_h(H, corners) - _apply_h(H_true, corners), axis=1).max()
        # Measured 0.04-0.06 px for the three detectors.
        assert err < 0.15, f"{detector}: image corners mapped {err:.3f} px apart"


def test_warped_flow_removes_camera_motion(camera_pair, camera_flows):
    prev, _, H_true = camera_pair
    flow, warped_flow, H, n_calls = camera_flows
    assert warped_flow.shape == flow.shape == prev.shape + (2,)
    assert warped_flow.dtype == np.float32
    assert n_calls == 2, "plain flow was passed in: WarpedFlow must run TV-L1 only once more"
    assert _mag(flow).mean() > 3.0  # the camera moves several px
    # Measured 0.024 px over the whole image.
    assert _mag(warped_flow).mean() < 0.04
    assert not np.allclose(H, np.eye(3))


# --- track_corners -----------------------------------------------------------------------------

def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h // 4, w // 4), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)


def _synthetic_flow(h: int, w: int) -> tuple[np.ndarray, Callable]:
    """dx and dy differ and each depends on both x and y, so any row/column mix-up shows."""
    def f(x, y):
        return 2 + 0.01 * x + 0.004 * y, 1 - 0.02 * y + 0.003 * x

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = f(xs, ys)
    return np.stack([dx, dy], axis=2).astype(np.float32), f


def test_track_corners_indexes_flow_by_row_y_column_x():
    h, w = 120, 200  # non-square, so swapped indices would also go out of range
    prev = _textured(h, w)
    flow, f = _synthetic_flow(h, w)
    pts_prev, pts_cur = track_corners(prev, flow, WarpParams())
    assert pts_prev.dtype == pts_cur.dtype == np.float32
    assert pts_prev.shape == pts_cur.shape and pts_prev.shape[1] == 2
    assert len(pts_prev) > 50
    x, y = np.rint(pts_prev[:, 0]), np.rint(pts_prev[:, 1])
    dx, dy = f(x, y)
    np.testing.assert_allclose(pts_cur[:, 0], pts_prev[:, 0] + dx, atol=1e-4)
    np.testing.assert_allclose(pts_cur[:, 1], pts_prev[:, 1] + dy, atol=1e-4)


def test_track_corners_uses_previous_frame_and_drops_points_leaving_image():
    h, w = 120, 200
    prev = np.full((h, w), 128, np.uint8)
    prev[:, : w // 2] = _textured(h, w // 2)  # texture only on the left half
    # Points right of x = 150 are pushed beyond the right edge.
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 50.0
    pts_prev, pts_cur = track_corners(prev, flow, WarpParams())
    assert len(pts_prev) > 20
    assert (pts_prev[:, 0] < w // 2 + 2).all(), "corners must come from prev's textured half"
    assert (pts_cur[:, 0] <= w - 1).all() and (pts_cur[:, 0] >= 0).all()

    # Textured prev, blank cur: corners are still found because only prev is used.
    blank_cur = np.zeros_like(prev)
    H, inliers = estimate_homography(prev, blank_cur, np.zeros((h, w, 2), np.float32),
                                     WarpParams(detector="none"))
    assert inliers > 0, "zero flow on prev's corners is a perfect identity fit"
    np.testing.assert_allclose(H, np.eye(3), atol=1e-6)

    # Pushing everything right by 150 px leaves only the corners with x <= 49.
    flow[..., 0] = 150.0
    kept_prev, kept_cur = track_corners(prev, flow, WarpParams())
    assert len(kept_prev) > 0
    assert (kept_prev[:, 0] <= w - 1 - 150).all()
    all_prev, _ = track_corners(prev, np.zeros_like(flow), WarpParams())
    assert len(kept_prev) == int((all_prev[:, 0] <= w - 1 - 150).sum())


# --- fallbacks ---------------------------------------------------------------------------------

def test_estimate_homography_identity_on_textureless_pair():
    flat = np.full((96, 128), 117, np.uint8)
    flow = np.full((96, 128, 2), 3.0, np.float32)
    assert len(match_features(flat, flat)[0]) == 0
    assert len(track_corners(flat, flow)[0]) == 0
    H, inliers = estimate_homography(flat, flat, flow, WarpParams())
    np.testing.assert_array_equal(H, np.eye(3))
    assert H.dtype == np.float64 and inliers == 0


def test_estimate_homography_identity_when_too_few_pairs_or_inliers(camera_pair, camera_flows):
    prev, cur, _ = camera_pair
    flow = camera_flows[0]
    H, inliers = estimate_homography(prev, cur, flow, WarpParams(min_pairs=100_000))
    np.testing.assert_array_equal(H, np.eye(3))
    assert inliers == 0
    H, inliers = estimate_homography(prev, cur, flow, WarpParams(min_inliers=100_000))
    np.testing.assert_array_equal(H, np.eye(3))
    assert 0 < inliers <= 100_000


def test_warped_flow_skips_second_flow_run_when_identity():
    flat = np.full((64, 80), 90, np.uint8)
    calls = []

    def fake_flow(a, b):
        calls.append(1)
        return np.full(a.shape + (2,), 0.5, np.float32)

    warped_flow, H = WarpedFlow(fake_flow)(flat, flat)
    np.testing.assert_array_equal(H, np.eye(3))
    assert len(calls) == 1
    np.testing.assert_array_equal(warped_flow, np.full((64, 80, 2), 0.5, np.float32))


# --- warp_to_previous --------------------------------------------------------------------------

@pytest.mark.parametrize("colour", [False, True])
def test_warp_to_previous_translation_keeps_prev_outside(frames, colour):
    prev, cur = frames
    if colour:
        prev = cv2.cvtColor(prev, cv2.COLOR_GRAY2BGR)
        cur = cv2.cvtColor(cur, cv2.COLOR_GRAY2BGR)
        cur[..., 2] = 255 - cur[..., 2]  # channels differ, so channel mix-ups show
    h, w = prev.shape[:2]
    H = np.array([[1, 0, 10], [0, 1, 0], [0, 0, 1]], np.float64)  # prev x -> cur x + 10
    out = warp_to_previous(prev, cur, H)
    assert out.shape == prev.shape and out.dtype == np.uint8
    # out(x) = cur(x + 10): columns whose source is beyond the right edge keep prev.
    np.testing.assert_array_equal(out[:, w - 10:], prev[:, w - 10:])
    np.testing.assert_array_equal(out[:, : w - 10], cur[:, 10:])
    np.testing.assert_array_equal(warp_to_previous(prev, cur, np.eye(3)), cur)


def test_warp_to_previous_undoes_known_homography(camera_pair):
    prev, cur, H_true = camera_pair
    out = warp_to_previous(prev, cur, H_true)
    inner = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    diff = np.abs(out.astype(np.int16) - prev.astype(np.int16))
    # Two bilinear resamplings blur a little (measured 1.47 grey levels); a misaligned warp
    # differs by tens of grey levels.
    assert diff[inner].mean() < 2.0
    misaligned = np.abs(cur.astype(np.int16) - prev.astype(np.int16))[inner].mean()
    assert misaligned > 3 * diff[inner].mean()


# --- match_features ----------------------------------------------------------------------------

def test_match_features_real_pair_within_window(frames):
    prev, cur = frames
    for params in (WarpParams(), WarpParams(match_window=9), WarpParams(detector="sift")):
        pts_prev, pts_cur = match_features(prev, cur, params)
        assert pts_prev.dtype == pts_cur.dtype == np.float32
        assert pts_prev.shape == pts_cur.shape and pts_prev.shape[1] == 2
        assert len(pts_prev) > 50
        assert len(pts_prev) <= params.max_features
        half = params.match_window // 2
        assert (np.abs(pts_cur - pts_prev) <= half).all()
    a = match_features(prev, cur)
    b = match_features(prev, cur)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert all(len(p) == 0 for p in match_features(prev, cur, WarpParams(detector="none")))


def test_match_features_follow_prev_to_cur_direction(frames):
    prev = frames[0]
    h, w = prev.shape
    shift = np.float32([[1, 0, 5], [0, 1, -3]])  # prev x appears at x + (5, -3) in cur
    cur = cv2.warpAffine(prev, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
    pts_prev, pts_cur = match_features(prev, cur)
    assert len(pts_prev) > 50
    d = pts_cur - pts_prev
    np.testing.assert_allclose(np.median(d, axis=0), [5, -3], atol=0.5)
    # Most matches are right, not just the median.
    assert (np.linalg.norm(d - [5, -3], axis=1) < 1.5).mean() > 0.7


def test_match_features_no_keypoints_on_one_frame(frames):
    prev = frames[0]
    flat = np.full_like(prev, 50)
    for a, b in ((prev, flat), (flat, prev)):
        pts_prev, pts_cur = match_features(a, b)
        assert pts_prev.shape == pts_cur.shape == (0, 2)


def test_params_as_dict_and_validation():
    d = WarpParams(detector="sift", min_inliers=7).as_dict()
    assert d["detector"] == "sift" and d["min_inliers"] == 7 and d["match_window"] == 25
    assert set(d) == {"detector", "max_features", "match_window", "max_corners", "corner_quality",
                      "corner_min_distance", "min_pairs", "ransac_threshold", "min_inliers"}
    with pytest.raises(ValueError):
        WarpParams(detector="surf")
