"""Runs an extraction job over many videos: shard filter, resume, workers, progress, failures."""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from joblib import Parallel, delayed
from tqdm import tqdm

from .engine import engine_results, uses_engine
from .extract import ExtractConfig, default_threads, extract_video
from .store import ShardWriter, shard_of
from .video import VideoItem, list_videos


@dataclass
class RunSummary:
    total: int = 0        # videos of this shard
    skipped: int = 0      # already complete for every requested modality
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    pairs: int = 0
    frames: int = 0
    seconds: float = 0.0


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def run_extraction(videos: Path, out: Path, cfg: ExtractConfig, workers: int = 1,
                   shard_index: int = 0, num_shards: int = 1, progress: bool = True,
                   engine: Optional[bool] = None) -> RunSummary:
    """Extract ``cfg.modalities`` for the videos of one shard into ``out``; resumable.

    A video is skipped when every requested modality is already complete; otherwise only its
    missing modalities are computed. A failure is printed, recorded in the store and the run
    goes on.

    TV-L1 flow with the torch backend runs through the batching engine (``tsn_prep.engine``:
    ``workers`` decoding processes, one solver per device in this process) unless ``engine`` is
    False; everything else, one ``extract_video`` per video in ``workers`` processes. Both give the
    same results. ``cfg.batch_pairs`` 0 or None means auto (the engine's memory-based choice; 8
    pairs per call on the per-video path).
    """
    with_engine = uses_engine(cfg) if engine is None else (engine and uses_engine(cfg))
    if not cfg.batch_pairs and not with_engine:
        cfg = dataclasses.replace(cfg, batch_pairs=8)
    start = time.perf_counter()
    listing = list_videos(videos)
    writer = ShardWriter(out, shard_index, num_shards)
    summary = RunSummary()
    results = []
    try:
        mine = lambda item: shard_of(item.id, num_shards) == shard_index  # noqa: E731
        for item, problem in listing.rejected:
            if mine(item):
                summary.total += 1
                _record_failure(writer, summary, item, cfg.modalities, problem)

        todo: list[tuple[VideoItem, ExtractConfig]] = []
        for item in filter(mine, listing.items):
            summary.total += 1
            missing = tuple(m for m in cfg.modalities if not writer.is_complete(item.id, m))
            if missing:
                # Several GPUs: videos are dealt round-robin over the devices.
                gpu = cfg.gpus[len(todo) % len(cfg.gpus)] if cfg.gpus else cfg.gpu
                todo.append((item, dataclasses.replace(cfg, modalities=missing, gpu=gpu,
                                                       threads=default_threads(workers))))
            else:
                summary.skipped += 1

        wanted = {item.id: item_cfg.modalities for item, item_cfg in todo}
        bar = tqdm(total=len(todo), unit="video", disable=not progress, file=sys.stderr,
                   desc=f"shard {shard_index}/{num_shards}" if num_shards > 1 else "videos")
        # Unordered results: a slow video does not hold back the writes of the ones after it.
        if with_engine:
            results = engine_results(todo, cfg, workers, say=_say)
        else:
            results = Parallel(n_jobs=workers, return_as="generator_unordered")(
                delayed(extract_video)(item, item_cfg) for item, item_cfg in todo
            ) if todo else []
        for result in results:
            if result.error:
                _record_failure(writer, summary, result.item, wanted[result.item.id], result.error)
            else:
                for modality, images in result.images.items():
                    writer.put_video(result.item.id, modality, images, result.meta[modality])
                summary.done += 1
                summary.pairs += result.pairs
                meta = next(iter(result.meta.values()))  # video-level fields are in every modality's
                summary.frames += meta["num_frames"]
                warning = meta.get("warning")
                if warning:
                    summary.warnings.append((str(result.item.path), warning))
                    _say(f"warning: {result.item.path}: {warning}")
            bar.update(1)
            elapsed = time.perf_counter() - start
            if summary.pairs:
                bar.set_postfix_str(f"{summary.pairs / elapsed:.2f} pairs/s")
            else:
                bar.set_postfix_str(f"{summary.frames / elapsed:.1f} frames/s")
        bar.close()
    finally:
        getattr(results, "close", lambda: None)()  # the engine's workers and threads end now
        writer.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _record_failure(writer: ShardWriter, summary: RunSummary, item: VideoItem,
                    modalities: tuple[str, ...], error: str) -> None:
    summary.failed.append((str(item.path), error))
    _say(f"error: {item.path}: {error}")
    for m in modalities:
        writer.put_failure(item.id, m, str(item.path), error)
