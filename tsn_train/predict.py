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
from .dataset import FrameSource, MemoryImages
from .protocol import dataset_for_test, video_scores
from .models import TSN
from .scores import softmax
from .video_source import FrameSettings, VideoSource
from .videos import Videos


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
        source, videos = frames_for(path, s.checkpoint, decoders, progress, extracted)
        ds = dataset_for_test(source, videos, None, prep, segments, crops)
        x, _ = ds[0]
        score = video_scores(s.model, x, prep, batch, s.amp_dtype).cpu().numpy()
        fused = fused + s.weight * softmax(score[None])[0]
    return fused / sum(s.weight for s in streams)


def frames_for(path: Path, ckpt: Checkpoint, decoders: Sequence[str], progress: Progress,
               cache: dict) -> tuple[FrameSource, Videos]:
    """Where ``ckpt``'s stream reads the video at ``path``, and the video as a dataset holds it:
    the sampled frames decoded from the file for a stream trained from video files (``fit
    --videos``), as its training read them; else the images extracted as its training store's
    were (``extract_for``), so predicting is testing a store of the video."""
    if ckpt.extraction.get("decoded_from") == "videos":
        source = VideoSource(path, FrameSettings.of(ckpt.extraction, decoders), progress=False)
        record = Record(next(iter(source.items)), 0)
        checked = source.checked([record], ckpt.preprocessing.modality, len(ckpt.classes), str(path))
        if checked.left_out:
            raise ValueError(f"{path}: {checked.left_out[0].split(': ', 1)[1]}")
        return source.images(), checked.videos
    images, _ = extract_for(VideoItem(path.stem, path), ckpt, decoders, progress, cache)
    count = len(next(iter(images.values())))
    return MemoryImages(images), Videos.of([Record(path.stem, 0)], [count])
