#!/usr/bin/env python
"""Write a tiny labelled video set for trying tsn-prep (and later tsn-train) end to end.

Each clip shows a textured object moving over a textured background; the class is the direction
of the object's motion (left, right, up, down), so only motion tells the classes apart. Half of the
clips add a camera pan, which warped flow removes. Deterministic for a given --seed.

    python tools/make_demo_videos.py data/demo --clips-per-class 2 --frames 16
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random colour texture, so that flow has something to track everywhere."""
    noise = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def make_clip(rng: np.random.Generator, direction: tuple[int, int], frames: int, size: tuple[int, int],
              speed: float, pan: tuple[float, float]) -> list[np.ndarray]:
    w, h = size
    margin = int(speed * frames + abs(pan[0]) * frames + abs(pan[1]) * frames) + 8
    background = texture(rng, h + 2 * margin, w + 2 * margin)
    obj = texture(rng, h // 3, w // 4)
    oh, ow = obj.shape[:2]
    start = np.array([(w - ow) / 2, (h - oh) / 2]) - np.array(direction) * speed * frames / 2
    out = []
    for t in range(frames):
        cam = np.array(pan) * t
        x0, y0 = int(round(margin + cam[0])), int(round(margin + cam[1]))
        frame = background[y0:y0 + h, x0:x0 + w].copy()
        ox, oy = (start + np.array(direction) * speed * t).round().astype(int)
        frame[oy:oy + oh, ox:ox + ow] = obj
        out.append(frame)
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write mp4v video here")
    for f in frames:
        writer.write(f)
    writer.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write <class>/<clip>.mp4 into")
    ap.add_argument("--clips-per-class", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="340x256", help="WIDTHxHEIGHT")
    ap.add_argument("--speed", type=float, default=3.0, help="object speed, px per frame")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lists", type=Path, default=None,
                    help="also write demo_train.txt / demo_test.txt / demo_classes.txt here "
                         "(the last --test-per-class clips of each class are the test set)")
    ap.add_argument("--test-per-class", type=int, default=1)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(args.seed)
    n = 0
    split: dict[str, list[str]] = {"train": [], "test": []}
    for label, (name, direction) in enumerate(DIRECTIONS.items()):
        for k in range(args.clips_per_class):
            pan = (rng.uniform(-2, 2), rng.uniform(-1, 1)) if k % 2 else (0.0, 0.0)
            frames = make_clip(rng, direction, args.frames, size, args.speed, pan)
            write_video(args.out / name / f"{name}_{k:02d}.mp4", frames)
            part = "test" if k >= args.clips_per_class - args.test_per_class else "train"
            split[part].append(f"{name}/{name}_{k:02d} {label}\n")  # ids as tsn-prep names them
            n += 1
    print(f"wrote {n} clips of {args.frames} frames ({args.size}) to {args.out}")
    if args.lists:
        args.lists.mkdir(parents=True, exist_ok=True)
        for part, lines in split.items():
            (args.lists / f"demo_{part}.txt").write_text("".join(lines))
        (args.lists / "demo_classes.txt").write_text("".join(f"{c}\n" for c in DIRECTIONS))
        print(f"wrote {len(split['train'])} train / {len(split['test'])} test lines and the class "
              f"names to {args.lists}")


if __name__ == "__main__":
    main()
