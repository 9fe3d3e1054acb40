"""The paper's test protocol: N evenly spaced snippets x crops per video, averaged before softmax.

"Test" here and nowhere else: ``tsn-train fit`` *validates* each epoch (tsn_train/fit.py, one
centre crop at segment centres) and ``tsn-train evaluate`` computes *metrics* (mAP, accuracy) of
a score file (tsn_train/metrics.py).

``video_scores`` scores one video's ``(crops, snippets, L, H, W, C)`` uint8 images; ``tsn-train test``
(videos from a store) and ``tsn-train predict`` (videos extracted on the fly) both call it, with
the same autocast rule (``distributed.autocast_dtype``), so they agree on every device.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tsn_core.progress import bar as progress_bar

from tsn_core import interrupts, modalities

from . import checkpoint, distributed
from .checkpoint import Preprocessing
from .config import TEST_BATCH, TEST_CROPS, TEST_SEGMENTS
from .dataset import FrameSource, ShardSampler, VideoDataset, single_threaded_decoding
from tsn_core.lists import Record, read_list

from .sources import SourceSpec
from .video_source import left_out_text
from .videos import Videos
from .mtwi import combine_crops, mtwi_scores, snippet_positions
from .sampling import sample_indices
from .models import TSN
from .scores import Scores
from .transforms import EvalCrops, to_input


@torch.inference_mode()
def snippet_crop_scores(model: TSN, images: torch.Tensor, prep: Preprocessing, batch: int,
                        amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``(crops, snippets, L, H, W, C)`` uint8 images -> class scores before softmax of every
    snippet-crop, ``(crops, snippets, classes)``: moved to the model's device and scaled there
    (``to_input``), scored ``batch`` per forward pass (under autocast to ``amp_dtype`` if given)."""
    device = next(model.parameters()).device
    flat = images.flatten(0, 1)
    outs = []
    for chunk in flat.split(batch):  # scaled per chunk: 25 x 10 float flow snippets are 0.5 GB
        x = to_input(chunk.to(device, non_blocking=True), prep.modality, prep.norm)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outs.append(model.snippet_scores(x)[0].float())
    return torch.cat(outs).view(*images.shape[:2], -1)


