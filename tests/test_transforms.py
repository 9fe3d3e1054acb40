"""Group transforms: crop positions and sizes, flow flipping, one crop per sample, input scaling."""
import numpy as np
import pytest
import torch

from tsn_train.transforms import (NORMS, EvalCrops, TrainAugment, corner_offsets, crop_sizes,
                                  eval_boxes, fixed_offsets, hflip, multiscale_crop_box, to_input)


def test_scale_set_at_340x256_is_the_papers():
    assert crop_sizes(256, 224, (1, .875, .75, .66)) == [256, 224, 192, 168]
    assert crop_sizes(256, 224, (1, .875, .75)) == [256, 224, 192]


def test_crops_fall_on_corners_or_centre_with_neighbouring_sizes():
    rng = np.random.default_rng(0)
    sizes = [256, 224, 192, 168]
    allowed_pairs = {(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= 1}
    seen_pairs, seen_pos = set(), set()
    for _ in range(3000):
        x, y, cw, ch = multiscale_crop_box(256, 340, 224, (1, .875, .75, .66), rng, positions=5)
        assert (cw, ch) in allowed_pairs
        offsets = corner_offsets(256, 340, ch, cw)
        assert (x, y) in offsets
        assert x + cw <= 340 and y + ch <= 256
        seen_pairs.add((cw, ch))
        seen_pos.add(offsets.index((x, y)))
    assert seen_pairs == allowed_pairs and len(allowed_pairs) == 10
    assert seen_pos == {0, 1, 2, 3, 4}
    # Corners really are corners: a 224x192 crop of 340x256.
    assert corner_offsets(256, 340, 192, 224) == [(0, 0), (116, 0), (0, 64), (116, 64), (58, 32)]


# The reference rule (Caffe TSN's fillFixOffset with more_fix_crop, tsn-pytorch's fill_fix_offset):
# steps ws = (W - cw) // 4, hs = (H - ch) // 4; the five are (0, 0), (4ws, 0), (0, 4hs), (4ws, 4hs),
# (2ws, 2hs); more_fix_crop adds (0, 2hs), (4ws, 2hs), (2ws, 4hs), (2ws, 0), (ws, hs), (3ws, hs),
# (ws, 3hs), (3ws, 3hs). Worked out by hand for a 340x256 frame, as (x, y):
POSITIONS_340x256 = {
    # 224x224: ws = 116 // 4 = 29, hs = 32 // 4 = 8
    (224, 224): ([(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)],
                 [(0, 16), (116, 16), (58, 32), (58, 0), (29, 8), (87, 8), (29, 24), (87, 24)]),
    # 224 wide, 192 high: ws = 29, hs = 64 // 4 = 16
    (224, 192): ([(0, 0), (116, 0), (0, 64), (116, 64), (58, 32)],
                 [(0, 32), (116, 32), (58, 64), (58, 0), (29, 16), (87, 16), (29, 48), (87, 48)]),
    # 200 wide, 170 high: ws = 140 // 4 = 35, hs = 86 // 4 = 21 (the far edge is 84, not 86)
    (200, 170): ([(0, 0), (140, 0), (0, 84), (140, 84), (70, 42)],
                 [(0, 42), (140, 42), (70, 84), (70, 0), (35, 21), (105, 21), (35, 63), (105, 63)]),
}


@pytest.mark.parametrize("crop_wh", list(POSITIONS_340x256))
def test_the_5_and_13_crop_positions_are_the_references(crop_wh):
    cw, ch = crop_wh
    five, more = POSITIONS_340x256[crop_wh]
    assert fixed_offsets(256, 340, ch, cw, 5) == five == corner_offsets(256, 340, ch, cw)
    assert fixed_offsets(256, 340, ch, cw, 13) == five + more
    assert len(set(five + more)) == 13
    for x, y in five + more:
        assert 0 <= x <= 340 - cw and 0 <= y <= 256 - ch


def test_a_crop_as_tall_as_the_frame_keeps_all_13_entries():
    # 256x256 of 340x256: hs = 0, ws = 84 // 4 = 21. Entries coincide but stay in the list, so
    # (as in the reference) each of the 13 is drawn equally often: (0, 0) is 3 of the 13.
    assert fixed_offsets(256, 340, 256, 256, 13) == [
        (0, 0), (84, 0), (0, 0), (84, 0), (42, 0),
        (0, 0), (84, 0), (42, 0), (42, 0), (21, 0), (63, 0), (21, 0), (63, 0)]


@pytest.mark.parametrize("positions", [5, 13])
def test_training_crops_come_from_exactly_the_chosen_positions(positions):
    five, more = POSITIONS_340x256[(224, 224)]
    expected = set(five) if positions == 5 else set(five + more)
    rng = np.random.default_rng(5)
    # A single scale (256 x .875 = 224) so every draw is 224x224 and only the position varies.
    seen = [multiscale_crop_box(256, 340, 224, (.875,), rng, positions=positions) for _ in range(1000)]
    assert {(cw, ch) for _, _, cw, ch in seen} == {(224, 224)}
    counts = {p: 0 for p in expected}
    for x, y, _, _ in seen:
        counts[(x, y)] += 1  # a KeyError is a position outside the set
    assert min(counts.values()) > 1000 / len(expected) / 2  # every one, roughly uniformly


def _coordinates_image(h, w):
    """One frame whose pixel (y, x) holds x % 256, x // 256, y: a crop's first pixel says where it is."""
    ys, xs = np.mgrid[:h, :w]
    return np.stack([xs % 256, xs // 256, ys], -1).astype(np.uint8)[None]


@pytest.mark.parametrize("positions", [None, 5, 13])
def test_train_augment_crops_at_its_crop_positions(positions):
    from tsn_train.config import FitConfig
    frames = _coordinates_image(256, 340)
    kwargs = {} if positions is None else {"crop_positions": positions}
    augment = TrainAugment(224, (.875,), is_flow=False, flip=False, **kwargs)
    assert augment.crop_positions == (positions or FitConfig.crop_positions)  # the default is fit's
    five, more = POSITIONS_340x256[(224, 224)]
    seen = set()
    for seed in range(300):
        out = augment(frames, np.random.default_rng(seed))  # 224x224 crops: no resize
        b, g, r = (int(v) for v in out[0, 0, 0])
        seen.add((b + 256 * g, r))
    assert seen == (set(five) if augment.crop_positions == 5 else set(five + more))


@pytest.mark.parametrize("positions", [0, 4, 9, 10, 12, 14, "13"])
def test_other_crop_position_counts_are_refused(positions):
    message = r"crop_positions must be 13 or 5 \(13 = the reference TSN's fixed crops, 5 = corners and centre\)"
    with pytest.raises(ValueError, match=message):
        fixed_offsets(256, 340, 224, 224, positions)
    with pytest.raises(ValueError, match=message):
        multiscale_crop_box(256, 340, 224, (.875,), np.random.default_rng(0), positions=positions)
    with pytest.raises(ValueError, match=message):
        TrainAugment(224, (.875,), is_flow=False, crop_positions=positions)


def test_flipping_flow_mirrors_and_inverts_x_exactly():
    rng = np.random.default_rng(1)
    flow = rng.integers(0, 256, size=(5, 8, 12, 2), dtype=np.uint8)
    flipped = hflip(flow, is_flow=True)
    assert np.array_equal(flipped[..., 0], 255 - flow[:, :, ::-1, 0])
    assert np.array_equal(flipped[..., 1], flow[:, :, ::-1, 1])
    assert np.array_equal(hflip(flipped, is_flow=True), flow)
    rgb = rng.integers(0, 256, size=(2, 8, 12, 3), dtype=np.uint8)
    assert np.array_equal(hflip(rgb, is_flow=False), rgb[:, :, ::-1])
    # 128 means "no motion" and stays 128 once flipped (255 - 128 = 127 is the bin below).
    assert hflip(np.full((1, 1, 1, 2), 128, np.uint8), True)[0, 0, 0, 0] == 127


def test_one_crop_and_flip_for_every_frame_of_a_sample():
    rng = np.random.default_rng(2)
    base = rng.integers(20, 200, size=(256, 340, 3)).astype(np.uint8)
    frames = np.stack([base + t for t in range(6)])  # frame t = frame 0 + t everywhere
    augment = TrainAugment(224, (1, .875, .75, .66), is_flow=False)
    for seed in range(20):
        out = augment(frames, np.random.default_rng(seed)).astype(int)
        assert out.shape == (6, 224, 224, 3)
        for t in range(6):
            # The same box and flip: differences stay t, up to the resize's fixed-point rounding
            # (another crop of this noise image would be off by ~60 on average).
            gap = np.abs(out[t] - out[0] - t)
            assert gap.max() <= 1 and gap.mean() < 0.2


@pytest.mark.parametrize("is_flow, channels", [(False, 3), (True, 2)])
def test_training_augmentation_is_crop_resize_then_mirror_exactly(is_flow, channels):
    """The fused per-frame resize-and-flip gives exactly the crop, OpenCV's resize of each image
    and hflip (x inverted for flow), box and flip drawn in that order from the generator."""
    import cv2
    frames = np.random.default_rng(8).integers(0, 256, (5, 256, 340, channels), dtype=np.uint8)
    augment = TrainAugment(224, (1, .875, .75, .66), is_flow=is_flow)
    flips = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        x, y, w, h = multiscale_crop_box(256, 340, 224, augment.scales, rng, positions=13)
        mirror = rng.random() < 0.5
        want = np.stack([cv2.resize(f[y:y + h, x:x + w], (224, 224), interpolation=cv2.INTER_LINEAR)
                         for f in frames]).reshape(5, 224, 224, channels)
        if mirror:
            want = hflip(want, is_flow)
        flips += mirror
        assert np.array_equal(augment(frames, np.random.default_rng(seed)), want), seed
    assert 0 < flips < 12


def test_ten_crops_are_five_positions_and_their_mirrors():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(2, 256, 340, 2), dtype=np.uint8)
    crops = EvalCrops(224, 256, 10, is_flow=True)(frames)
    assert crops.shape == (10, 2, 224, 224, 2)
    boxes = eval_boxes(256, 340, 224, 10)
    assert [(x, y) for x, y, _, _ in boxes] == [(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)]
    for i, (x, y, w, h) in enumerate(boxes):
        assert np.array_equal(crops[i], frames[:, y:y + h, x:x + w])
        assert np.array_equal(crops[i + 5], hflip(crops[i], is_flow=True))
    assert [b[:2] for b in eval_boxes(256, 340, 224, 3)] == [(0, 16), (58, 16), (116, 16)]
    assert EvalCrops(224, 256, 1, False)(frames[..., :1].repeat(3, -1)).shape == (1, 2, 224, 224, 3)


def test_flow_input_stacks_x_and_y_per_field_around_128():
    frames = np.zeros((1, 3, 2, 2, 2), np.uint8)  # (K, L, H, W, xy)
    for t in range(3):
        frames[0, t, ..., 0], frames[0, t, ..., 1] = 100 + t, 200 + t
    x = to_input(frames, "flow", NORMS["caffe_bgr"])
    assert x.shape == (1, 6, 2, 2)
    assert x[0, :, 0, 0].tolist() == [-28, 72, -27, 73, -26, 74]
    y = to_input(frames, "flow", NORMS["imagenet"])
    assert torch.allclose(y[0, 0, 0, 0], torch.tensor((100 / 255 - 0.5) / 0.226))


def test_rgb_and_rgb_difference_scaling():
    pixel = np.array([10, 128, 250], np.uint8)  # B, G, R
    frames = np.broadcast_to(pixel, (1, 1, 2, 2, 3)).copy()
    caffe = to_input(frames, "rgb", NORMS["caffe_bgr"])[0, :, 0, 0]
    assert caffe.tolist() == [10 - 104, 128 - 117, 250 - 123]  # stays BGR
    tv = to_input(frames, "rgb", NORMS["imagenet"])[0, :, 0, 0]
    expected = (torch.tensor([250, 128, 10]) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225])  # RGB order
    assert torch.allclose(tv, expected)
    snippet = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (10, 13, 19, 19, 30, 31)])[None]
    diff = to_input(snippet, "rgbdiff", NORMS["caffe_bgr"])
    assert diff.shape == (1, 15, 2, 2)
    assert diff[0, ::3, 0, 0].tolist() == [3, 6, 0, 11, 1]
    # The same call serves training and test: a test-time batch of crops gives identical values.
    batch = to_input(np.stack([snippet, snippet]), "rgbdiff", NORMS["imagenet"])
    assert torch.equal(batch[0], batch[1])
    assert torch.allclose(batch[0, 0, ::3, 0, 0], torch.tensor([3., 6, 0, 11, 1]) / 255 / 0.452)


