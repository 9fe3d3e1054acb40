"""tsn-prep show: the fixed-scale flow colours, the contact sheet (titles, colour key, row labels)
and the animations of a real store."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import flow_to_image

from tsn_core.drawing import FONT
from tsn_prep.legend import column_title, key, key_lines, title_bar, wheel
from tsn_core.quantize import dequantize
from tsn_core.flowcolor import flow_colors, make_colorwheel
from tsn_core.drawing import label
from tsn_core.store import Store

from .conftest import cli, cli_subprocess, count_frames, decode, link_videos

W, H = 112, 84
VID = "carphone"
TITLES = ["frame", "TV-L1 flow", "warped flow"]
T = title_bar(TITLES, W, H).shape[0]                      # the title band's height
BOUNDS = [("TV-L1 flow", 20.0), ("warped flow", 20.0)]  # the store's: --bound 20 by default
K = key(3 * W, BOUNDS, H).shape[0]                       # the colour key's height


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


def _ink_rows(text: str, scale: float) -> int:
    """How many pixel rows a label's text (white on a black outline) covers when nothing cuts it:
    drawn far from any edge on grey, where both its strokes show."""
    canvas = np.full((400, 600, 3), 128, np.uint8)
    for colour, thick in ((0, 3), (255, 1)):
        cv2.putText(canvas, text, (100, 200), FONT, scale, (colour,) * 3, thick, cv2.LINE_AA)
    ys = np.flatnonzero((canvas != 128).any(axis=(1, 2)))
    return ys.max() - ys.min() + 1


def _png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_png_layout_and_cells(store, tmp_path):
    png = tmp_path / "sheet.png"
    cli("show", store, VID, "--out", png, "--no-labels")
    sheet = _png(png)
    # 4 frames -> 4 rows; rgb | flow | warped flow; a title band above, the colour key below
    assert T > 0 and K > 0 and sheet.shape == (T + 4 * H + K, 3 * W, 3)
    s = Store(store)
    for i in range(4):
        row = sheet[T + i * H:T + (i + 1) * H]
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
    assert jpg.shape == png.shape == (T + 2 * H + K, 3 * W, 3)
    assert np.abs(jpg.astype(int) - png).mean() < 3  # quality 90
    assert (tmp_path / "s.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    result = cli("show", store, VID, "--out", tmp_path / "s.bmp", expect=1)
    assert "s.bmp: write .png, .jpg, .jpeg, .gif or .mp4" in result.output


def test_labels_columns_and_range(store, tmp_path):
    plain, labelled = tmp_path / "a.png", tmp_path / "b.png"
    cli("show", store, VID, "--out", plain, "--no-labels", "--frames", "1:3")
    cli("show", store, VID, "--out", labelled, "--frames", "1:3")
    a, b = _png(plain), _png(labelled)
    assert a.shape == (T + 2 * H + K, 3 * W, 3)
    changed = np.argwhere((a != b).any(axis=2))
    assert len(changed) and changed[:, 1].max() < W // 2  # the label sits in the top-left corner
    for i in range(2):  # ... of each row, whole: below the row's top edge, as tall as its text
        ys = changed[(changed[:, 0] >= T + i * H) & (changed[:, 0] < T + (i + 1) * H), 0] - T - i * H
        assert ys.min() >= 1 and ys.max() - ys.min() + 1 >= _ink_rows(str(1 + i), 0.35) - 1, (i, ys.min(), ys.max())
    wide = tmp_path / "c.png"
    cli("show", store, VID, "--out", wide, "--columns", "2", "--every", "1")
    sheet = _png(wide)
    wide_key = key(2 * 3 * W, BOUNDS, H).shape[0]  # less wrapped
    assert sheet.shape == (T + 2 * H + wide_key, 2 * 3 * W, 3)
    assert (sheet[:T, :3 * W] == sheet[:T, 3 * W:]).all()  # the titles over each group of rows


def test_animations_round_trip(store, tmp_path):
    gif, mp4 = tmp_path / "a.gif", tmp_path / "a.mp4"
    cli("show", store, VID, "--out", gif, "--frames", "0:3")
    with Image.open(gif) as image:  # each picture titled and keyed like a sheet
        assert image.n_frames == 3 and image.size == (3 * W, T + H + K)
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


# --- the words around the cells: titles, colour key, row labels -----------------------------------

def test_titles_name_the_drawn_columns(store, tmp_path):
    png = tmp_path / "t.png"
    cli("show", store, VID, "--out", png, "--frames", "0:1")
    band = _png(png)[:T]
    ink = (band > 128).all(axis=2)  # white text on black
    for col in range(3):
        xs = np.flatnonzero(ink[:, col * W:(col + 1) * W].any(axis=0))
        assert len(xs) > 10, col  # a title over every column ...
        assert abs((xs.min() + xs.max()) / 2 - W / 2) < 6  # ... centred on it
    assert [column_title(m, "tvl1") for m in ("rgb", "flow", "warped_flow")] == TITLES
    assert column_title("flow") == "flow"  # imported flow records no algorithm
    assert column_title("flow", "farneback") == "Farneback flow"


def test_key_for_flow_and_none_for_frames_alone(store, tmp_path):
    png = tmp_path / "k.png"
    cli("show", store, VID, "--out", png, "--frames", "0:1")
    band = _png(png)[T + H:].astype(int)
    assert band.shape[0] == K
    # the wheel: saturated colours of every direction (red, green, blue dominant pixels)
    for c in range(3):
        others = [o for o in range(3) if o != c]
        assert ((band[..., c] > 200) & (band[..., others] < 80).all(axis=-1)).any(), c
    rgb_only = tmp_path / "rgb_only"
    videos = link_videos(tmp_path / "videos", {"carphone.mp4": "carphone.mp4"})
    cli("extract-frames", videos, rgb_only, "--size", f"{W}x{H}", "--max-frames", "2", "--quiet")
    cli("show", rgb_only, VID, "--out", tmp_path / "r.png", "--no-labels")
    sheet = _png(tmp_path / "r.png")
    t = title_bar(["frame"], W, H).shape[0]
    assert sheet.shape == (t + 2 * H, W, 3)  # titled, no key: nothing to explain
    frame = cv2.cvtColor(decode(Store(rgb_only).read(VID, "img", [1])[0], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert (sheet[t + H:] == frame).all()


def test_key_says_the_bound():
    assert "full colour = 20 px or more" in " ".join(key_lines(BOUNDS))
    both = " ".join(key_lines([("TV-L1 flow", 20.0), ("warped flow", 15.0)]))
    assert "20 px (TV-L1 flow)" in both and "15 px (warped flow)" in both
    w = wheel(41)  # each point coloured as the motion from the centre to it, the rim at the bound
    assert tuple(w[20, 20]) == (255, 255, 255)
    assert tuple(w[20, 36]) == tuple(flow_colors(16, 0, 20.5))   # right: +x, red
    assert tuple(w[36, 20]) == tuple(flow_colors(0, 16, 20.5))   # below: +y (down)
    assert tuple(w[20, 4]) == tuple(flow_colors(-16, 0, 20.5))   # left: -x, cyan
    assert tuple(w[0, 0]) == (0, 0, 0)                              # outside the disc: background


def test_row_label_is_whole_on_a_large_cell():
    """At 256 px (the default extraction height) OpenCV's baseline placement put the top of the
    digits above the cell; now the whole text box is inside."""
    cell = np.full((256, 340, 3), 128, np.uint8)
    label(cell, "12")
    ys = np.flatnonzero((cell != 128).any(axis=(1, 2)))
    assert ys.min() >= 1 and ys.max() - ys.min() + 1 == _ink_rows("12", 256 / 240)


def test_no_opencv_warning_from_any_format(store, tmp_path):
    """The real command in its own process: OpenCV writes its warnings to stderr from C++ (a
    JPEG quality passed to the PNG writer printed 'imwrite_ An unsupported key(1)')."""
    for ext in (".png", ".jpg", ".gif", ".mp4"):
        r = cli_subprocess("show", store, VID, "--out", tmp_path / f"w{ext}", "--frames", "0:2")
        assert r.returncode == 0 and (tmp_path / f"w{ext}").stat().st_size > 0, r.stderr
        assert [line for line in r.stderr.splitlines() if not line.startswith("wrote ")] == [], r.stderr
