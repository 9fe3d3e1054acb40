"""Warped optical flow: TV-L1 flow with the camera motion removed.

As in improved dense trajectories (Wang & Schmid 2013) and dense_flow's ``extract_warp_gpu``: for a
pair (prev, cur) the camera motion is modelled as a homography ``H`` (prev -> cur coordinates),
estimated with RANSAC from two kinds of correspondences -- descriptor matches between keypoints of
the two frames, and strong corners of prev displaced by the dense flow. ``cur`` is then warped back
onto ``prev`` with ``H`` and the flow is recomputed between ``prev`` and the warped frame, so what
remains is (mostly) the motion of things moving relative to the scene.

dense_flow's implementation has three bugs that this module deliberately does NOT reproduce:

1. The previous frame's keypoints/descriptors were computed once and never updated, so every frame
   was matched against the *first* frame's features.  Here both frames are detected afresh on
   every call (``match_features`` is stateless).
2. Corner displacement was looked up as ``f_y[y]`` where ``f_y[x]`` was meant (row pointer taken,
   then indexed by the wrong coordinate), so the y displacement came from the wrong pixel.  Here a
   point (x, y) reads ``flow[row=y, col=x]`` for both components, after rounding to the nearest
   pixel and clipping to the image.
3. ``goodFeaturesToTrack`` ran on the *current* frame although the flow vectors start on the
   previous one.  Here corners are found on the previous frame (``track_corners`` is only given it).

All functions are pure and work on numpy arrays; nothing is read from or written to disk.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import cv2
import numpy as np

from .backends import FlowFn

DETECTORS = ("orb", "sift", "none")


@dataclass(frozen=True)
class WarpParams:
    """Camera-motion estimation settings (defaults follow iDT / dense_flow where they apply). A
    field with a ``help`` in its metadata is a ``tsn-prep extract-flow --warp-...`` option."""

    detector: str = field(default="orb", metadata={
        "help": "free keypoint detector matched between frames (SURF is non-free); 'none' uses "
                "flow-tracked corners only.", "choices": DETECTORS})
    max_features: int = 1000       # keypoints per frame for the detector
    match_window: int = field(default=25, metadata={  # |dx|, |dy| <= 12 for 25
        "help": "keypoint matches count only within this window (px, square).", "min": 1})
    max_corners: int = field(default=1000, metadata={  # goodFeaturesToTrack
        "help": "corners of the previous frame tracked by the flow (0: no limit).", "min": 0})
    corner_quality: float = 0.001
    corner_min_distance: float = 3.0
    min_pairs: int = field(default=50, metadata={
        "help": "fit a homography only with more correspondences than this.", "min": 4})
    ransac_threshold: float = field(default=1.0, metadata={  # findHomography's
        "help": "RANSAC reprojection threshold in px."})
    min_inliers: int = field(default=25, metadata={
        "help": "accept the camera homography only with more RANSAC inliers than this.", "min": 4})

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")

    def as_dict(self) -> dict:
        """Plain dict of the parameters, for recording in metadata."""
        return asdict(self)


def _empty_pairs() -> tuple[np.ndarray, np.ndarray]:
    return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)


def _detector(params: WarpParams):
    if params.detector == "orb":
        # ORB is deterministic (fixed BRIEF pattern, no random sampling) and a few ms per
        # 340x256 frame, negligible next to TV-L1.
        return cv2.ORB_create(nfeatures=params.max_features), cv2.NORM_HAMMING
    if params.detector == "sift":
        return cv2.SIFT_create(nfeatures=params.max_features), cv2.NORM_L2
    raise ValueError(f"detector {params.detector!r} has no descriptors")


def _detect(image: np.ndarray, det) -> tuple[np.ndarray, Optional[np.ndarray]]:
    kpts, desc = det.detectAndCompute(image, None)
    if not kpts or desc is None or len(desc) == 0:
        return np.empty((0, 2), np.float32), None
    return np.array([k.pt for k in kpts], np.float32).reshape(-1, 2), desc


def match_features(prev_grey: np.ndarray, cur_grey: np.ndarray,
                   params: WarpParams = WarpParams()) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints detected on BOTH frames (fresh every call), matched by descriptor, kept only within
    the window. Returns ``(pts_prev Nx2 float32, pts_cur Nx2 float32)``; empty when ``detector`` is
    ``"none"`` or either frame has no keypoints/descriptors."""
    if params.detector == "none":
        return _empty_pairs()
    det, norm = _detector(params)
    p_prev, d_prev = _detect(prev_grey, det)
    p_cur, d_cur = _detect(cur_grey, det)
    if d_prev is None or d_cur is None:
        return _empty_pairs()

    # The window is applied as a matching mask (as iDT's windowedMatchingMask does) rather than as
    # a post-filter, so each keypoint gets its best match among the *plausible* candidates instead
    # of losing a good local match to a far-away look-alike.
    half = params.match_window // 2
    # Per-axis 2-D outer differences: ~15x faster than one NxMx2 array reduced with .all().
    mask = np.abs(np.subtract.outer(p_cur[:, 0], p_prev[:, 0])) <= half  # rows: cur, cols: prev
    mask &= np.abs(np.subtract.outer(p_cur[:, 1], p_prev[:, 1])) <= half
    if not mask.any():
        return _empty_pairs()

    # Mutual best match: BFMatcher's crossCheck cannot be combined with a mask in OpenCV, so the
    # two directions are matched explicitly. This removes many-to-one matches on repeated texture.
    matcher = cv2.BFMatcher(norm)
    fwd = matcher.match(d_cur, d_prev, mask.astype(np.uint8))
    bwd = matcher.match(d_prev, d_cur, np.ascontiguousarray(mask.T).astype(np.uint8))
    best_cur_for_prev = {m.queryIdx: m.trainIdx for m in bwd}
    pairs = [(m.trainIdx, m.queryIdx) for m in fwd
             if best_cur_for_prev.get(m.trainIdx) == m.queryIdx]
    if not pairs:
        return _empty_pairs()
    idx = np.array(pairs, np.intp)
    pts_prev, pts_cur = p_prev[idx[:, 0]], p_cur[idx[:, 1]]
    # The mask already guarantees this; re-checked so the window is a hard guarantee whatever the
    # matcher does with masked-out rows.
    keep = (np.abs(pts_cur - pts_prev) <= half).all(axis=1)
    return pts_prev[keep], pts_cur[keep]


