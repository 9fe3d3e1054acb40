"""tsn-prep show: the fixed-scale flow colours, the contact sheet and the animations of a real store."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import flow_to_image

from tsn_prep.quantize import dequantize
from tsn_prep.show import flow_colors, make_colorwheel
from tsn_prep.store import Store

from .conftest import cli, count_frames, decode, link_videos

W, H = 112, 84
VID = "carphone"


# --- the colour function: literal colours from the wheel's definition ----------------------------

def test_wheel_is_the_middlebury_wheel():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)
    # The first entry of each segment: RY 15, YG 6, GC 4, CB 11, BM 13, MR 6.
    for index, colour in ((0, (255, 0, 0)), (15, (255, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255)),
                          (36, (0, 0, 255)), (49, (255, 0, 255))):
        assert tuple(wheel[index]) == colour
    assert tuple(wheel[1]) == (255, 17, 0)      # floor(255 * 1 / 15)
    assert tuple(wheel[54]) == (255, 0, 43)     # 255 - floor(255 * 5 / 6)


def test_literal_colours():
    b = 20.0
    assert tuple(flow_colors(0.0, 0.0, b)) == (255, 255, 255)           # no motion: white
    assert tuple(flow_colors(b, 0.0, b)) == (255, 0, 0)                 # +bound along x: wheel[0]
    assert tuple(flow_colors(3 * b, 0.0, b)) == (255, 0, 0)             # beyond the bound: clipped
    assert tuple(flow_colors(b / 2, 0.0, b)) == (255, 127, 127)         # half way to white
    assert tuple(flow_colors(-b, 0.0, b)) == (0, 209, 255)              # -x: wheel[27], 255 - floor(255*2/11)


def test_fixed_scale_compares_videos():
    """The same pixel motion gets the same colour in a slow and a fast video; torchvision's own
    normalisation (by each field's largest motion) would colour it differently."""
    slow = np.array([[1.0, 2.0]]), np.array([[0.5, 0.0]])
    fast = np.array([[1.0, 15.0]]), np.array([[0.5, 0.0]])
    ours_slow, ours_fast = flow_colors(*slow, 20.0), flow_colors(*fast, 20.0)
    assert (ours_slow[0, 0] == ours_fast[0, 0]).all()
    tv = [flow_to_image(torch.tensor(np.stack(f), dtype=torch.float32)).permute(1, 2, 0).numpy()
          for f in (slow, fast)]
    assert not (tv[0][0, 0] == tv[1][0, 0]).all()


def test_matches_torchvision_when_the_field_reaches_the_bound():
    rng = np.random.default_rng(0)
    fx, fy = rng.normal(0, 5, (2, 30, 40)).astype(np.float32)
    bound = float(np.sqrt(fx ** 2 + fy ** 2).max())  # torchvision's radius is then ours
    tv = flow_to_image(torch.from_numpy(np.stack([fx, fy]))).permute(1, 2, 0).numpy()
    diff = np.abs(flow_colors(fx, fy, bound).astype(int) - tv.astype(int))
    assert diff.max() <= 1  # float rounding at floor() boundaries only


# --- the command on a small real store ------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("show")
    videos = link_videos(root / "videos", {"carphone.mp4": "carphone.mp4"})
    out = root / "store"
    cli("extract-frames", videos, out, "--size", f"{W}x{H}", "--max-frames", "4", "--quiet")
    cli("extract-flow", videos, out, "--size", f"{W}x{H}", "--max-frames", "4", "--quiet",
        "--modality", "flow", "--modality", "warped_flow")
    return out


def _png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_png_layout_and_cells(store, tmp_path):
    png = tmp_path / "sheet.png"
    cli("show", store, VID, "--out", png, "--no-labels")
    sheet = _png(png)
    assert sheet.shape == (4 * H, 3 * W, 3)  # 4 frames -> 4 rows; rgb | flow | warped flow
    s = Store(store)
    for i in range(4):
        row = sheet[i * H:(i + 1) * H]
        frame = cv2.cvtColor(decode(s.read(VID, "img", [i])[0], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert (row[:, :W] == frame).all()
        for col, m in ((1, "flow"), (2, "warped_flow")):
            cell = row[:, col * W:(col + 1) * W]
            if i == 3:  # 4 frames have 3 flows: the last row's flow cells are black
                assert (cell == 0).all()
                continue
            bound = s.entry(VID, m).meta.parameters["bound"]
            fx, fy = (dequantize(decode(s.read(VID, f"{m}_{c}", [i])[0]), bound) for c in "xy")
            assert (cell == flow_colors(fx, fy, bound)).all()


def test_a_jpeg_sheet_is_the_png_sheet_compressed(store, tmp_path):
    cli("show", store, VID, "--out", tmp_path / "s.png", "--frames", "0:2")
    cli("show", store, VID, "--out", tmp_path / "s.jpg", "--frames", "0:2")
    png, jpg = _png(tmp_path / "s.png"), _png(tmp_path / "s.jpg")
    assert jpg.shape == png.shape == (2 * H, 3 * W, 3)
    assert np.abs(jpg.astype(int) - png).mean() < 3  # quality 90
    assert (tmp_path / "s.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    result = cli("show", store, VID, "--out", tmp_path / "s.bmp", expect=1)
    assert "s.bmp: write .png, .jpg, .jpeg, .gif or .mp4" in result.output


def test_labels_columns_and_range(store, tmp_path):
    plain, labelled = tmp_path / "a.png", tmp_path / "b.png"
    cli("show", store, VID, "--out", plain, "--no-labels", "--frames", "1:3")
    cli("show", store, VID, "--out", labelled, "--frames", "1:3")
    a, b = _png(plain), _png(labelled)
    assert a.shape == (2 * H, 3 * W, 3)
    changed = np.argwhere((a != b).any(axis=2))
    assert len(changed) and changed[:, 1].max() < W // 2  # the label sits in the top-left corner
    wide = tmp_path / "c.png"
    cli("show", store, VID, "--out", wide, "--columns", "2", "--every", "1")
    assert _png(wide).shape == (2 * H, 2 * 3 * W, 3)


def test_animations_round_trip(store, tmp_path):
    gif, mp4 = tmp_path / "a.gif", tmp_path / "a.mp4"
    cli("show", store, VID, "--out", gif, "--frames", "0:3")
    with Image.open(gif) as image:
        assert image.n_frames == 3 and image.size == (3 * W, H)
    cli("show", store, VID, "--out", mp4, "--every", "2")  # steps 0 and 2
    assert count_frames(mp4) == 2


def test_missing_video_store_and_empty_range(store, tmp_path):
    result = cli("show", store, "no/such_video", "--out", tmp_path / "x.png", expect=1)
    assert "no/such_video" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = cli("show", tmp_path / "nowhere", VID, "--out", tmp_path / "x.png", expect=1)
    assert "not a tsn store" in result.output
    result = cli("show", store, VID, "--out", tmp_path / "x.png", "--frames", "10:20", expect=1)
    assert "4 time steps" in result.output
    assert not (tmp_path / "x.png").exists()
