"""``tsn-train features``: per-snippet features of whole videos, for temporal action localization.

One row every ``interval`` frames (``feature_rows.snippet_centres``); each stream (a checkpoint)
reads its snippet around the row's centre, clamped to its own images, scores it at the chosen
crops and keeps the pooled feature or the class scores, averaged over the crops. A video's rows
of every stream are concatenated (in the order the checkpoints are given) and written as
``OUT/<video_id>.npy`` (float32 ``[rows, dims]``) or, ``csv100``, ``OUT/<video_id>.csv``: each
stream rescaled to 100 rows as the ActivityNet feature files are, then concatenated.

Like extraction it is a job: each video's file is written atomically (a temporary file renamed
into place), a re-run skips the videos whose file is there, ``shard_index``/``num_shards`` split
the videos by the store's hash of their id, and ``OUT/index.json`` says per video its rows, each
row's centre frame, the frame count and fps, and the settings and checkpoints that made them.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tsn_core import interrupts, modalities
from tsn_core.lists import Record, read_multilabel_list
from tsn_core.progress import bar as progress_bar
from tsn_core.store import Store
from tsn_core.store.shards import shard_of

from . import checkpoint, distributed
from .checkpoint import Checkpoint, Preprocessing
from .config import CROPS, FeatureSettings
from .dataset import ImageSource, MemoryImages, StoreImages, VideoDataset, single_threaded_decoding
from .feature_rows import csv100_text, rescale_rows, snippet_centres, snippet_frames
from .lists import store_known
from .models import TSN
from .transforms import EvalCrops, to_input
from .videos import Videos

@dataclass
class Stream:
    """One checkpoint's part of a row."""

    path: Path
    ckpt: Checkpoint
    prep: Preprocessing   # the checkpoint's, with the settings' crop and short side

    @property
    def modality(self) -> str:
        return self.prep.modality

    def dims(self, what: str) -> int:
        return len(self.ckpt.classes) if what == "scores" else self.ckpt.model["fc.weight"].shape[1]


@dataclass(frozen=True)
class FeatureSummary:
    written: int
    skipped: int           # already there
    empty: int             # no row (at most interval // 2 frames)
    out: Path


def load_streams(paths: list[Path], settings: FeatureSettings) -> list[Stream]:
    """The checkpoints, each with the preprocessing the settings ask for."""
    streams = []
    for p in paths:
        ckpt = checkpoint.load(Path(p))
        prep = ckpt.preprocessing
        size = settings.input_size or prep.input_size
        prep = Preprocessing(prep.modality, size, settings.short_side or prep.scale_size, prep.norm)
        streams.append(Stream(Path(p), ckpt, prep))
    if len({s.modality for s in streams}) < len(streams):
        raise ValueError("two checkpoints of the same modality: give one per stream")
    return streams


class RowChunks(Dataset):
    """Item ``j``: up to ``rows`` consecutive rows of one video, as every stream's uint8 crops
    ``(crops, rows, L, S, S, C)``. Rows of a long video come in several items, so one item's
    images stay small whatever the video's length."""

    def __init__(self, sources: list[ImageSource], streams: list[Stream], videos: list[Videos],
                 centres: list[np.ndarray], crops: int, rows: int):
        # one VideoDataset per stream: its image reading and crops (its own sampling is unused)
        self.readers = [VideoDataset(source, v, None, s.modality, 1, False,
                                     EvalCrops(s.prep.input_size, s.prep.scale_size, crops,
                                               modalities.get(s.modality).is_flow))
                        for source, s, v in zip(sources, streams, videos)]
        self.centres = centres
        self.jobs = [(i, a, min(a + rows, len(c))) for i, c in enumerate(centres) for a in range(0, len(c), rows)]

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, j: int) -> list[torch.Tensor]:
        i, a, b = self.jobs[j]
        out = []
        for reader in self.readers:
            length = modalities.get(reader.modality).snippet_length
            rows = snippet_frames(self.centres[i][a:b], length, reader.videos.count(i))
            frames = reader.transform(reader.load(reader.videos.video_id(i), rows.ravel().tolist()))
            out.append(torch.from_numpy(np.ascontiguousarray(
                frames.reshape(frames.shape[0], b - a, length, *frames.shape[-3:]))))
        return out