def track_corners(prev_grey: np.ndarray, flow: np.ndarray,
                  params: WarpParams = WarpParams()) -> tuple[np.ndarray, np.ndarray]:
    """``goodFeaturesToTrack`` corners on the PREVIOUS frame, displaced by ``flow[y, x]`` (row y,
    column x, nearest pixel). Points displaced outside the image, or with non-finite flow, are
    dropped. Returns ``(pts_prev Nx2 float32, pts_cur Nx2 float32)``."""
    h, w = prev_grey.shape[:2]
    if flow.shape[:2] != (h, w) or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow shape {flow.shape} does not match frame shape {(h, w)}")
    corners = cv2.goodFeaturesToTrack(prev_grey, maxCorners=params.max_corners,
                                      qualityLevel=params.corner_quality,
                                      minDistance=params.corner_min_distance)
    if corners is None or len(corners) == 0:
        return _empty_pairs()
    pts_prev = corners.reshape(-1, 2).astype(np.float32)
    # Corners are normally at integer pixel positions; rounding + clipping keeps the look-up valid
    # should sub-pixel corners ever be passed through (x pairs with columns, y with rows).
    cols = np.clip(np.rint(pts_prev[:, 0]).astype(np.intp), 0, w - 1)
    rows = np.clip(np.rint(pts_prev[:, 1]).astype(np.intp), 0, h - 1)
    pts_cur = pts_prev + flow[rows, cols].astype(np.float32)
    keep = (np.isfinite(pts_cur).all(axis=1)
            & (pts_cur[:, 0] >= 0) & (pts_cur[:, 0] <= w - 1)
            & (pts_cur[:, 1] >= 0) & (pts_cur[:, 1] <= h - 1))
    return pts_prev[keep], pts_cur[keep]


def estimate_homography(prev_grey: np.ndarray, cur_grey: np.ndarray, flow: np.ndarray,
                        params: WarpParams = WarpParams()) -> tuple[np.ndarray, int]:
    """3x3 float64 ``H`` mapping prev -> cur coordinates, and the RANSAC inlier count.

    Identity when there are at most ``min_pairs`` correspondences (count 0) or at most
    ``min_inliers`` inliers (count = the inliers found): a wrong camera model would inject motion
    instead of removing it, so no compensation is the safe fallback."""
    identity = np.eye(3, dtype=np.float64)
    m_prev, m_cur = match_features(prev_grey, cur_grey, params)
    c_prev, c_cur = track_corners(prev_grey, flow, params)
    pts_prev = np.concatenate([m_prev, c_prev]).astype(np.float32)
    pts_cur = np.concatenate([m_cur, c_cur]).astype(np.float32)
    if len(pts_prev) <= params.min_pairs:
        return identity, 0
    H, inlier_mask = cv2.findHomography(pts_prev, pts_cur, cv2.RANSAC, params.ransac_threshold)
    if H is None or inlier_mask is None:
        return identity, 0
    inliers = int(np.count_nonzero(inlier_mask))
    if inliers <= params.min_inliers or not np.all(np.isfinite(H)) or abs(H[2, 2]) < 1e-12:
        return identity, inliers
    return (H / H[2, 2]).astype(np.float64), inliers


