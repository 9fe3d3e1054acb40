"""Training images decoded on the training device: ``tsn-train fit --decode-on device``.

The loader workers then only read JPEG bytes and draw the augmentation (crop box, mirror); the
device decodes a whole batch in one ``torchvision.io.decode_jpeg`` call (nvJPEG on CUDA), crops,
resizes bilinearly, mirrors, and hands uint8 ``(B, K, L, S, S, C)`` to ``to_input`` like the
loader path does. Decoded pixels equal OpenCV's (both are libjpeg-turbo's exact IDCT on the CPU;
nvJPEG on a GPU may differ by a level); the resize is ``torch.nn.functional.interpolate``'s, which
differs from OpenCV's fixed-point INTER_LINEAR by rounding (at most one level, measured in the
tests), so the two paths are the same augmentation but not bit-identical inputs.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from tsn_core import modalities

from .dataset import VideoDataset
from .transforms import TrainAugment


@dataclass
class Encoded:
    """One training item before decoding: every image's bytes in snippet order (channels of one
    image adjacent: x then y for flow), the crop box and whether to mirror."""

    blobs: list[torch.Tensor]          # 1-D uint8 each, K * L * channels of them
    segments: int
    length: int
    box: tuple[int, int, int, int]     # x, y, width, height in the stored frame
    mirror: bool


class EncodedDataset(VideoDataset):
    """A training VideoDataset whose items are :class:`Encoded` (decoding deferred to the device).

    Sampling and the augmentation's random draws are VideoDataset's and TrainAugment's, in the
    same order, so an item gets the same snippets, box and mirror as on the loader path.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.train or not isinstance(self.transform, TrainAugment):
            raise ValueError("decoding on the device is for training items with TrainAugment")

    def __getitem__(self, key) -> tuple[Encoded, int]:
        record, rng, snippets = self.sample(key)
        flat = [j for s in snippets for j in s]
        spec = modalities.get(self.modality)
        unique = sorted(set(flat))
        per_channel = {ch: dict(zip(unique, self.source.read(record.video_id, ch, unique)))
                       for ch in spec.channels}
        blobs = [torch.frombuffer(bytearray(per_channel[ch][j]), dtype=torch.uint8)
                 for j in flat for ch in spec.channels]
        w, h = Image.open(io.BytesIO(per_channel[spec.channels[0]][unique[0]])).size  # header only
        box, mirror = self.transform.draw(h, w, rng)
        return Encoded(blobs, len(snippets), len(snippets[0]), box, mirror), record.label


def collate(batch: list[tuple[Encoded, int]]) -> tuple[list[Encoded], torch.Tensor]:
    """DataLoader collate for Encoded items: the items as a list, labels as a tensor."""
    return [item for item, _ in batch], torch.tensor([label for _, label in batch])


def decode_batch(items: list[Encoded], modality: str, size: int, device: torch.device) -> torch.Tensor:
    """Decode, crop, resize and mirror a batch on ``device``: uint8 ``(B, K, L, size, size, C)``,
    BGR for RGB images (the loader path's channel order)."""
    spec = modalities.get(modality)
    grey = spec.is_flow
    blobs = [b for item in items for b in item.blobs]
    with warnings.catch_warnings():
        # torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they are
        # what exists on every supported torchvision today, so say it once in the docs, not per batch.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
        images = decode_jpeg(blobs, mode=ImageReadMode.GRAY if grey else ImageReadMode.RGB, device=device)
    out, n = [], 0
    for item in items:
        count = item.segments * item.length * len(spec.channels)
        stack = torch.stack(images[n:n + count])            # (count, 1 or 3, H, W)
        n += count
        if grey:  # (frames, channels) -> one image with the channels x, y
            stack = stack.view(-1, len(spec.channels), *stack.shape[-2:])
        else:
            stack = stack.flip(1)  # RGB -> BGR
        x, y, w, h = item.box
        crop = stack[..., y:y + h, x:x + w].float()
        if (h, w) != (size, size):
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=False)
        img = crop.round_().clamp_(0, 255).to(torch.uint8)
        if item.mirror:
            img = img.flip(-1)
            if grey:
                img[:, 0] = modalities.mirrored_x(img[:, 0])
        out.append(img.permute(0, 2, 3, 1).reshape(item.segments, item.length, size, size, -1))
    return torch.stack(out)
