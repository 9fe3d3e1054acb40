"""TSN's group transforms: one crop and one flip for every image of a sample, and input scaling.

Images of a sample are a uint8 array ``(T, H, W, C)``: ``C = 3`` (BGR, as stored) for rgb and
rgbdiff, ``C = 2`` (x, y) for flow. Crops are decided by pure functions of the frame size and a
numpy Generator, so tests can pin them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from tsn_core import modalities

from .config import CROP_POSITION_CHOICES, FitConfig


def crop_sizes(short: int, input_size: int, scales: tuple[float, ...]) -> list[int]:
    """Side lengths ``int(short * s)``; within 3 px of ``input_size`` they snap to it, as in TSN."""
    sizes = [int(short * s) for s in scales]
    return [input_size if abs(s - input_size) < 3 else s for s in sizes]


def corner_offsets(h: int, w: int, ch: int, cw: int) -> list[tuple[int, int]]:
    """The five (x, y) positions of a ``cw`` x ``ch`` crop in a ``w`` x ``h`` frame: four corners and
    the centre, on a grid of quarter steps ``((w - cw) // 4, (h - ch) // 4)``. Evaluation's 10 crops
    use these; training may too (``crop_positions=5``, mmaction2's default)."""
    ws, hs = (w - cw) // 4, (h - ch) // 4
    return [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]


def check_crop_positions(positions: int) -> None:
    """A ValueError unless ``positions`` is a count ``fixed_offsets`` knows."""
    if positions not in CROP_POSITION_CHOICES:
        raise ValueError(f"crop_positions must be {' or '.join(map(str, CROP_POSITION_CHOICES))} "
                         f"(13 = the reference TSN's fixed crops, 5 = corners and centre), "
                         f"got {positions!r}")


def fixed_offsets(h: int, w: int, ch: int, cw: int, positions: int) -> list[tuple[int, int]]:
    """The (x, y) positions a training crop is drawn from, on the same quarter-step grid.

    5: ``corner_offsets``. 13: those and the reference's ``more_fix_crop`` eight (Caffe TSN's
    transform_param, tsn-pytorch's ``GroupMultiScaleCrop`` default): the middles of the four edges
    and the four quarter points. A crop as wide (or tall) as the frame has a zero step there, so
    positions coincide; the list keeps them, and each entry is drawn equally often, as in the
    reference.
    """
    check_crop_positions(positions)
    offsets = corner_offsets(h, w, ch, cw)
    if positions == 13:
        ws, hs = (w - cw) // 4, (h - ch) // 4
        offsets += [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),    # edge middles
                    (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]          # quarter points
    return offsets


def multiscale_crop_box(h: int, w: int, input_size: int, scales: tuple[float, ...],
                        rng: np.random.Generator, max_distort: int = 1, *,
                        positions: int) -> tuple[int, int, int, int]:
    """A random (x, y, width, height) crop: width and height from the scale set, at most
    ``max_distort`` steps apart (aspect-ratio jitter), placed at one of ``positions`` fixed
    places (``fixed_offsets``)."""
    sizes = crop_sizes(min(h, w), input_size, scales)
    pairs = [(cw, ch) for i, ch in enumerate(sizes) for j, cw in enumerate(sizes)
             if abs(i - j) <= max_distort]
    cw, ch = pairs[rng.integers(len(pairs))]
    offsets = fixed_offsets(h, w, ch, cw, positions)
    x, y = offsets[rng.integers(len(offsets))]
    return x, y, cw, ch


def resize(frames: np.ndarray, width: int, height: int, mirror: bool = False) -> np.ndarray:
    """Resize every image of ``(T, H, W, C)`` bilinearly (OpenCV's INTER_LINEAR), one image at a
    time, and with ``mirror`` flip it left-right too (pixels only; see :func:`hflip` for flow).

    One image at a time because resizing a T x C-channel stack in one call took 6-8 times as long
    (the rearranging copy and OpenCV's generic many-channel path). ``frames`` may be a crop view:
    nothing is copied first, and the flip is OpenCV's, into the output, not a numpy copy after.
    """
    t, h, w, c = frames.shape
    same = (h, w) == (height, width)
    if same and not mirror:
        return frames
    out = np.empty((t, height, width, c), np.uint8)
    for i in range(t):
        r = frames[i] if same else cv2.resize(frames[i], (width, height), interpolation=cv2.INTER_LINEAR)
        if mirror:
            r = cv2.flip(r, 1)
        out[i] = r if r.ndim == 3 else r[:, :, None]  # OpenCV drops a single channel axis
    return out


def crop(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, cw, ch = box
    return frames[:, y:y + ch, x:x + cw]


def hflip(frames: np.ndarray, is_flow: bool) -> np.ndarray:
    """Mirror left-right; for flow the x component changes sign, i.e. v -> 255 - v."""
    out = np.ascontiguousarray(frames[:, :, ::-1])
    if is_flow:
        out[..., 0] = modalities.mirrored_x(out[..., 0])
    return out


def rescale_short_side(frames: np.ndarray, short: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if min(h, w) == short:
        return frames
    if h <= w:
        return resize(frames, round(w * short / h), short)
    return resize(frames, short, round(h * short / w))


@dataclass(frozen=True)
class TrainAugment:
    """Multi-scale crop at one of ``crop_positions`` fixed places (13 or 5, see ``fixed_offsets``;
    the default is ``FitConfig``'s), resized to ``input_size``, then a random horizontal flip."""

    input_size: int
    scales: tuple[float, ...]
    is_flow: bool
    max_distort: int = 1
    flip: bool = True
    crop_positions: int = FitConfig.crop_positions

    def __post_init__(self) -> None:
        check_crop_positions(self.crop_positions)  # when fit starts, not in a loader worker

    def draw(self, h: int, w: int, rng: np.random.Generator) -> tuple[tuple[int, int, int, int], bool]:
        """The random part for ``h`` x ``w`` frames: the crop box, then whether to mirror (in that
        order from ``rng``; decoding on the device draws the same through here)."""
        box = multiscale_crop_box(h, w, self.input_size, self.scales, rng, self.max_distort,
                                  positions=self.crop_positions)
        return box, bool(self.flip and rng.random() < 0.5)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        box, mirror = self.draw(*frames.shape[1:3], rng)
        out = resize(crop(frames, box), self.input_size, self.input_size, mirror)
        if mirror and self.is_flow:
            out[..., 0] = modalities.mirrored_x(out[..., 0])
        return out


def eval_boxes(h: int, w: int, size: int, crops: int) -> list[tuple[int, int, int, int]]:
    """Crop boxes for evaluation: 1 = centre; 3 = start, centre and end of the long side;
    5 (and 10 with flips) = four corners and the centre."""
    if crops == 1:
        return [((w - size) // 2, (h - size) // 2, size, size)]
    if crops == 3:
        if w >= h:
            return [(x, (h - size) // 2, size, size) for x in (0, (w - size) // 2, w - size)]
        return [((w - size) // 2, y, size, size) for y in (0, (h - size) // 2, h - size)]
    if crops in (5, 10):
        return [(x, y, size, size) for x, y in corner_offsets(h, w, size, size)]
    raise ValueError(f"crops must be 1, 3 or 10, got {crops}")


@dataclass(frozen=True)
class EvalCrops:
    """Rescale the short side to ``scale_size``, then take ``crops`` fixed crops of ``input_size``.

    Returns ``(crops, T, input_size, input_size, C)``; with 10 crops the last five are the mirror
    images of the first five.
    """

    input_size: int
    scale_size: int
    crops: int
    is_flow: bool

    def __call__(self, frames: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        frames = rescale_short_side(frames, self.scale_size)
        h, w = frames.shape[1:3]
        out = [crop(frames, b) for b in eval_boxes(h, w, self.input_size, self.crops)]
        if self.crops == 10:
            out += [hflip(c, self.is_flow) for c in out]
        return np.stack(out)


# --- scaling into the network's input --------------------------------------------------------

@dataclass(frozen=True)
class InputNorm:
    """How a backbone wants its input: channel order, scale of 0-255 values, means and stds."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flow_mean: float
    flow_std: float
    diff_std: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputNorm":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


NORMS = {
    # BN-Inception as trained in Caffe: BGR, 0-255, mean subtracted (Caffe TSN's means; tsn-pytorch
    # uses 104, 117, 128), no std; flow centred on 128.
    "caffe_bgr": InputNorm(True, 1.0, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), 128.0, 1.0, 1.0),
    # torchvision ImageNet models: RGB in 0-1, ImageNet mean/std; flow and differences use the
    # mean std (differences twice it, their range being twice as wide), as tsn-pytorch does.
    "imagenet": InputNorm(False, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                          0.5, 0.226, 0.452),
}


def to_input(frames, modality: str, norm: InputNorm) -> torch.Tensor:
    """``(..., L, H, W, C)`` uint8 snippets -> float32 ``(..., C_in, H, W)`` network input, computed
    on the device ``frames`` is on (a tensor; a numpy array is taken as a CPU tensor).

    rgb: 3 channels; flow: x0, y0, x1, y1, ... (10 for L=5); rgbdiff: the L-1 differences of
    consecutive frames (15 channels for L=6). The loaders hand over uint8 (a quarter of float32's
    bytes to copy to the device) and fit, test and predict all call this on the device, so RGB
    difference is computed and scaled the same way in training and testing.
    """
    x = torch.as_tensor(frames)
    *lead, length, h, w, c = x.shape
    x = x.float()
    if modalities.get(modality).is_flow:
        x = (x * norm.scale - norm.flow_mean) / norm.flow_std
        return x.permute(*range(len(lead)), -4, -1, -3, -2).reshape(*lead, length * c, h, w)
    if not norm.bgr:
        x = x.flip(-1)
    if modalities.get(modality).differences:
        x = (x[..., 1:, :, :, :] - x[..., :-1, :, :, :]) * norm.scale / norm.diff_std
        length -= 1
    else:
        mean = torch.tensor(norm.mean, device=x.device)
        std = torch.tensor(norm.std, device=x.device)
        x = (x * norm.scale - mean) / std
    return x.permute(*range(len(lead)), -4, -1, -3, -2).reshape(*lead, length * c, h, w)