@pytest.mark.parametrize("crops", [2, 4])
def test_unknown_crop_counts_are_refused(crops):
    with pytest.raises(ValueError):
        eval_boxes(256, 340, 224, crops)


def test_resizing_many_frames_at_once_equals_one_by_one():
    from tsn_train.transforms import resize
    import cv2
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, size=(125, 84, 112, 2), dtype=np.uint8)  # 25 flow snippets: 250 channels
    out = resize(frames, 73, 55)
    assert out.shape == (125, 55, 73, 2)
    for t in (0, 63, 124):
        assert np.array_equal(out[t], cv2.resize(frames[t], (73, 55), interpolation=cv2.INTER_LINEAR))


def reference_input(frames: np.ndarray, modality: str, norm) -> np.ndarray:
    """The network input written out in float64 numpy: (K, L, H, W, C) uint8 -> (K, C_in, H, W)."""
    f = frames.astype(np.float64)
    k, length, h, w, c = f.shape
    if modality == "flow":
        v = (f * norm.scale - norm.flow_mean) / norm.flow_std          # x0, y0, x1, y1, ...
        return v.transpose(0, 1, 4, 2, 3).reshape(k, length * c, h, w)
    if not norm.bgr:
        f = f[..., ::-1]
    if modality == "rgb":
        v = (f * norm.scale - np.array(norm.mean)) / np.array(norm.std)
    else:  # rgbdiff
        v = (f[:, 1:] - f[:, :-1]) * norm.scale / norm.diff_std
        length -= 1
    return v.transpose(0, 1, 4, 2, 3).reshape(k, length * c, h, w)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here"))])
@pytest.mark.parametrize("modality, length, c", [("rgb", 1, 3), ("rgbdiff", 6, 3), ("flow", 5, 2)])
def test_inputs_scaled_on_the_device_equal_the_formulas(device, modality, length, c):
    """uint8 goes to the device and is scaled there: the same inputs as the formulas in float64,
    to 1e-6 relative, for both backbone conventions."""
    frames = np.random.default_rng(5).integers(0, 256, (3, length, 8, 9, c), dtype=np.uint8)
    for norm in NORMS.values():
        x = to_input(torch.from_numpy(frames).to(device), modality, norm)
        assert x.device.type == device and x.dtype == torch.float32
        want = reference_input(frames, modality, norm)
        np.testing.assert_allclose(x.cpu().numpy(), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
