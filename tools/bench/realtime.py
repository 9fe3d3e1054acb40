"""Real-time TSN: frames per second of RGB + RGB difference against RGB + flow, and whether
``tsn-train stream`` keeps up with a 25 fps source.

Part 1, the paper's speed table: a video processed densely, every frame decoded once, its motion
input computed once (RGB difference: nothing more; flow: one TV-L1 field per frame), a snippet
ending at every frame scored by both streams. Same network, frames and snippets; the two pairs
interleaved within each repeat; medians. Part 2: ``run_stream`` on a 25 fps file played at its
frame rate, ResNet-18 rgb + rgbdiff at 224x224, K=3, a 2 s window. Weights are random.

    python -m tools.bench.realtime [--quick] [--repeats 3] [--frames 16] [--device cpu|cuda]
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from tools.bench.common import VIDEOS, Clock, finish, log, median, parse_args, parser
from tsn_core import modalities
from tsn_core.machine import usable_cores
from tsn_prep.extraction.backends import make_flow_fn
from tsn_prep.extraction.params import ExtractParams
from tsn_core.quantize import quantize
from tsn_train import archs
from tsn_train.checkpoint import Checkpoint, Preprocessing
from tsn_train.config import FitConfig
from tsn_train.export import Deployable
from tsn_train.models.tsn import build_model
from tsn_train.predict import Stream
from tsn_train.stream import Scorer, run_stream
from tsn_train.transforms import NORMS, EvalCrops
from tsn_prep.video import VideoReader

CLIP = VIDEOS / "poolcleaning.mp4"                  # 340x256 at 30 fps
SOURCE_CLIP = VIDEOS / "eyemakeup_ucf101like.avi"   # 320x240 at 25 fps
STORED = ExtractParams().size
CLASSES = [f"class{i}" for i in range(101)]  # UCF101's number of classes
SNIPPET = modalities.get("flow").snippet_length  # flow fields (and frame differences) per snippet


def stream_of(arch: str, modality: str, segments: int, device: torch.device) -> Stream:
    """An untrained stream as fit would build it (input size and scaling of ``arch``)."""
    cfg = FitConfig(modality=modality, store="-", train_list="-", out="-", arch=arch, segments=segments, dropout=0.5)
    spec = archs.get(arch)
    model = build_model(cfg, len(CLASSES)).to(device).eval()
    ckpt = Checkpoint(model=model.state_dict(), config=cfg, classes=CLASSES,
                      preprocessing=Preprocessing.of(cfg, spec.input_size, NORMS[spec.norm]),
                      extraction={"size": list(STORED)}, epoch=0)
    return Stream(model, ckpt, 1.0)


@torch.inference_mode()
def score(model: Deployable, x: np.ndarray, batch: int, device: torch.device) -> None:
    for i in range(0, len(x), batch):
        model(torch.from_numpy(x[i:i + batch]).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()


def dense(pair: str, n: int, models: dict, crops: tuple, tvl1, batch: int, device: torch.device) -> float:
    """Seconds to process ``n`` frames with RGB + ``pair`` (rgbdiff or flow)."""
    t = time.perf_counter()
    frames = list(VideoReader(CLIP, size=STORED, max_frames=n + SNIPPET).frames())
    cropped = crops[0](np.stack(frames))[0]                       # (T, S, S, 3)
    ends = np.arange(SNIPPET, n + SNIPPET)
    score(models["rgb"], cropped[ends][:, None, None], batch, device)
    if pair == "rgbdiff":
        snippets = np.stack([cropped[e - SNIPPET:e + 1] for e in ends])[:, None]
    else:
        grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        fields = crops[1](np.stack([quantize(tvl1(a, b)) for a, b in zip(grey, grey[1:])]))[0]
        snippets = np.stack([fields[e - SNIPPET:e] for e in ends])[:, None]
    score(models[pair], snippets, batch, device)
    return time.perf_counter() - t


def part1(args, device: torch.device) -> list[dict]:
    on_gpu = device.type == "cuda"  # the PyTorch TV-L1 on a GPU: the PyPI OpenCV has no CUDA
    tvl1 = make_flow_fn(gpu=(device.index or 0) if on_gpu else None, backend="torch" if on_gpu else "opencv")
    rows = []
    for arch in args.archs:
        models = {}
        for m in ("rgb", "rgbdiff", "flow"):
            s = stream_of(arch, m, 1, device)  # one snippet per video: a snippet per frame
            models[m] = Deployable(s.model, s.checkpoint.preprocessing)
        size = archs.get(arch).input_size
        crops = (EvalCrops(size, size * 256 // 224, 1, False), EvalCrops(size, size * 256 // 224, 1, True))
        for pair in ("rgbdiff", "flow"):  # warm-up
            dense(pair, 2, models, crops, tvl1, args.batch, device)
        times: dict = {"rgbdiff": [], "flow": []}
        for r in range(args.repeats):
            for pair in ("rgbdiff", "flow") if r % 2 == 0 else ("flow", "rgbdiff"):
                times[pair].append(dense(pair, args.frames, models, crops, tvl1, args.batch, device))
                log(f"{arch} {pair} repeat {r + 1}: {args.frames / times[pair][-1]:.2f} frames/s")
        fps = {p: args.frames / median(v) for p, v in times.items()}
        rows.append({"arch": arch, "size": size, "rgbdiff_fps": fps["rgbdiff"], "flow_fps": fps["flow"],
                     "ratio": fps["rgbdiff"] / fps["flow"], "ratios": [f / d for d, f in zip(times["rgbdiff"], times["flow"])],
                     "tvl1": getattr(tvl1, "name", "?")})
    return rows


def part2(args, device: torch.device) -> tuple[list[dict], float]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source25.avi"  # the 25 fps clip looped, written with OpenCV (MJPG)
        frames = list(VideoReader(SOURCE_CLIP).frames())
        cap = cv2.VideoCapture(str(SOURCE_CLIP))
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        n = int(round(args.stream_seconds * fps))
        writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames[0].shape[1::-1])
        for i in range(n):
            writer.write(frames[i % len(frames)])
        writer.release()
        streams = [stream_of("resnet18", m, 3, device) for m in ("rgb", "rgbdiff")]
        for every in args.every:
            load = os.getloadavg()[0]
            s = run_stream(str(source), Scorer(streams, None, device), CLASSES, 2.0, every, realtime=True, emit=lambda u: None)
            d = s.to_dict()
            rows.append({"every": every, "updates": d["updates"], "skipped": d["skipped"],
                         "median_ms": float(np.median(s.latencies) * 1000), "mean_ms": d["mean_latency_ms"],
                         "max_ms": d["max_latency_ms"], "lag_s": s.wall_seconds - s.source_seconds, "load": load})
    return rows, fps


def main(argv: Optional[list[str]] = None) -> int:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=16, help="frames per pass of part 1")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--archs", default="resnet18,bn_inception")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=usable_cores(), help="PyTorch and OpenCV threads of part 1")
    p.add_argument("--every", default="0.5,0.25", help="update periods of part 2, seconds")
    p.add_argument("--stream-seconds", type=float, default=30.0)
    args = parse_args(p, argv, archs="resnet18", frames=4, repeats=1, stream_seconds=5.0, every="0.5")
    args.archs, args.every = args.archs.split(","), [float(v) for v in args.every.split(",") if v]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (the GPU figures need one)")
    clock = Clock(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    rows1 = part1(args, device)
    torch.set_num_threads(max(1, usable_cores() - 1))  # part 2 leaves a core to decoding
    stream_threads = torch.get_num_threads()
    rows2, fps = part2(args, device) if args.stream_seconds > 0 else ([], 25.0)
    cuda = device.type == "cuda"
    finish("bench_realtime", {
        "section": "bench_realtime", "template": "realtime", **clock.stamp("tools.bench.realtime"),
        "cuda": cuda, "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "CPU",
        "cores": usable_cores(), "batch": args.batch, "clip": CLIP.name, "stored": "{}x{}".format(*STORED),
        "frames": args.frames, "repeats": args.repeats, "torch_threads": threads, "cv2_threads": cv_threads,
        "classes": len(CLASSES), "dense": rows1, "stream_seconds": args.stream_seconds, "stream_fps": fps,
        "source_clip": SOURCE_CLIP.name, "stream_threads": stream_threads, "stream": rows2}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
