"""Small trained checkpoints for tests of ``tsn-train visualize``: ResNet-18 streams trained in
seconds on synthetic snippets whose classes a human can check in a picture.

- flow / warped_flow: uniform motion in the demo's four directions (move_left, move_right,
  move_up, move_down; image coordinates, y down) of 1-5 px plus noise, quantised by the store's
  own rule;
- rgb: "red" or "blue" frames (that channel raised by 50 levels);
- rgbdiff: six frames getting "brighter" or "darker" by 3-8 levels a frame.

``random_checkpoint`` makes an untrained stream of any architecture whose scores are far from zero
(for export and stream tests, which compare paths rather than accuracy).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tsn_core.quantize import quantize
from tsn_train import checkpoint
from tsn_train.archs import get as get_arch
from tsn_train.config import FitConfig
from tsn_train.models.tsn import build_model
from tsn_train.transforms import NORMS
from tsn_train.visualize import class_scores, snippet_shape

DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
CLASSES = {"flow": list(DIRECTIONS), "warped_flow": list(DIRECTIONS), "rgb": ["red", "blue"],
           "rgbdiff": ["brighter", "darker"]}
BOUND = 20.0


def snippets(modality: str, n: int, size: int, rng: np.random.Generator):
    """``n`` labelled snippets in stored levels, (n, L, size, size, C) float32, and labels."""
    classes = CLASSES[modality]
    length, channels = snippet_shape(modality)
    labels = rng.integers(0, len(classes), n)
    x = np.empty((n, length, size, size, channels), np.float32)
    for i, y in enumerate(labels):
        name = classes[y]
        if modality in ("flow", "warped_flow"):
            dx, dy = DIRECTIONS[name]
            m = rng.uniform(1, 5)
            f = rng.normal(0, 1.0, (length, size, size, 2)).astype(np.float32)
            f[..., 0] += dx * m
            f[..., 1] += dy * m
            x[i] = quantize(f, BOUND)
        elif modality == "rgb":
            img = rng.uniform(40, 200, (size, size, 3)).astype(np.float32)
            ch = 2 if name == "red" else 0  # frames are BGR, as OpenCV decodes them
            img[..., ch] = np.clip(img[..., ch] + 50, 0, 255)
            x[i, 0] = img
        else:
            base = rng.uniform(60, 190, (size, size, 3)).astype(np.float32)
            step = rng.uniform(3, 8) * (1 if name == "brighter" else -1)
            for t in range(length):
                x[i, t] = np.clip(base + step * t + rng.normal(0, 2, base.shape), 0, 255)
    return torch.from_numpy(x), torch.from_numpy(labels)


def trained_checkpoint(path: Path, modality: str, size: int = 32, steps: int = 40,
                       seed: int = 0) -> float:
    """Train a ResNet-18 stream on ``snippets`` and save it as a fit checkpoint at ``path``;
    returns its accuracy on 64 fresh snippets."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    classes = CLASSES[modality]
    cfg = FitConfig(modality=modality, store="s", train_list="t", out="o", arch="resnet18",
                    segments=1, dropout=0.0, partial_bn=False, input_size=size)
    model = build_model(cfg, len(classes))
    norm = NORMS[get_arch("resnet18").norm]
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for _ in range(steps):
        x, y = snippets(modality, 8, size, rng)
        loss = torch.nn.functional.cross_entropy(class_scores(model, x, modality, norm), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = snippets(modality, 64, size, rng)
    with torch.no_grad():
        accuracy = (class_scores(model, x, modality, norm).argmax(1) == y).float().mean().item()
    prep = checkpoint.Preprocessing(modality, size, size * 256 // 224, norm)
    checkpoint.save(checkpoint.Checkpoint(model=model.state_dict(), config=cfg, classes=list(classes),
                                          preprocessing=prep, extraction={"bound": BOUND}, epoch=1),
                    path)
    return accuracy


RANDOM_SIZE = 64  # crop side: small enough for a fast CPU test, large enough for BN-Inception's strides


def random_checkpoint(path: Path, arch: str, modality: str, classes: list[str],
                      consensus: str = "average", size: int = RANDOM_SIZE) -> None:
    """A checkpoint whose scores are far from zero and differ per class and snippet: random BN
    statistics and a classifier of unit-scale weights (a fresh TSN's is near zero); frames
    extracted at 112x84 (the training tests' store)."""
    torch.manual_seed(1)
    cfg = FitConfig(modality=modality, store="s", train_list="t", out="o", arch=arch, segments=3,
                    consensus=consensus, input_size=size, dropout=0.5)
    model = build_model(cfg, len(classes))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        model.fc.weight.normal_(0, 1.0)
    norm = NORMS[get_arch(arch).norm]
    prep = checkpoint.Preprocessing(modality, size, size * 256 // 224, norm)
    checkpoint.save(checkpoint.Checkpoint(model=model.state_dict(), config=cfg, classes=list(classes),
                                          preprocessing=prep, extraction={"size": [112, 84]},
                                          epoch=1), path)
