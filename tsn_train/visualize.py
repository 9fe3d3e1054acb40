"""Class visualisation of a trained stream, DeepDraw-style (TSN paper, TPAMI Fig. "visualisation"):
gradient ascent on one class's pre-softmax score, starting from noise, over one snippet of the
stream's own input (an RGB frame, six RGB frames whose differences the network sees, or five flow
fields), in the stored images' 0-255 levels so a picture shows what the store would hold.

Regularisers (DeepDraw's; chosen because they are what the paper's pictures were made with, need
no change to the network and work on every backbone and modality alike):

* **octaves**: the image is optimised at ``1 / octave_scale ** k`` of the input size first and
  bilinearly upsampled to the input size for the network, then refined at the next octave (coarse
  structure first; without them the ascent fills the picture with high-frequency patterns);
* **jitter**: a random shift of up to ``jitter`` px (circular) before each step, so no pattern can
  rely on exact pixel positions;
* **blur between steps**: a Gaussian blur of the image every ``blur_every`` steps, its sigma
  falling from ``blur_start`` to ``blur_end`` over the run (DeepDraw's schedule);
* the image is kept inside the 0-255 range of stored images after each step.

Each step moves the image by ``step_size`` levels along the gradient normalised by its mean
magnitude. The functions here are pure (tensors in, tensors or arrays out); ``render`` draws the
pictures, the CLI command ``tsn-train visualize`` writes them.
"""
from __future__ import annotations

import math
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tsn_core import modalities
from tsn_core.quantize import dequantize
from tsn_core.flowcolor import flow_colors
from tsn_core.drawing import label

from .config import DrawSettings
from .transforms import InputNorm, to_input


def snippet_shape(modality: str) -> tuple[int, int]:
    """(images, channels) of one snippet in stored levels: rgb (1, 3), rgbdiff (6, 3), flow and
    warped_flow (5, 2)."""
    m = modalities.get(modality)
    return m.snippet_length, m.image_channels


def class_scores(model: torch.nn.Module, levels: torch.Tensor, modality: str,
                 norm: InputNorm) -> torch.Tensor:
    """Pre-softmax class scores ``(N, classes)`` of snippets given as stored levels
    ``(N, L, H, W, C)`` (float 0-255), through the exact input scaling of training."""
    scores, _ = model.snippet_scores(to_input(levels, modality, norm))
    return scores


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(..., H, W)`` (reflected border)."""
    if sigma < 0.05:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(shape)


def draw(model: torch.nn.Module, modality: str, norm: InputNorm, class_index: int,
         settings: DrawSettings = DrawSettings(), device: torch.device = torch.device("cpu")
         ) -> tuple[np.ndarray, np.ndarray]:
    """The visualisation of one class and the noise it started from, both ``(L, S, S, C)``
    float32 levels (S = ``settings.size``). ``model`` must be in eval mode."""
    length, channels = snippet_shape(modality)
    s = settings
    gen = torch.Generator().manual_seed(s.seed * 1_000_003 + class_index)
    sizes = [max(8, round(s.size / s.octave_scale ** k)) for k in range(s.octaves - 1, -1, -1)]
    # channels first while optimising: (L, C, h, w)
    mid = 127.5 if modalities.get(modality).is_flow else 128.0  # flow: exactly zero motion
    uniform = torch.rand((length, channels, sizes[0], sizes[0]), generator=gen) * 2 - 1
    img = mid + uniform * s.noise
    start = F.interpolate(img, size=(s.size, s.size), mode="bilinear", align_corners=False)
    img = img.to(device)
    per_octave = [s.steps // s.octaves + (k < s.steps % s.octaves) for k in range(s.octaves)]
    done = 0
    for k, size in enumerate(sizes):
        if k:
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
        for _ in range(per_octave[k]):
            img = img.detach().requires_grad_(True)
            full = F.interpolate(img, size=(s.size, s.size), mode="bilinear", align_corners=False)
            dy, dx = (int(v) for v in torch.randint(-s.jitter, s.jitter + 1, (2,), generator=gen))
            shifted = torch.roll(full, shifts=(dy, dx), dims=(-2, -1))
            snippet = shifted.permute(0, 2, 3, 1)[None]  # (1, L, H, W, C), as to_input takes
            score = class_scores(model, snippet, modality, norm)[0, class_index]
            (grad,) = torch.autograd.grad(score, img)
            with torch.no_grad():
                img = img + s.step_size * grad / (grad.abs().mean() + 1e-12)
                done += 1
                if s.blur_every and done % s.blur_every == 0:
                    frac = done / max(1, s.steps)
                    img = _blur(img, s.blur_start + (s.blur_end - s.blur_start) * frac)
                img = img.clamp(0.0, 255.0)
    final = F.interpolate(img.detach(), size=(s.size, s.size), mode="bilinear", align_corners=False)
    return _levels(final), _levels(start)


def _levels(x: torch.Tensor) -> np.ndarray:
    """(L, C, H, W) -> (L, H, W, C) float32 levels in 0-255 on the host."""
    return x.permute(0, 2, 3, 1).clamp(0, 255).float().cpu().numpy()


def probabilities(model: torch.nn.Module, levels: np.ndarray, modality: str, norm: InputNorm,
                  device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Softmax class probabilities of snippets ``(N, L, H, W, C)`` in levels."""
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(levels, np.float32), device=device)
        return torch.softmax(class_scores(model, x, modality, norm).float(), dim=1).cpu().numpy()


