"""What the toolkit knows about each modality, in one place.

``tsn-prep`` stores three modalities (``rgb``, ``flow``, ``warped_flow``); ``tsn-train`` trains
four streams, ``rgbdiff`` reading the stored ``rgb`` frames. The store, extraction, import/export,
reports, sampling, transforms, the dataset, the model and both command lines read these records
instead of keeping their own table. How a stream of each is trained by default lives with
training (``tsn_train.config.REFERENCE``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    """One modality: how it is stored and how a snippet of it is read."""

    name: str
    source: str                    # the stored modality its images are read from
    channels: tuple[str, ...]      # stored channels of ``source``: one one- or three-channel JPEG each
    is_flow: bool                  # x/y flow fields (mirroring inverts x; mean 128) rather than BGR frames
    snippet_length: int            # consecutive stored images one snippet reads
    input_channels: int            # channels of one snippet fed to the network
    differences: bool = False      # the network sees differences of consecutive images (rgbdiff)
    camera_compensated: bool = False  # flow with the camera's motion (a homography) removed

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


MODALITIES: dict[str, Modality] = {
    "rgb": Modality("rgb", "rgb", ("img",), False, 1, 3),
    # Five differences of six consecutive frames, stacked: 15 channels.
    "rgbdiff": Modality("rgbdiff", "rgb", ("img",), False, 6, 15, differences=True),
    # Five flow fields, x and y of each interleaved: 10 channels.
    "flow": Modality("flow", "flow", ("flow_x", "flow_y"), True, 5, 10),
    "warped_flow": Modality("warped_flow", "warped_flow", ("warped_flow_x", "warped_flow_y"), True, 5, 10,
                            camera_compensated=True),
}

STORED = tuple(name for name, m in MODALITIES.items() if m.stored)
FLOW = tuple(name for name, m in MODALITIES.items() if m.is_flow)
# The flow computed first, and the flow computed from it by removing the camera's motion.
PLAIN_FLOW = next(name for name in FLOW if not MODALITIES[name].camera_compensated)
WARPED_FLOW = next(name for name in FLOW if MODALITIES[name].camera_compensated)
# The stored frames (rgb): what a video gives without computing anything, so what ``--videos`` reads.
FRAMES = next(name for name in STORED if not MODALITIES[name].is_flow)
CHANNEL_MODALITY = {ch: name for name in STORED for ch in MODALITIES[name].channels}


def mirrored_x(levels):
    """The x levels of a flow image mirrored left-right: the motion points the other way, so the
    stored level v becomes 255 - v (128, no motion, stays). For numpy arrays and torch tensors."""
    return 255 - levels


def get(name: str) -> Modality:
    """The spec of ``name``; a ValueError listing the known ones otherwise."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None
