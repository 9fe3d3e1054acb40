"""What the toolkit knows about each modality, in one place.

``tsn-prep`` stores three modalities (``rgb``, ``flow``, ``warped_flow``); ``tsn-train`` trains
four streams, ``rgbdiff`` reading the stored ``rgb`` frames. Every module (the store, extraction,
import/export, reports, sampling, transforms, the dataset, the model, the training defaults and
both command lines) reads these records instead of keeping its own table. The spec lives in
``tsn_prep`` because ``tsn_train`` depends on ``tsn_prep`` and not the other way round.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    """One modality: how it is stored, how a snippet of it is read, and how a stream of it is
    trained by default (the reference settings, SPEC "Reference defaults"; schedules in epochs of
    UCF101 split 1: 9537 videos, 74.5 iterations of 128 per epoch)."""

    name: str
    source: str                    # the stored modality its images are read from
    channels: tuple[str, ...]      # stored channels of ``source``: one one- or three-channel JPEG each
    is_flow: bool                  # x/y flow fields (mirroring inverts x; mean 128) rather than BGR frames
    snippet_length: int            # consecutive stored images one snippet reads
    input_channels: int            # channels of one snippet fed to the network
    # reference training settings
    scales: tuple[float, ...]      # multi-scale crop fractions of the short side
    dropout: float
    lr: float
    lr_steps: tuple[int, ...]      # epochs at which lr is multiplied by 0.1
    epochs: int
    clip_grad: float               # max L2 norm of the gradient

    @property
    def stored(self) -> bool:
        """Written by tsn-prep (rgb, flow, warped_flow) rather than derived when read (rgbdiff)."""
        return self.source == self.name

    @property
    def image_channels(self) -> int:
        """Channels of one snippet image as loaders hand it over: x and y for flow, else B, G, R."""
        return len(self.channels) if self.is_flow else 3

    def images_per_video(self, frames: int) -> int:
        """Stored images of a video of ``frames`` decoded frames: one per frame, one per pair for flow."""
        return frames - 1 if self.is_flow else frames


_RGB_SCHEDULE = dict(lr=0.001, lr_steps=(20, 40), epochs=47, clip_grad=40.0)
_FLOW_SCHEDULE = dict(lr=0.005, lr_steps=(134, 215), epochs=242, clip_grad=20.0)

MODALITIES: dict[str, Modality] = {
    "rgb": Modality("rgb", "rgb", ("img",), False, 1, 3,
                    scales=(1, .875, .75, .66), dropout=0.8, **_RGB_SCHEDULE),
    # Five differences of six consecutive frames, stacked: 15 channels.
    "rgbdiff": Modality("rgbdiff", "rgb", ("img",), False, 6, 15,
                        scales=(1, .875, .75), dropout=0.8, **_RGB_SCHEDULE),
    # Five flow fields, x and y of each interleaved: 10 channels.
    "flow": Modality("flow", "flow", ("flow_x", "flow_y"), True, 5, 10,
                     scales=(1, .875, .75), dropout=0.7, **_FLOW_SCHEDULE),
    "warped_flow": Modality("warped_flow", "warped_flow", ("warped_flow_x", "warped_flow_y"), True,
                            5, 10, scales=(1, .875, .75), dropout=0.7, **_FLOW_SCHEDULE),
}

STORED = tuple(name for name, m in MODALITIES.items() if m.stored)
FLOW = tuple(name for name, m in MODALITIES.items() if m.is_flow)
CHANNEL_MODALITY = {ch: name for name in STORED for ch in MODALITIES[name].channels}


def get(name: str) -> Modality:
    """The spec of ``name``; a ValueError listing the known ones otherwise."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None
