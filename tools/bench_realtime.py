"""Real-time TSN: frames per second of RGB + RGB difference against RGB + flow, and whether
``tsn-train stream`` keeps up with a 25 fps source. Writes its part of docs/performance.md.

Part 1, the paper's speed table: a video processed densely, every frame decoded once, its motion
input computed once (RGB difference: nothing beyond the frames; flow: one TV-L1 field between it
and the previous frame, the snippet's other four reused from earlier frames), and a snippet ending
at every frame scored by both streams (batches of ``--batch``). Both pairs use the same network,
the same frames and the same snippets; frames per second = frames / time, decoding included.
The two pairs are interleaved within each repeat; medians of ``--repeats``.

Part 2: ``tsn_train.stream.run_stream`` on a 25 fps file played at its frame rate (as a camera
delivers it), with a ResNet-18 rgb + rgbdiff pair at 224x224 (frames stored at 340x256, K=3,
a 2 s window): updates, skipped updates, latency, and how far decoding lagged the source.

    python tools/bench_realtime.py [--repeats 3] [--frames 16] [--archs resnet18,bn_inception]
                                   [--device cpu|cuda] [--stream-seconds 30]

Weights are random: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from docs_section import write_section  # noqa: E402

from tsn_prep.extract import usable_cores  # noqa: E402
from tsn_prep.flow import make_flow_fn  # noqa: E402
from tsn_prep.quantize import quantize  # noqa: E402
from tsn_prep.tvl1_params import TVL1Params  # noqa: E402
from tsn_prep.video import VideoReader  # noqa: E402
from tsn_train import archs  # noqa: E402
from tsn_train.checkpoint import Checkpoint, Preprocessing  # noqa: E402
from tsn_train.config import FitConfig  # noqa: E402
from tsn_train.export import Deployable  # noqa: E402
from tsn_train.models.tsn import build_model  # noqa: E402
from tsn_train.predict import Stream  # noqa: E402
from tsn_train.stream import Scorer, run_stream  # noqa: E402
from tsn_train.transforms import NORMS, EvalCrops  # noqa: E402

DATA = Path(os.environ.get("TSN_TEST_DATA") or REPO.parent / "shared" / "data")
CLIP = DATA / "videos" / "poolcleaning.mp4"          # 340x256 at 30 fps
SOURCE_CLIP = DATA / "videos" / "eyemakeup_ucf101like.avi"   # 320x240 at 25 fps
STORED = (340, 256)
DOCS = REPO / "docs" / "performance.md"
CLASSES = [f"class{i}" for i in range(101)]  # UCF101's number of classes
SNIPPET = 5  # flow fields (and frame differences) per snippet


def stream_of(arch: str, modality: str, segments: int, device: torch.device) -> Stream:
    """An untrained stream as fit would build it (input size and scaling of ``arch``)."""
    cfg = FitConfig(modality=modality, store="-", train_list="-", out="-", arch=arch,
                    segments=segments, dropout=0.5)
    spec = archs.get(arch)
    prep = Preprocessing.of(cfg, spec.input_size, NORMS[spec.norm])
    model = build_model(cfg, len(CLASSES)).to(device).eval()
    ckpt = Checkpoint(model=model.state_dict(), config=cfg, classes=CLASSES, preprocessing=prep,
                      extraction={"size": list(STORED)}, epoch=0)
    return Stream(model, ckpt, 1.0)


def deployable(arch: str, modality: str, device: torch.device) -> Deployable:
    """One snippet per video (K=1): part 1 scores a snippet per frame."""
    s = stream_of(arch, modality, 1, device)
    return Deployable(s.model, s.checkpoint.preprocessing)


def decode(n: int) -> list[np.ndarray]:
    reader = VideoReader(CLIP, size=STORED, max_frames=n)
    return list(reader.frames())


@torch.inference_mode()
def score(model: Deployable, x: np.ndarray, batch: int, device: torch.device) -> None:
    for i in range(0, len(x), batch):
        model(torch.from_numpy(x[i:i + batch]).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()


def dense_rgbdiff(n: int, rgb: Deployable, diff: Deployable, crop: EvalCrops, batch: int,
                  device: torch.device) -> float:
    """Seconds to process ``n`` frames with RGB + RGB difference."""
    t = time.perf_counter()
    frames = crop(np.stack(decode(n + SNIPPET)))[0]              # (T, S, S, 3)
    ends = np.arange(SNIPPET, n + SNIPPET)
    score(rgb, frames[ends][:, None, None], batch, device)       # (n, K=1, L=1, S, S, 3)
    snippets = np.stack([frames[e - SNIPPET:e + 1] for e in ends])[:, None]  # (n, 1, 6, S, S, 3)
    score(diff, snippets, batch, device)
    return time.perf_counter() - t


def dense_flow(n: int, rgb: Deployable, flow: Deployable, crop: EvalCrops, flow_crop: EvalCrops,
               tvl1, batch: int, device: torch.device) -> float:
    """Seconds to process ``n`` frames with RGB + TV-L1 flow (one field per frame)."""
    t = time.perf_counter()
    frames = decode(n + SNIPPET)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    fields = np.stack([quantize(tvl1(a, b)) for a, b in zip(grey, grey[1:])])  # field i: i -> i+1
    fields = flow_crop(fields)[0]                                # (T-1, S, S, 2)
    cropped = crop(np.stack(frames))[0]
    ends = np.arange(SNIPPET, n + SNIPPET)
    score(rgb, cropped[ends][:, None, None], batch, device)
    snippets = np.stack([fields[e - SNIPPET:e] for e in ends])[:, None]  # (n, 1, 5, S, S, 2)
    score(flow, snippets, batch, device)
    return time.perf_counter() - t


def part1(args, device: torch.device) -> list[dict]:
    gpu = (device.index or 0) if device.type == "cuda" else None
    tvl1 = make_flow_fn(TVL1Params(), gpu=gpu)
    rows = []
    for arch in args.archs:
        models = {m: deployable(arch, m, device) for m in ("rgb", "rgbdiff", "flow")}
        size = archs.get(arch).input_size
        crop = EvalCrops(size, size * 256 // 224, 1, False)
        flow_crop = EvalCrops(size, size * 256 // 224, 1, True)
        dense_rgbdiff(2, models["rgb"], models["rgbdiff"], crop, args.batch, device)  # warm-up
        dense_flow(1, models["rgb"], models["flow"], crop, flow_crop, tvl1, args.batch, device)
        times = {"rgbdiff": [], "flow": []}
        for r in range(args.repeats):
            order = ("rgbdiff", "flow") if r % 2 == 0 else ("flow", "rgbdiff")
            for pair in order:
                if pair == "rgbdiff":
                    s = dense_rgbdiff(args.frames, models["rgb"], models["rgbdiff"], crop,
                                      args.batch, device)
                else:
                    s = dense_flow(args.frames, models["rgb"], models["flow"], crop, flow_crop,
                                   tvl1, args.batch, device)
                times[pair].append(s)
                print(f"{arch} {pair} repeat {r + 1}: {args.frames / s:.2f} frames/s", flush=True)
        fps = {p: args.frames / statistics.median(v) for p, v in times.items()}
        per_repeat = [f / d for d, f in zip(times["rgbdiff"], times["flow"])]
        rows.append({"arch": arch, "size": size, "fps": fps, "ratio": fps["rgbdiff"] / fps["flow"],
                     "ratios": per_repeat, "tvl1": getattr(tvl1, "name", "?")})
    return rows


def make_source(seconds: float, path: Path) -> tuple[int, float]:
    """A ``seconds``-long 25 fps video: the 25 fps clip looped, written with OpenCV (MJPG)."""
    frames = list(VideoReader(SOURCE_CLIP).frames())
    cap = cv2.VideoCapture(str(SOURCE_CLIP))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    n = int(round(seconds * fps))
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for i in range(n):
        writer.write(frames[i % len(frames)])
    writer.release()
    return n, fps


def part2(args, device: torch.device) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source25.avi"
        n, fps = make_source(args.stream_seconds, source)
        streams = [stream_of("resnet18", m, 3, device) for m in ("rgb", "rgbdiff")]
        for every in args.every:
            scorer = Scorer(streams, None, device)
            load = os.getloadavg()[0]
            s = run_stream(str(source), scorer, CLASSES, 2.0, every, realtime=True, emit=lambda u: None)
            lat = np.array(s.latencies)
            rows.append({"every": every, "fps": fps, "frames": n, "load": load,
                         "threads": torch.get_num_threads(), **s.to_dict(),
                         "median_latency_ms": float(np.median(lat) * 1000),
                         "lag_s": s.wall_seconds - s.source_seconds})
            print(f"stream every {every}s: {s.to_dict()}", flush=True)
    return rows


def render(args, device, rows1, rows2, started, minutes) -> str:
    threads = torch.get_num_threads()
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    lines = [
        "# Real time: RGB + RGB difference against RGB + flow (issue 16)", "",
        f"Measured on {started:%Y-%m-%d (%H:%M UTC)} by `tools/bench_realtime.py` ({minutes:.1f} min) "
        f"on {'the GPU: ' + dev if device.type == 'cuda' else f'this machine, CPU only ({usable_cores()} cores)'}. "
        "To reproduce, from the repository root:", "",
        "```", "python tools/bench_realtime.py " + " ".join(args.argv), "```", "",
        "## Frames per second, as the paper's table", "",
        "A video processed densely: every frame decoded once, its motion input computed once (RGB "
        "difference: nothing beyond the frames; flow: one TV-L1 field between it and the previous "
        "frame, the snippet's other four reused), and a snippet ending at every frame scored by both "
        f"streams, {args.batch} snippets per forward pass. Same network, same frames "
        f"({CLIP.name}, {STORED[0]}x{STORED[1]}), same snippet positions; {args.frames} frames per "
        f"pass, the pairs interleaved, medians of {args.repeats} repeats. PyTorch {threads} "
        f"thread(s), OpenCV {cv2.getNumThreads()} thread(s). Untrained weights (speed does not "
        "depend on them), 101 classes.", "",
        "| network | input | RGB + RGB diff | RGB + flow | ratio | ratio per repeat | TV-L1 |",
        "|---|---|---|---|---|---|---|"]
    for r in rows1:
        lines.append(f"| {r['arch']} | {r['size']}x{r['size']} | {r['fps']['rgbdiff']:.1f} frames/s | "
                     f"{r['fps']['flow']:.2f} frames/s | **{r['ratio']:.1f}x** | "
                     f"{', '.join(f'{x:.1f}' for x in r['ratios'])} | {r['tvl1']} |")
    lines += ["", "The paper (TPAMI, Titan X GPU): RGB + RGB difference 340 FPS, RGB + flow 14 FPS, "
              "about 24x. Here flow is TV-L1 on the "
              + ("GPU (our PyTorch solver)" if device.type == "cuda" else
                 "CPU (OpenCV, the CPU default of `tsn-prep`)") + ", which dominates its pair's time.", ""]
    if rows2:
        how = ("the GPU" if device.type == "cuda"
               else f"PyTorch {rows2[0]['threads']} thread(s) plus the decoder thread")
        lines += ["## `tsn-train stream` on a 25 fps source", "",
                  f"`run_stream` on a {rows2[0]['frames'] / rows2[0]['fps']:.0f} s video at "
                  f"{rows2[0]['fps']:g} fps ({SOURCE_CLIP.name} looped, 320x240, played at its frame "
                  "rate like a camera), ResNet-18 rgb + rgbdiff pair, frames stored at 340x256, input "
                  "224x224, K=3 snippets in a 2 s window, "
                  f"{how}. "
                  "Latency: from the window's newest frame entering the ring to the fused result. "
                  "Lag: wall time of the run minus the source's duration (how far decoding fell "
                  "behind the source).", "",
                  "| update every | updates | skipped | latency median / mean / max | lag | load avg at start |",
                  "|---|---|---|---|---|---|"]
        for r in rows2:
            lines.append(f"| {r['every']} s | {r['updates']} | {r['skipped']} | "
                         f"{r['median_latency_ms']:.0f} / {r['mean_latency_ms']:.0f} / "
                         f"{r['max_latency_ms']:.0f} ms | {r['lag_s']:.2f} s | {r['load']:.2f} |")
        lines.append("")
    if device.type != "cuda":
        lines += ["No GPU was available for this measurement: the GPU figures (`--device cuda`, "
                  "flow by our PyTorch TV-L1 on the GPU) have not been measured yet.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=16, help="frames per pass of part 1")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--archs", default="resnet18,bn_inception")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=usable_cores(),
                   help="PyTorch and OpenCV threads of part 1 (part 2 leaves one core to decoding)")
    p.add_argument("--every", default="0.5,0.25", help="update periods of part 2, seconds")
    p.add_argument("--stream-seconds", type=float, default=30.0)
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args()
    args.argv = sys.argv[1:]
    args.archs = args.archs.split(",")
    args.every = [float(v) for v in args.every.split(",") if v]
    device = torch.device(args.device)
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rows1 = part1(args, device)
    torch.set_num_threads(max(1, usable_cores() - 1))
    rows2 = part2(args, device) if args.stream_seconds > 0 else []
    torch.set_num_threads(args.threads)
    text = render(args, device, rows1, rows2, started, (time.perf_counter() - t0) / 60)
    print(text)
    if not args.no_docs:
        write_section(DOCS, "bench_realtime", text)


if __name__ == "__main__":
    main()
