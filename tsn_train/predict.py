"""``tsn-train predict``: raw videos in, class names out, extracting what each stream needs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from tsn_core.lists import Record
from tsn_prep.extraction.scheduler import Progress, extract_one
from tsn_prep.extraction.params import ExtractParams
from tsn_prep.extraction.plan import RunPlan
from tsn_core.video_files import VideoItem
from tsn_prep.video import DECODERS

from . import checkpoint, distributed
from .checkpoint import Checkpoint
from .config import TEST_BATCH, TEST_CROPS, TEST_SEGMENTS
from .dataset import MemoryImages
from .protocol import dataset_for_test, video_scores
from .models import TSN
from .scores import softmax


@dataclass
class Stream:
    model: TSN
    checkpoint: Checkpoint
    weight: float
    amp_dtype: Optional[torch.dtype] = None


def load_streams(paths: list[Path], weights: Optional[list[float]], device: torch.device,
                 amp: str = "auto") -> list[Stream]:
    """The checkpoints' models on ``device``, scored under autocast as ``tsn-train test --amp
    amp`` scores (``auto``: bf16/fp16 on CUDA, off on the CPU)."""
    weights = weights or [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"{len(paths)} checkpoints but {len(weights)} weights")
    amp_dtype = distributed.autocast_dtype(amp, device)
    streams = []
    for p, w in zip(paths, weights):
        ckpt = checkpoint.load(p)
        streams.append(Stream(checkpoint.model_from_checkpoint(ckpt, device), ckpt, w, amp_dtype))
    classes = streams[0].checkpoint.classes
    for p, s in zip(paths, streams):
        if s.checkpoint.classes != classes:
            raise ValueError(f"{p}: its classes differ from {paths[0]}'s; streams must share classes")
    return streams


def extract_for(item: VideoItem, ckpt: Checkpoint, decoders: Sequence[str] = DECODERS,
                progress: Progress = lambda what, n: None,
                cache: Optional[dict] = None) -> tuple[dict[str, list[bytes]], Optional[float]]:
    """The images ``ckpt``'s stream reads of the video ``item`` (``{channel: [JPEG bytes]}``),
    extracted with the parameters of its training store, and the video's fps. ``cache`` shares
    one decode between streams of equal parameters (RGB and RGB difference). A ValueError naming
    the file if the video cannot be read."""
    modality = ckpt.preprocessing.modality
    params = ExtractParams.from_parameters(ckpt.extraction, modality)
    cache = {} if cache is None else cache
    if params not in cache:  # frozen: equal settings, one extraction
        result = extract_one(item, params, RunPlan(workers=0, decoders=tuple(decoders)), progress)
        if result.error:
            raise ValueError(f"{item.path}: {result.error}")
        source = params.modalities[0]
        cache[params] = (result.images[source], result.meta[source].fps)
    return cache[params]


def predict_video(path: Path, streams: list[Stream], segments: int = TEST_SEGMENTS,
                  crops: int = TEST_CROPS, batch: int = TEST_BATCH,
                  decoders: Sequence[str] = DECODERS,
                  progress: Progress = lambda what, n: None) -> np.ndarray:
    """Fused class probabilities of one video: each stream's score (crops, then snippets
    averaged), softmax, weighted average. Raises ValueError if the video cannot be read.
    ``progress`` hears of the frames decoded and flow pairs solved (``tsn_prep.extraction.scheduler``)."""
    extracted: dict = {}
    fused = 0.0
    for s in streams:
        prep = s.checkpoint.preprocessing
        images, _ = extract_for(VideoItem(path.stem, path), s.checkpoint, decoders, progress, extracted)
        count = len(next(iter(images.values())))
        ds = dataset_for_test(MemoryImages(images), [Record(path.stem, 0)], {path.stem: count}, prep,
                              segments, crops)
        x, _ = ds[0]
        score = video_scores(s.model, x, prep, batch, s.amp_dtype).cpu().numpy()
        fused = fused + s.weight * softmax(score[None])[0]
    return fused / sum(s.weight for s in streams)
