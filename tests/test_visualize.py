"""tsn-train visualize: DeepDraw class pictures of trained streams (synthetic, quickly trained
ResNet-18 streams from tests/helpers/synthetic_models.py)."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tsn_core.quantize import dequantize
from tsn_train import checkpoint
from tsn_train.cli import main
from tsn_train.config import DrawSettings
from tsn_train.visualize import DISPLAY, draw, probabilities

from .conftest import torch_threads
from .helpers.synthetic_models import BOUND, CLASSES, trained_checkpoint

SIZE, STEPS = 32, 40
CELL = SIZE * -(-DISPLAY // SIZE)  # a picture's cells are shown at least DISPLAY px wide (whole factor)
# training steps until a stream has learned its classes well enough for a picture to reach 95%:
# RGB difference's brighter/darker snippets take longer (seed 0 is at 91% after 40 steps, 100%
# after 60); an RGB stream of 40 steps classifies every snippet but on one machine drew "red" to
# only 92% (99.9% after 60 steps; 100% for seeds 1 and 2 either way)
LEARN_STEPS = {"rgb": 60, "rgbdiff": 60}


@pytest.fixture(scope="module")
def flow_stream(tmp_path_factory):
    """A flow stream that has learned the four directions (they take longer than colours)."""
    path = tmp_path_factory.mktemp("flow_stream") / "flow.pt"
    assert trained_checkpoint(path, "flow", size=SIZE, steps=100) >= 0.95
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two threads on two cores halve these tests on an idle machine but triple them beside another
    # job (47 s measured): one thread keeps them steady.
    with torch_threads(1):
        yield


def visualize(tmp_path, modality, *extra, trained=None):
    """Draw every class of a ``modality`` stream: ``trained`` (a flow checkpoint, whose weights
    serve warped flow too: the two modalities differ only in name), else one trained here."""
    ckpt = tmp_path / f"{modality}.pt"
    if trained is not None:
        c = checkpoint.load(trained)
        c.config = dataclasses.replace(c.config, modality=modality)
        c.preprocessing = dataclasses.replace(c.preprocessing, modality=modality)
        checkpoint.save(c, ckpt)
    else:
        assert trained_checkpoint(ckpt, modality, size=SIZE, steps=LEARN_STEPS[modality]) >= 0.95
    out = tmp_path / "vis"
    result = CliRunner().invoke(main, ["visualize", "--checkpoint", str(ckpt), "--out", str(out),
                                       "--size", str(SIZE), "--steps", str(STEPS), "--device", "cpu",
                                       *extra])
    assert result.exit_code == 0, result.output
    return ckpt, out, json.loads((out / "summary.json").read_text())


def check_probabilities(ckpt, out, summary, classes):
    """Each picture is its class for the model, with high probability, by the model itself
    re-reading the saved snippet; and the ascent made it so: every class the starting noise was
    not already (the noise can favour one class at most) was raised from below 0.5."""
    c = checkpoint.load(ckpt)
    model = checkpoint.model_from_checkpoint(c).eval()
    raised = 0
    for i, name in enumerate(classes):
        saved = np.load(out / f"{name}.npz")
        p = probabilities(model, np.stack([saved["levels"], saved["noise"]]), c.modality,
                          c.preprocessing.norm)
        assert p[0].argmax() == i and p[0, i] > 0.95, (name, p)
        assert p[0, i] == pytest.approx(summary["classes"][name]["probability"], abs=1e-5)
        raised += p[1, i] < 0.5
    assert raised >= len(classes) - 1


@pytest.mark.parametrize("modality", ["flow", "warped_flow"])
def test_flow_pictures_move_the_way_their_class_does(tmp_path, modality, flow_stream):
    ckpt, out, summary = visualize(tmp_path, modality, trained=flow_stream)
    classes = CLASSES[modality]
    check_probabilities(ckpt, out, summary, classes)
    mean = {}
    for name in classes:
        levels = np.load(out / f"{name}.npz")["levels"]
        assert levels.shape == (5, SIZE, SIZE, 2)
        mean[name] = dequantize(levels, BOUND).reshape(-1, 2).mean(axis=0)  # px, as the store reads
    assert mean["move_right"][0] > 0.5 and mean["move_left"][0] < -0.5
    assert mean["move_down"][1] > 0.5 and mean["move_up"][1] < -0.5  # image y grows downwards
    # pictures: x maps, y maps and colour fields, 5 pairs each, under a title bar; an overview
    grid = cv2.imread(str(out / "move_right.png"))
    assert grid.shape == (22 + 3 * CELL, 5 * CELL, 3)
    assert cv2.imread(str(out / "overview.png")).shape == (CELL, 4 * CELL, 3)
    # the colour row of "move_right" is red-ish (the Middlebury wheel's +x), "move_left" cyan-ish
    right = grid[22 + 2 * CELL:].reshape(-1, 3).mean(axis=0)  # BGR
    left = cv2.imread(str(out / "move_left.png"))[22 + 2 * CELL:].reshape(-1, 3).mean(axis=0)
    assert right[2] > right[0] and left[0] > left[2]


def test_rgb_pictures_are_their_colour(tmp_path):
    ckpt, out, summary = visualize(tmp_path, "rgb")
    check_probabilities(ckpt, out, summary, CLASSES["rgb"])
    red, blue = (np.load(out / f"{n}.npz")["levels"][0].reshape(-1, 3).mean(axis=0) for n in ("red", "blue"))
    assert red[2] > red[0] and blue[0] > blue[2]  # BGR
    assert cv2.imread(str(out / "red.png")).shape == (22 + CELL, CELL, 3)


def test_rgbdiff_pictures_brighten_or_darken(tmp_path):
    ckpt, out, summary = visualize(tmp_path, "rgbdiff", "--class", "darker")
    assert list(summary["classes"]) == ["darker"]  # only the class asked for
    c = checkpoint.load(ckpt)
    model = checkpoint.model_from_checkpoint(c).eval()
    levels = np.load(out / "darker.npz")["levels"]
    assert levels.shape == (6, SIZE, SIZE, 3)
    assert probabilities(model, levels[None], "rgbdiff", c.preprocessing.norm)[0, 1] > 0.95
    assert np.diff(levels, axis=0).mean() < 0  # the frames get darker
    assert cv2.imread(str(out / "darker.png")).shape == (22 + CELL, 5 * CELL, 3)  # 5 differences


def test_same_seed_same_picture_and_clear_errors(tmp_path):
    ckpt = tmp_path / "w.pt"
    trained_checkpoint(ckpt, "warped_flow", size=SIZE, steps=2)
    c = checkpoint.load(ckpt)
    model = checkpoint.model_from_checkpoint(c).eval().requires_grad_(False)
    s = DrawSettings(steps=6, size=SIZE, seed=3)
    with torch_threads(1):  # oneDNN's threaded convolutions may pick differently rounding kernels
        a, noise_a = draw(model, "warped_flow", c.preprocessing.norm, 1, s)
        b, noise_b = draw(model, "warped_flow", c.preprocessing.norm, 1, s)
        other, _ = draw(model, "warped_flow", c.preprocessing.norm, 1, DrawSettings(steps=6, size=SIZE, seed=4))
    assert np.array_equal(a, b) and np.array_equal(noise_a, noise_b)  # the same seed, bit for bit
    assert np.abs(a - other).mean() > 1.0  # another seed: another picture
    assert not np.array_equal(a, noise_a)  # the ascent moved the picture
    assert abs(dequantize(noise_a, BOUND).mean()) < 0.05  # flow starts at zero motion plus noise
    result = CliRunner().invoke(main, ["visualize", "--checkpoint", str(ckpt), "--out", str(tmp_path / "v"),
                                       "--class", "jump"])
    assert result.exit_code != 0
    assert "no class 'jump'" in result.output and "move_left, move_right" in result.output
    assert not (tmp_path / "v").exists()
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    result = CliRunner().invoke(main, ["visualize", "--checkpoint", str(bad), "--out", str(tmp_path / "v")])
    assert result.exit_code == 1 and result.output.count(str(bad)) == 1
    assert "unreadable checkpoint" in result.output and "Traceback" not in result.output
