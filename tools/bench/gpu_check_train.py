"""The training parts of the GPU check (tools/bench/gpu_check.py): the training store, what fit's
metrics.jsonl says about a run, and the test / predict child.

    store   N distinct videos copied from a store (``build_store``)
    test    test throughput; predict against test (``test_and_predict``)

``fit`` itself runs as ``tsn-train fit`` (``python -m tsn_train.cli fit``), started by the
check; ``fit_figures`` reads its step records.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np

from tools.bench.gpu_check_flow import Results

SEGMENTS = 3  # fit's default segments K per video


def train_ids(n: int) -> list[str]:
    return [f"t{i:05d}" for i in range(n)]


def build_store(spec: dict, emit: Results) -> None:
    """``spec["videos"]`` distinct videos ``tNNNNN`` in a new store, video i a copy of source
    video i mod S (its first ``frames`` frames and ``frames - 1`` flows, the source's metadata),
    and the list ``tNNNNN label`` with the source clip's index as label. So one fit epoch of
    ``--max-steps`` steps reads every video once, without an epoch boundary in the middle."""
    from tsn_core import modalities
    from tsn_core.meta import EntryMeta
    from tsn_core.store import Store
    from tsn_prep.writer import ShardWriter

    t0 = time.perf_counter()
    src = Store(Path(spec["source"]))
    sources = sorted(v for v in src.videos("rgb") if (v, "flow") in src.index)
    if not sources:
        raise SystemExit(f"{spec['source']}: no video has both rgb and flow")
    clips = sorted({v.split("/")[-1] for v in sources})
    frames = spec["frames"]
    per_source = {}
    for v in sources:
        per = {}
        for m, count in (("rgb", frames), ("flow", frames - 1)):
            entry = src.entry(v, m)
            if entry.count < count:
                raise SystemExit(f"{v}: {entry.count} {m} images, fewer than the {count} wanted")
            images = {ch: src.read(v, ch, list(range(count))) for ch in modalities.get(m).channels}
            per[m] = (images, EntryMeta(**{**entry.meta.to_dict(), "num_frames": frames}))
        per_source[v] = per
    src.close()
    out = Path(spec["store"])
    writer = ShardWriter(out)
    n, nbytes = 0, 0
    with open(spec["list"], "w") as listed:  # line by line: a store cut short still trains
        for i, vid in enumerate(train_ids(spec["videos"])):
            s = sources[i % len(sources)]
            for m, (images, meta) in per_source[s].items():
                writer.put_video(vid, m, images, meta)
                nbytes += sum(len(b) for chans in images.values() for b in chans)
            listed.write(f"{vid} {clips.index(s.split('/')[-1])}\n")
            listed.flush()
            n += 1
    writer.close()
    emit("store", videos=n, sources=len(sources), clips=len(clips), frames=frames,
         image_bytes=nbytes, seconds=time.perf_counter() - t0, store=str(out))


def fit_figures(metrics: Path, batch_size: int, modality: str, warmup_batches: int,
                segments: int = SEGMENTS) -> dict:
    """Throughput and data share of a fit run from its step records (metrics.jsonl: one per
    ``--log-every`` batches, with the data and compute seconds since the previous one), the
    first ``warmup_batches`` batches left out (loader start, cuDNN's first calls).

    ``images_per_s``: network inputs (snippets: an RGB frame, or a stack of 5 flow fields) per
    second of step time; ``jpegs_per_s``: stored images decoded per second; ``data_fraction``:
    time waiting for the loader and getting the batch onto the device, over step time."""
    from tsn_core import modalities
    records = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    kept, last, batches = [], 0, 0
    for r in steps:
        n = r["step"] - last
        last = r["step"]
        if r["step"] > warmup_batches:
            kept.append((n, r["data_seconds"], r["compute_seconds"]))
    batches = sum(n for n, _, _ in kept)
    data = sum(d for _, d, _ in kept)
    compute = sum(c for _, _, c in kept)
    spec = modalities.get(modality)
    out = {"step_records": len(steps), "warmup_batches": warmup_batches, "batches_measured": batches,
           "data_s": data, "compute_s": compute, "images_per_s": None, "data_fraction": None,
           "videos_per_s": None, "jpegs_per_s": None, "batches_run": last}
    if batches and data + compute > 0:
        videos = batches * batch_size
        out.update(videos_per_s=videos / (data + compute), images_per_s=videos * segments / (data + compute),
                   jpegs_per_s=videos * segments * spec.snippet_length * len(spec.channels) / (data + compute),
                   data_fraction=data / (data + compute))
    if epochs:
        e = epochs[-1]
        total = e["data_seconds"] + e["compute_seconds"]
        out["epoch"] = {"seconds": e.get("seconds"), "data_s": e["data_seconds"], "compute_s": e["compute_seconds"],
                        "data_fraction_with_warmup": e["data_seconds"] / total if total else None}
    return out


def _records(store: Path, modality: str, n: Optional[int]):
    from tsn_core.lists import Record
    from tsn_core.store import Store
    s = Store(store)
    ids = s.videos(modality)
    s.close()
    ids = ids[:n] if n else ids
    return [Record(v, 0) for v in ids]


def test_and_predict(spec: dict, emit: Results) -> None:
    """``test`` throughput (the 25 x 10 protocol) per stream, and predict against test on the
    raw clips (every class probability compared)."""
    import torch

    from tsn_train import distributed
    from tsn_train.predict import load_streams, predict_video
    from tsn_train.protocol import run_test
    from tsn_train.scores import softmax

    for modality, ckpt in spec["checkpoints"].items():
        records = _records(Path(spec["store"]), modality, spec["test_videos"])
        t0 = time.perf_counter()
        run_test(Path(ckpt), Path(spec["store"]), records, spec["segments"], spec["crops"],
                 workers=spec["workers"], device=spec["device"], amp=spec["amp"], progress=False)
        seconds = time.perf_counter() - t0
        emit("test", modality=modality, videos=len(records), seconds=seconds, videos_per_s=len(records) / seconds,
             segments=spec["segments"], crops=spec["crops"], amp=spec["amp"], workers=spec["workers"])
    ckpt = spec["checkpoints"].get("rgb")
    if not ckpt:
        emit("skipped", step="predict", reason="no rgb checkpoint (the rgb fit runs did not finish)")
        return
    clips = [Path(p) for p in spec["clips"]]
    records = _records(Path(spec["real_store"]), "rgb", None)
    scores = run_test(Path(ckpt), Path(spec["real_store"]), records, spec["segments"], spec["crops"],
                      workers=min(spec["workers"], len(records)), device=spec["device"], amp=spec["amp"],
                      progress=False)
    tested = dict(zip(scores.video_ids, softmax(scores.scores)))
    dev = distributed.resolve_device(spec["device"])
    streams = load_streams([Path(ckpt)], None, dev, spec["amp"])
    diffs, same_top = [], []
    for clip in clips:
        p = predict_video(clip, streams, spec["segments"], spec["crops"])
        t = tested[clip.stem]
        diffs.append(float(np.abs(p - t).max()))
        same_top.append(bool(np.argmax(p) == np.argmax(t)))
    emit("predict", modality="rgb", videos=len(clips), amp=spec["amp"], max_abs_probability_difference=max(diffs),
         per_video=diffs, same_top1=all(same_top), equal_within_1e_5=max(diffs) <= 1e-5,
         device=str(dev), bf16=torch.bfloat16 == distributed.autocast_dtype(spec["amp"], dev))