def video_scores(model: TSN, images: torch.Tensor, prep: Preprocessing, batch: int,
                 amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The video's class scores ``(classes,)`` before softmax (the 25-snippet protocol): every
    snippet-crop scored (``snippet_crop_scores``), averaged over crops, then over snippets."""
    return snippet_crop_scores(model, images, prep, batch, amp_dtype).mean(dim=0).mean(dim=0)


class RateDataset(VideoDataset):
    """Test items of M-TWI: snippets at ``starts[video_id]`` (``mtwi.snippet_positions``)
    instead of segment centres."""

    def __init__(self, *args, starts: dict[str, list[int]], **kwargs):
        super().__init__(*args, **kwargs)
        self.starts = starts

    def indices(self, i: int, rng=None) -> list[list[int]]:
        return sample_indices(self.starts[self.videos.video_id(i)],
                              modalities.get(self.modality).snippet_length, self.videos.count(i))


def dataset_for_test(source: FrameSource, records: list[Record] | Videos,
                     counts: Optional[dict[str, int]], prep: Preprocessing, segments: int,
                     crops: int) -> VideoDataset:
    """Test items ``(crops, segments, C, S, S)``: snippets at segment centres, fixed crops.
    ``records`` and ``counts`` as :class:`VideoDataset` takes them."""
    transform = EvalCrops(prep.input_size, prep.scale_size, crops,
                          modalities.get(prep.modality).is_flow)
    return VideoDataset(source, records, counts, prep.modality, segments, False, transform)


def run_test(ckpt_path: Path, source: SourceSpec | Path, records: list[Record] | Path,
             segments: int = TEST_SEGMENTS, crops: int = TEST_CROPS, batch: int = TEST_BATCH,
             workers: int = 2, device: str = "auto",
             amp: str = "auto", progress: bool = True, mtwi: Optional[dict] = None) -> Scores:
    """Score every listed video with the checkpoint's model; the list is checked against the
    source: a store (``source`` a path, or ``SourceSpec(store=...)``), or video files
    (``SourceSpec(videos=...)``, rgb and rgbdiff: the frames decoded as the checkpoint's training
    frames were made). Videos that could not be indexed are left out, and said to be.

    Without ``mtwi``: the 25-snippet protocol (``segments`` snippets at segment centres, averaged
    over crops and snippets). With ``mtwi`` (``rate``, ``combine``, ``rule``): snippets at ``rate``
    per second over the whole video (the store's recorded fps, or the video's), crops combined per
    snippet by ``combine``, windows integrated by ``mtwi.mtwi_scores``; ``segments`` is then unused.

    ``records`` may be a list file: it is then read and every line resolved against the ids the
    source holds for the checkpoint's modality (``lists.read_list``).

    ``amp`` is ``--amp`` of ``tsn-train test`` and ``fit``: auto (bf16 or fp16 on CUDA, off on the
    CPU), off, bf16 or fp16 (``distributed.autocast_dtype``)."""
    spec_of_source = source if isinstance(source, SourceSpec) else SourceSpec(store=Path(source))
    dev = distributed.resolve_device(device)
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.model_from_checkpoint(ckpt, dev)
    prep = ckpt.preprocessing
    data = spec_of_source.open(ckpt.extraction, max(workers, 2), progress)
    list_name = "test list"
    list_path = None
    if isinstance(records, (str, Path)):
        list_name, list_path = f"test list {records}", Path(records)
        records = read_list(Path(records), data.known(prep.modality))
    checked = data.checked(records, prep.modality, len(ckpt.classes), list_name, list_path)
    if checked.left_out and progress:
        print(f"{list_name}: {left_out_text(checked.left_out)}", file=sys.stderr)
    videos = checked.videos
    if mtwi:
        spec = modalities.get(prep.modality)
        starts = {}
        for i in range(len(videos)):
            vid = videos.video_id(i)
            fps = data.fps(vid, prep.modality)
            if not fps:
                raise ValueError(f"{spec_of_source.where}: {vid} has no recorded fps (imported frames?); "
                                 "M-TWI needs it to place snippets per second")
            starts[vid] = snippet_positions(videos.count(i), fps, mtwi["rate"], spec.snippet_length)
    data.close()
    images = data.images()
    if mtwi:
        transform = EvalCrops(prep.input_size, prep.scale_size, crops,
                              modalities.get(prep.modality).is_flow)
        ds = RateDataset(images, videos, None, prep.modality, 1, False, transform, starts=starts)
    else:
        ds = dataset_for_test(images, videos, None, prep, segments, crops)
    del records  # the videos are arrays now (ds.videos); workers forked below share them
    if workers:
        single_threaded_decoding()
    loader = DataLoader(ds, batch_size=None, sampler=ShardSampler(len(ds)), num_workers=workers,
                        pin_memory=dev.type == "cuda", worker_init_fn=interrupts.loader_worker)
    amp_dtype = distributed.autocast_dtype(amp, dev)
    scores = np.zeros((len(videos), len(ckpt.classes)), np.float32)
    for i, (x, _) in enumerate(progress_bar(iterable=loader, total=len(videos), desc="videos",
                                            unit="video", quiet=not progress)):
        if mtwi:
            per = snippet_crop_scores(model, x, prep, batch, amp_dtype).cpu().numpy()
            snippets = combine_crops(per.transpose(1, 0, 2), mtwi["combine"])
            scores[i] = mtwi_scores(snippets, mtwi["rate"], rule=mtwi["rule"])
        else:
            scores[i] = video_scores(model, x, prep, batch, amp_dtype).cpu().numpy()
    settings = {"checkpoint": str(ckpt_path), "store" if spec_of_source.store else "videos": spec_of_source.where,
                "segments": segments,
                "crops": crops, "modality": prep.modality, "arch": ckpt.arch,
                "epoch": ckpt.epoch, "source": str(ckpt_path),
                "protocol": {"name": "mtwi", **mtwi} if mtwi else {"name": "segments"},
                **({"left_out": checked.left_out} if checked.left_out else {})}
    return Scores([videos.video_id(i) for i in range(len(videos))], videos.labels.copy(), scores,
                  list(ckpt.classes), settings)