@torch.inference_mode()
def row_features(model: TSN, images: torch.Tensor, prep: Preprocessing, what: str) -> np.ndarray:
    """``(crops, rows, L, S, S, C)`` uint8 -> ``(rows, dims)`` float32: each snippet-crop's pooled
    feature or class scores, averaged over the crops."""
    device = next(model.parameters()).device
    crops, rows = images.shape[:2]
    x = to_input(images.flatten(0, 1).to(device), prep.modality, prep.norm)
    scores, pooled = model.snippet_scores(x)
    out = pooled if what == "pool" else scores
    return out.float().view(crops, rows, -1).mean(dim=0).cpu().numpy()


def video_file(out: Path, video_id: str, fmt: str) -> Path:
    return out / f"{video_id}.{'npy' if fmt == 'npy' else 'csv'}"


def write_atomic(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it into place: a kill
    never leaves a half file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def video_output(parts: list[np.ndarray], fmt: str) -> Optional[bytes | np.ndarray]:
    """A video's file content from its streams' ``(rows, dims)`` parts (None: no file, a
    video without rows has nothing to rescale to 100)."""
    if fmt == "npy":
        return np.concatenate(parts, axis=1).astype(np.float32)
    if len(parts[0]) == 0:
        return None
    return csv100_text(np.concatenate([rescale_rows(p) for p in parts], axis=1)).encode()


def save_video(out: Path, video_id: str, parts: list[np.ndarray], fmt: str) -> bool:
    content = video_output(parts, fmt)
    if content is None:
        return False
    path = video_file(out, video_id, fmt)
    if fmt == "npy":
        write_atomic(path, lambda f: np.save(f, content))
    else:
        write_atomic(path, lambda f: f.write(content))
    return True


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Shards of one job write one index.json: one at a time."""
    with open(out / ".index.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_settings(settings: FeatureSettings, streams: list[Stream]) -> dict:
    return {**asdict(settings), "streams": [
        {"checkpoint": str(s.path), "modality": s.modality, "arch": s.ckpt.arch, "epoch": s.ckpt.epoch,
         "input_size": s.prep.input_size, "short_side": s.prep.scale_size,
         "dims": s.dims(settings.what)} for s in streams]}


def check_index(out: Path, wanted: dict) -> dict:
    """index.json as it is (``videos`` and ``settings``), after checking its settings are these."""
    path = out / "index.json"
    if not path.exists():
        return {"settings": wanted, "videos": {}}
    index = json.loads(path.read_text(encoding="utf-8"))
    stored = index.get("settings", {})
    diff = [f"{k}: {stored.get(k)!r} there, {v!r} now" for k, v in wanted.items() if stored.get(k) != v]
    if diff:
        raise ValueError(f"{out} holds features made with other settings ({'; '.join(diff[:3])}): "
                         "give another output folder")
    return index


def _select(ids: list[str], shard_index: int, num_shards: int, part: tuple[int, int]) -> list[str]:
    p, parts = part
    return [v for v in ids if shard_of(v, num_shards * parts) == shard_index + p * num_shards]


def _from_store(store_root: Path, streams: list[Stream], list_path: Optional[Path], select) -> tuple:
    """ids, per-stream image counts and fps of the store's (or the list's) videos of this part."""
    store = Store(store_root)
    first = modalities.get(streams[0].modality)
    if list_path:
        ids = [r.video_id for r in read_multilabel_list(Path(list_path), store_known(store, streams[0].modality))]
    else:
        ids = sorted(store_known(store, streams[0].modality).ids)
    ids = select(ids)
    counts = []
    for s in streams:
        source = modalities.get(s.modality).source
        c = [store.index.count(v, source) for v in ids]
        missing = [v for v, n in zip(ids, c) if n is None]
        if missing:
            raise ValueError(f"{len(missing)} of {len(ids)} videos have no {source} in {store_root} "
                             f"(stream {s.path}): {', '.join(missing[:5])}")
        counts.append(c)
    fps = [store.entry(v, first.source).meta.fps for v in ids]
    store.close()
    return ids, counts, fps


def row_record(streams: list[Stream], counts: list[int], fps: Optional[float], interval: int) -> dict:
    """index.json's record of a video: the video's frames are the first stream's images (flows
    + 1: N frames give N - 1 flows)."""
    frames = counts[0] + (1 if modalities.get(streams[0].modality).is_flow else 0)
    c = snippet_centres(frames, interval)
    return {"rows": len(c), "centres": c.tolist(), "frames": frames, "fps": fps}


def compute(out: Path, streams: list[Stream], models: list[TSN], sources: list[ImageSource],
            ids: list[str], counts: list[list[int]], records: dict, settings: FeatureSettings,
            workers: int, batch: int, bar) -> tuple[int, int]:
    """Write the files of ``ids`` (each stream's images from its source, ``counts[s][k]`` of video
    ``k``); returns (written, empty)."""
    written = empty = 0
    crops = CROPS[settings.crop]
    vids = [Videos.of([Record(v, 0) for v in ids], dict(zip(ids, counts[s]))) for s in range(len(streams))]
    centres = [np.asarray(records[v]["centres"], dtype=np.int64) for v in ids]
    for v, c in zip(ids, centres):  # videos without rows: an empty array (npy), nothing to compute
        if len(c) == 0:
            empty += save_video(out, v, [np.zeros((0, s.dims(settings.what)), np.float32)
                                         for s in streams], settings.format)
    ds = RowChunks(sources, streams, vids, centres, crops, max(1, batch // crops))
    if workers:
        single_threaded_decoding()
    loader = DataLoader(ds, batch_size=None, num_workers=workers if len(ds) else 0,
                        worker_init_fn=interrupts.loader_worker)
    parts: list[list[np.ndarray]] = [[] for _ in streams]
    for j, images in enumerate(loader):
        i, a, b = ds.jobs[j]
        for s, (stream, model, x) in enumerate(zip(streams, models, images)):
            parts[s].append(row_features(model, x, stream.prep, settings.what))
        bar.update(b - a)
        if b == len(centres[i]):
            written += save_video(out, ids[i], [np.concatenate(p) for p in parts], settings.format)
            parts = [[] for _ in streams]
    return written, empty


def extract_features(checkpoints: list[Path], store_root: Optional[Path], out: Path,
                     settings: FeatureSettings = FeatureSettings(), list_path: Optional[Path] = None,
                     shard_index: int = 0, num_shards: int = 1, device: str = "auto", workers: int = 2,
                     batch: int = 64, progress: bool = True, part: tuple[int, int] = (0, 1),
                     videos: Optional[Path] = None, decoders: Optional[tuple[str, ...]] = None) -> FeatureSummary:
    """Write the features of the listed videos (all of the first stream's, without a list) of
    shard ``shard_index`` of ``num_shards`` that ``out`` lacks; see the module docstring.

    ``videos`` instead of ``store_root``: video files (a folder, one file or a list of paths,
    named as tsn-prep names them), each extracted in memory as its checkpoints' training stores
    were (``predict`` does the same), one at a time.

    ``part`` ``(p, P)``: this process does the shard's videos whose hash modulo
    ``num_shards * P`` is ``shard_index + p * num_shards`` (one of P processes, e.g. one per GPU;
    together they do exactly the shard's videos, since ``num_shards`` divides ``num_shards * P``)."""
    if videos is not None and list_path is not None:
        raise ValueError("--list goes with --store; with --videos, give a text file of video paths as --videos")
    dev = distributed.resolve_device(device)
    streams = load_streams(checkpoints, settings)
    wanted = run_settings(settings, streams)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out):
        check_index(out, wanted)
    select = lambda ids: _select(ids, shard_index, num_shards, part)  # noqa: E731
    models = [checkpoint.model_from_checkpoint(s.ckpt, dev) for s in streams]
    records: dict[str, dict] = {}
    written = empty = skipped = 0
    if videos is None:
        ids, counts, fps = _from_store(store_root, streams, list_path, select)
        for k, v in enumerate(ids):
            records[v] = row_record(streams, [c[k] for c in counts], fps[k], settings.interval)
        todo = [k for k, v in enumerate(ids) if not video_file(out, v, settings.format).exists()
                and not (settings.format == "csv100" and records[v]["rows"] == 0)]
        skipped = len(ids) - len(todo)
        total = int(sum(records[ids[k]]["rows"] for k in todo))
        with progress_bar(total=total, desc="snippets", unit="snippet", quiet=not progress) as bar:
            written, empty = compute(out, streams, models, [StoreImages(store_root)] * len(streams),
                                     [ids[k] for k in todo], [[c[k] for k in todo] for c in counts],
                                     records, settings, workers, batch, bar)
    else:
        from tsn_core.video_files import list_videos

        from .predict import extract_for

        items = {i.id: i for i in list_videos(Path(videos)).items}
        ids = select(sorted(items))
        with progress_bar(total=None, desc="snippets", unit="snippet", quiet=not progress) as bar:
            for v in ids:
                if video_file(out, v, settings.format).exists():
                    skipped += 1
                    continue
                cache: dict = {}
                got = [extract_for(items[v], s.ckpt, *(() if decoders is None else (decoders,)), cache=cache)
                       for s in streams]
                counts = [[len(next(iter(images.values())))] for images, _ in got]
                records[v] = row_record(streams, [c[0] for c in counts], got[0][1], settings.interval)
                w, e = compute(out, streams, models, [MemoryImages(images) for images, _ in got], [v],
                               counts, records, settings, 0, batch, bar)
                written, empty = written + w, empty + e
                update_index(out, wanted, {v: records[v]}, settings.format)  # a file, then its record
    update_index(out, wanted, records, settings.format)
    return FeatureSummary(written, skipped, empty, out)


def update_index(out: Path, wanted: dict, records: dict[str, dict], fmt: str) -> None:
    """Add the records of the videos whose file is there (or that have no row) to index.json."""
    with locked(out):
        index = check_index(out, wanted)
        for v, record in records.items():
            if video_file(out, v, fmt).exists() or record["rows"] == 0:
                index["videos"][v] = record
        write_atomic(out / "index.json", lambda f: f.write(
            (json.dumps({"settings": wanted, "videos": dict(sorted(index["videos"].items()))}, indent=1)
             + "\n").encode()))


def _one_device(p: int, devices: list[str], kwargs: dict, results) -> None:
    with interrupts.handled():
        shown = kwargs.get("progress", True) and p == 0  # one bar: the first process's
        s = extract_features(**{**kwargs, "progress": shown}, device=devices[p], part=(p, len(devices)))
    results.put((s.written, s.skipped, s.empty))


def extract_on_devices(devices: list[str], **kwargs) -> FeatureSummary:
    """:func:`extract_features` in one process per device (``cuda:0``, ``cuda:1``, ...), each on
    its part of the shard; they share the output folder and its index. One device: this process."""
    if len(devices) <= 1:
        return extract_features(**kwargs, device=devices[0] if devices else "auto")
    results = torch.multiprocessing.get_context("spawn").SimpleQueue()
    torch.multiprocessing.start_processes(_one_device, args=(devices, kwargs, results),
                                          nprocs=len(devices), start_method="spawn")
    counts = [results.get() for _ in devices]
    return FeatureSummary(*(sum(c[i] for c in counts) for i in range(3)), Path(kwargs["out"]))
