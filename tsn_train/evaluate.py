"""The paper's test protocol: N evenly spaced snippets x crops per video, averaged before softmax."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from tsn_prep import modalities
from tsn_prep.store import Store

from . import checkpoint, distributed
from .config import FitConfig
from .dataset import ShardSampler, VideoDataset, single_threaded_decoding
from .lists import Record, validate
from .models import TSN
from .scores import Scores
from .transforms import EvalCrops, InputNorm


def load_model(path: Path, device: torch.device) -> tuple[TSN, dict]:
    """The model of a fit checkpoint, in eval mode, and the checkpoint (config, classes, ...)."""
    ckpt = checkpoint.load(path)
    cfg = FitConfig(**ckpt["config"])
    model = TSN(len(ckpt["classes"]), cfg.modality, cfg.arch, cfg.segments, cfg.consensus,
                cfg.dropout, cfg.partial_bn, cfg.topk)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


@torch.inference_mode()
def snippet_crop_scores(model: TSN, x: torch.Tensor, batch: int,
                        amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``(crops, snippets, C, H, W)`` -> class scores ``(crops, snippets, classes)``, ``batch``
    snippet-crops per forward pass."""
    flat = x.flatten(0, 1)
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        out = torch.cat([model.snippet_scores(chunk)[0].float() for chunk in flat.split(batch)])
    return out.view(*x.shape[:2], -1)


def video_score(per_crop_snippet: torch.Tensor) -> torch.Tensor:
    """Average over crops, then over snippets: the video's score before softmax."""
    return per_crop_snippet.mean(dim=0).mean(dim=0)


def eval_dataset(store_root: Optional[Path], records: list[Record], counts: dict[str, int],
                 prep: dict, segments: int, crops: int, images: Optional[object] = None) -> VideoDataset:
    """Test items ``(crops, segments, C, S, S)``: snippets at segment centres, fixed crops."""
    modality = prep["modality"]
    transform = EvalCrops(prep["input_size"], prep["scale_size"], crops,
                          modalities.get(modality).is_flow)
    return VideoDataset(store_root, records, counts, modality, segments, False, transform,
                        InputNorm.from_dict(prep["norm"]), images=images)


def run_test(ckpt_path: Path, store_root: Path, records: list[Record], segments: int = 25,
             crops: int = 10, batch: int = 64, workers: int = 2, device: str = "auto",
             amp: bool = True, progress: bool = True) -> Scores:
    """Score every listed video with the checkpoint's model; the list is checked against the store."""
    dev = distributed.resolve_device(device)
    model, ckpt = load_model(ckpt_path, dev)
    prep = ckpt["preprocessing"]
    store = Store(store_root)
    counts = validate(records, store, prep["modality"], len(ckpt["classes"]), "test list")
    store.close()
    ds = eval_dataset(store_root, records, counts, prep, segments, crops)
    if workers:
        single_threaded_decoding()
    loader = DataLoader(ds, batch_size=None, sampler=ShardSampler(len(ds)), num_workers=workers,
                        pin_memory=dev.type == "cuda")
    amp_dtype = distributed.autocast_dtype("auto" if amp else "off", dev)
    scores = np.zeros((len(records), len(ckpt["classes"])), np.float32)
    for i, (x, _) in enumerate(tqdm(loader, desc="videos", unit="video", disable=not progress,
                                    dynamic_ncols=True)):
        x = x.to(dev, non_blocking=True)
        scores[i] = video_score(snippet_crop_scores(model, x, batch, amp_dtype)).cpu().numpy()
    settings = {"checkpoint": str(ckpt_path), "store": str(store_root), "segments": segments,
                "crops": crops, "modality": prep["modality"], "arch": ckpt["arch"],
                "epoch": ckpt["epoch"], "source": str(ckpt_path)}
    return Scores([r.video_id for r in records], np.array([r.label for r in records]), scores,
                  list(ckpt["classes"]), settings)