def _source_inside(H: np.ndarray, h: int, w: int) -> np.ndarray:
    """HxW bool: pixel x of the output samples cur at ``H x``, which lies inside cur."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = H[0, 0] * xs + H[0, 1] * ys + H[0, 2]
    sy = H[1, 0] * xs + H[1, 1] * ys + H[1, 2]
    sw = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        sx, sy = sx / sw, sy / sw
    # A tiny tolerance so that exact edge samples, rounded differently by warpPerspective's
    # fixed-point maths, are not thrown away.
    eps = 1e-6
    return ((sw > 0) & (sx >= -eps) & (sx <= w - 1 + eps) & (sy >= -eps) & (sy <= h - 1 + eps))


def warp_to_previous(prev: np.ndarray, cur: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``cur`` warped by ``H^-1`` so that it lines up with ``prev`` (``warpPerspective`` with
    ``WARP_INVERSE_MAP``, bilinear): output(x) = cur(H x). Pixels whose source falls outside cur keep
    prev's value, so they get zero flow. Grey HxW or colour HxWx3; dtype of ``cur`` is kept."""
    if prev.shape != cur.shape:
        raise ValueError(f"prev {prev.shape} and cur {cur.shape} differ in shape")
    h, w = cur.shape[:2]
    H = np.asarray(H, np.float64)
    # BORDER_REPLICATE only matters for the bilinear taps at the very edge; everything truly outside
    # is replaced by prev below. BORDER_TRANSPARENT is avoided: its edge handling with bilinear
    # interpolation is not documented precisely enough to promise "outside == prev".
    warped = cv2.warpPerspective(cur, H, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    inside = _source_inside(H, h, w)
    if cur.ndim == 3:
        inside = inside[:, :, None]
    return np.where(inside, warped, prev).astype(cur.dtype, copy=False)


class WarpedFlow:
    """Warped-flow extractor: ``WarpedFlow(flow_fn, params)(prev_grey, cur_grey, flow=None)``
    returns ``(warped_flow float32 HxWx2, H)``.

    ``flow`` is the prev -> cur flow from the same ``flow_fn``; pass it when plain flow is extracted
    too, so that TV-L1 runs only twice per pair. When the homography falls back to identity the
    warped frame *is* cur, so the plain flow is returned and the second TV-L1 run is skipped."""

    def __init__(self, flow_fn: FlowFn, params: WarpParams = WarpParams()):
        self.flow_fn = flow_fn
        self.params = params

    def __call__(self, prev_grey: np.ndarray, cur_grey: np.ndarray,
                 flow: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        if prev_grey.ndim != 2 or prev_grey.shape != cur_grey.shape:
            raise ValueError("expected two grey frames of the same HxW shape, got "
                             f"{prev_grey.shape} and {cur_grey.shape}")
        if flow is None:
            flow = self.flow_fn(prev_grey, cur_grey)
        flow = np.asarray(flow, np.float32)
        H, warped = camera_compensation(prev_grey, cur_grey, flow, self.params)
        if warped is None:
            return flow.copy(), H
        warped_flow = np.asarray(self.flow_fn(prev_grey, warped), np.float32)
        return warped_flow, H


def camera_compensation(prev_grey: np.ndarray, cur_grey: np.ndarray, flow: np.ndarray,
                        params: WarpParams = WarpParams()) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The CPU half of warped flow, given the plain prev -> cur ``flow``: ``(H, warped)`` where
    ``warped`` is ``cur`` warped back onto ``prev``, the second frame of the second flow pass, or
    None when ``H`` is the identity (the warped flow is then the plain flow, no second pass).

    ``WarpedFlow`` runs the second pass itself; the batching engine (``scheduler``) sends it
    through its batched solver instead."""
    H, _ = estimate_homography(prev_grey, cur_grey, np.asarray(flow, np.float32), params)
    if np.array_equal(H, np.eye(3)):
        return H, None
    return H, warp_to_previous(prev_grey, cur_grey, H)