# ----------------------------------------------------------------------------------- pictures

def _grey(x: np.ndarray) -> np.ndarray:
    g = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


DISPLAY = 112  # px: a cell drawn smaller (a network trained on small inputs) is shown enlarged


def cells(levels: np.ndarray, modality: str, bound: float) -> list[list[np.ndarray]]:
    """The picture of one snippet as rows of BGR cells: rgb one image; rgbdiff its five
    difference frames (mid-grey is no change, stretched to the largest change); flow and warped
    flow a row of x maps in grey (the paper's rendering), a row of y maps, and a row of
    Middlebury-coloured fields on the store's fixed scale (``bound`` px: fully saturated). Cells
    smaller than DISPLAY are enlarged by a whole factor, each pixel a block (the .npz keeps the
    drawn size)."""
    rows = _cells(levels, modality, bound)
    factor = -(-DISPLAY // max(rows[0][0].shape[:2]))
    if factor <= 1:
        return rows
    return [[cv2.resize(c, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) for c in row]
            for row in rows]


def _cells(levels: np.ndarray, modality: str, bound: float) -> list[list[np.ndarray]]:
    spec = modalities.get(modality)
    if spec.differences:
        diffs = levels[1:] - levels[:-1]
        gain = 127.0 / max(float(np.abs(diffs).max()), 1e-6)
        return [[np.clip(np.rint(128 + d * gain), 0, 255).astype(np.uint8) for d in diffs]]
    if not spec.is_flow:
        return [[np.clip(np.rint(levels[0]), 0, 255).astype(np.uint8)]]
    fx, fy = dequantize(levels[..., 0], bound), dequantize(levels[..., 1], bound)
    colour = [cv2.cvtColor(flow_colors(x, y, bound), cv2.COLOR_RGB2BGR) for x, y in zip(fx, fy)]
    return [[_grey(x) for x in levels[..., 0]], [_grey(y) for y in levels[..., 1]], colour]


def grid(rows: list[list[np.ndarray]], title: str) -> np.ndarray:
    """Rows of equal-sized cells as one BGR picture with a title bar."""
    out = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    bar = np.zeros((22, out.shape[1], 3), np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([bar, out], axis=0))


def overview(tiles: list[tuple[str, np.ndarray]], columns: int = 8) -> np.ndarray:
    """One labelled tile per class (the image, the middle difference or the middle flow field in
    colour), ``columns`` to a row."""
    h, w = tiles[0][1].shape[:2]
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    out = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, (name, tile) in enumerate(tiles):
        r, c = divmod(i, cols)
        cell = np.ascontiguousarray(tile.copy())
        label(cell, name)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = cell
    return out


def overview_tile(rows: list[list[np.ndarray]]) -> np.ndarray:
    """The cell that stands for a class in the overview: the last row's middle cell."""
    last = rows[-1]
    return last[len(last) // 2]
