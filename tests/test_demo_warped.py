"""Warped flow through the whole CLI on a generated clip: camera pan removed, object motion kept."""
import importlib.util

import cv2
import numpy as np

from tsn_prep.quantize import dequantize
from tsn_prep.store import Store

from .conftest import REPO, cli


def load_generator():
    spec = importlib.util.spec_from_file_location("make_demo_videos", REPO / "tools" / "make_demo_videos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pan_is_removed_and_object_motion_kept(tmp_path):
    gen = load_generator()
    rng = np.random.default_rng(3)
    frames = gen.make_clip(rng, (1, 0), frames=6, size=(200, 150), speed=4.0, pan=(-2.5, 1.5))
    gen.write_video(tmp_path / "videos" / "pan.mp4", frames)
    out = tmp_path / "out"
    cli("extract-flow", tmp_path / "videos", out, "--modality", "flow", "--modality", "warped_flow",
        "--size", "200x150", "--quiet")
    s = Store(out)

    def magnitude(channel_prefix, i):
        x, y = (dequantize(cv2.imdecode(np.frombuffer(s.get("pan", f"{channel_prefix}_{c}", i), np.uint8), 0))
                for c in "xy")
        return np.hypot(x, y)

    assert s.entry("pan", "warped_flow").meta["count"] == 5
    for i in range(5):
        plain, warped = magnitude("flow", i), magnitude("warped_flow", i)
        assert np.median(plain) > 2.0        # the background moves with the camera (2.9 px/frame)
        assert np.median(warped) < 0.3       # ... and warped flow removes it
        # the object (50x50 of 200x150 px, 8%) still moves relative to the scene (1.4-2.8 px)
        moving = np.mean(warped > 1.0)
        assert 0.04 < moving < 0.15, moving
