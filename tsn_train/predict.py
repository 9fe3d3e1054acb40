"""``tsn-train predict``: raw videos in, class names out, extracting what each stream needs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from tsn_prep import modalities
from tsn_prep.extract import ExtractConfig, extract_video
from tsn_prep.tvl1_params import TVL1Params
from tsn_prep.video import VideoItem
from tsn_prep.warp import WarpParams

from .evaluate import eval_dataset, load_model, snippet_crop_scores, video_score
from .lists import Record
from .models import TSN
from .scores import softmax


@dataclass
class Stream:
    model: TSN
    checkpoint: dict
    weight: float


class ExtractedImages:
    """The freshly extracted JPEGs of one video, read like a store."""

    def __init__(self, images: dict[str, list[bytes]]):
        self.images = images

    def read(self, video_id: str, channel: str, indices: list[int]) -> list[bytes]:
        return [self.images[channel][i] for i in indices]


def extract_config(parameters: dict, modality: str) -> ExtractConfig:
    """The extraction settings the training store used (recorded in the checkpoint)."""
    source = modalities.get(modality).source
    return ExtractConfig(
        modalities=(source,), size=tuple(parameters["size"]) if parameters.get("size") else None,
        short_side=parameters.get("short_side"), bound=parameters.get("bound", 20.0),
        jpeg_quality=parameters.get("jpeg_quality", 95), tvl1=TVL1Params.from_dict(parameters.get("tvl1") or {}),
        warp=WarpParams(**(parameters.get("warp") or {})))


def load_streams(paths: list[Path], weights: Optional[list[float]], device: torch.device) -> list[Stream]:
    weights = weights or [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"{len(paths)} checkpoints but {len(weights)} weights")
    streams = [Stream(*load_model(p, device), w) for p, w in zip(paths, weights)]
    classes = streams[0].checkpoint["classes"]
    for p, s in zip(paths, streams):
        if s.checkpoint["classes"] != classes:
            raise ValueError(f"{p}: its classes differ from {paths[0]}'s; streams must share classes")
    return streams


def predict_video(path: Path, streams: list[Stream], segments: int = 25, crops: int = 10,
                  batch: int = 64) -> np.ndarray:
    """Fused class probabilities of one video: each stream's score (crops, then snippets
    averaged), softmax, weighted average. Raises ValueError if the video cannot be read."""
    device = next(streams[0].model.parameters()).device
    extracted: dict[tuple, dict] = {}
    fused = 0.0
    for s in streams:
        prep, params = s.checkpoint["preprocessing"], s.checkpoint.get("extraction") or {}
        cfg = extract_config(params, prep["modality"])
        key = (cfg.modalities, cfg.size, cfg.short_side, cfg.bound, cfg.jpeg_quality, cfg.tvl1, cfg.warp)
        if key not in extracted:  # an RGB and an RGB-difference stream share one decode
            result = extract_video(VideoItem(path.stem, path), cfg)
            if result.error:
                raise ValueError(f"{path}: {result.error}")
            extracted[key] = result.images[cfg.modalities[0]]
        images = extracted[key]
        count = len(next(iter(images.values())))
        ds = eval_dataset(None, [Record(path.stem, 0)], {path.stem: count}, prep, segments, crops,
                          images=ExtractedImages(images))
        x, _ = ds[0]
        score = video_score(snippet_crop_scores(s.model, x.to(device), batch)).cpu().numpy()
        fused = fused + s.weight * softmax(score[None])[0]
    return fused / sum(s.weight for s in streams)
