#!/usr/bin/env python
"""Write untrimmed test videos for the M-TWI demo (tools/untrimmed_demo.sh, docs/untrimmed.md).

Each video is a long background shot (a random texture seen by a camera that drifts slowly in a
random direction, as real untrimmed footage has irrelevant motion) with short actions at random
times: the demo's textured object crossing the frame in one of the four directions of
tools/make_demo_videos.py (same drawing code, imported). Some videos hold two different actions
(two labels, in two separate intervals), a few none (background only). Deterministic for --seed.

Writes VIDEOS/untrimmed/<id>.mp4 and, in --lists:

- ``untrimmed_labels.txt``: ``untrimmed/<id> 0,2`` or ``untrimmed/<id> -`` (``tsn-train
  evaluate --labels``)
- ``untrimmed_test.txt``: ``untrimmed/<id> label``, the first label or 0 for background
  (``tsn-train test --list``: it only feeds the accuracy line)
- ``untrimmed_actions.txt``: ``untrimmed/<id> label start_frame end_frame`` per action
  (end exclusive), for inspection

    python tools/make_untrimmed_demo.py data/untrimmed/videos --lists data/untrimmed/lists
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_videos import DIRECTIONS, texture, write_video  # noqa: E402  (the demo's drawing code)

CLASSES = list(DIRECTIONS)


@dataclass
class Action:
    label: int
    start: int   # first frame of the action
    end: int     # one past its last frame


@dataclass
class Video:
    video_id: str
    frames: list          # the video: background with the actions drawn in
    background: list      # the same frames without the actions
    actions: list         # [Action]

    @property
    def labels(self) -> list[int]:
        return [a.label for a in self.actions]


def draw_background(rng: np.random.Generator, frames: int, size: tuple[int, int],
                    drift: float) -> list[np.ndarray]:
    """A texture seen by a camera drifting at up to ``drift`` px per frame, in a random direction
    that turns slowly (so background flow is weak, smooth and differs between videos)."""
    w, h = size
    angle = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(-1, 1) * 2 * np.pi / max(frames, 1)      # at most one full turn per video
    speed = rng.uniform(0.2, 1.0) * drift
    steps = [speed * np.array([np.cos(angle + turn * t), np.sin(angle + turn * t)]) for t in range(frames)]
    path = np.cumsum([np.zeros(2)] + steps[:-1], axis=0)
    lo, hi = path.min(axis=0), path.max(axis=0)
    margin = 4
    big = texture(rng, h + int(np.ceil(hi[1] - lo[1])) + 2 * margin, w + int(np.ceil(hi[0] - lo[0])) + 2 * margin)
    out = []
    for p in path:
        x0, y0 = (p - lo).round().astype(int) + margin
        out.append(big[y0:y0 + h, x0:x0 + w].copy())
    return out


def draw_action(rng: np.random.Generator, frames: list[np.ndarray], label: int, start: int, end: int,
                speed: float) -> None:
    """Paste a textured object (as make_demo_videos.make_clip draws it) moving in class
    ``label``'s direction over ``frames[start:end]``, centred on the frame mid-way, in place."""
    h, w = frames[0].shape[:2]
    direction = np.array(DIRECTIONS[CLASSES[label]])
    obj = texture(rng, h // 3, w // 4)
    oh, ow = obj.shape[:2]
    n = end - start
    first = np.array([(w - ow) / 2, (h - oh) / 2]) - direction * speed * n / 2
    for t in range(n):
        ox, oy = (first + direction * speed * t).round().astype(int)
        frames[start + t][oy:oy + oh, ox:ox + ow] = obj


def make_video(rng: np.random.Generator, video_id: str, labels: list[int], frames: int,
               size: tuple[int, int], action_frames: tuple[int, int], speed: float,
               drift: float) -> Video:
    """One untrimmed video with an action per entry of ``labels``, in disjoint random intervals of
    ``action_frames`` (min, max) frames, at least 2 frames apart."""
    background = draw_background(rng, frames, size, drift)
    out = [f.copy() for f in background]
    lengths = [int(rng.integers(action_frames[0], action_frames[1] + 1)) for _ in labels]
    # Disjoint intervals in random order: split the free frames into len+1 random gaps.
    free = frames - sum(lengths) - 2 * max(len(labels) - 1, 0)
    if free < 0:
        raise ValueError(f"{frames} frames cannot hold actions of {lengths} frames")
    cuts = np.sort(rng.integers(0, free + 1, len(labels)))
    gaps = np.diff(np.concatenate([[0], cuts]))
    actions, t = [], 0
    for i, (label, n, gap) in enumerate(zip(labels, lengths, gaps)):
        t += int(gap) + (2 if i else 0)
        actions.append(Action(label, t, t + n))
        draw_action(rng, out, label, t, t + n, speed)
        t += n
    return Video(video_id, out, background, actions)


def make_set(seed: int, videos: int, two_action: int, background_only: int, frames: int,
             size: tuple[int, int], action_frames: tuple[int, int], speed: float, drift: float):
    """Yield ``videos`` Videos: the first ``background_only`` have no action, the next
    ``two_action`` two different classes, the rest one; classes cycle so all are used evenly."""
    if background_only + two_action > videos:
        raise ValueError("more background and two-action videos than videos")
    rng = np.random.default_rng(seed)
    nc = len(CLASSES)
    for i in range(videos):
        if i < background_only:
            labels = []
        elif i < background_only + two_action:
            a = i % nc
            labels = [a, (a + 1 + int(rng.integers(0, nc - 1))) % nc]
        else:
            labels = [i % nc]
        yield make_video(rng, f"untrimmed/video_{i:03d}", labels, frames, size, action_frames, speed, drift)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write untrimmed/<id>.mp4 into")
    ap.add_argument("--lists", type=Path, required=True, help="folder for the label lists")
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--two-action", type=int, default=6, help="videos with two different actions")
    ap.add_argument("--background-only", type=int, default=4, help="videos with no action")
    ap.add_argument("--seconds", type=float, default=16.0, help="length of every video")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--action-frames", default="10,16", help="MIN,MAX frames an action lasts")
    ap.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    ap.add_argument("--speed", type=float, default=2.0, help="object speed, px per frame")
    ap.add_argument("--drift", type=float, default=1.0, help="largest camera drift, px per frame")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    action_frames = tuple(int(v) for v in args.action_frames.split(","))
    frames = int(round(args.seconds * args.fps))
    labels_lines, test_lines, action_lines = [], [], []
    n_actions = 0
    for v in make_set(args.seed, args.videos, args.two_action, args.background_only, frames, size,
                      action_frames, args.speed, args.drift):
        write_video(args.out / f"{v.video_id}.mp4", v.frames, fps=args.fps)
        labels_lines.append(f"{v.video_id} {','.join(map(str, sorted(v.labels))) or '-'}\n")
        test_lines.append(f"{v.video_id} {v.labels[0] if v.labels else 0}\n")
        action_lines += [f"{v.video_id} {a.label} {a.start} {a.end}\n" for a in v.actions]
        n_actions += len(v.actions)
    args.lists.mkdir(parents=True, exist_ok=True)
    (args.lists / "untrimmed_labels.txt").write_text("".join(labels_lines))
    (args.lists / "untrimmed_test.txt").write_text("".join(test_lines))
    (args.lists / "untrimmed_actions.txt").write_text("".join(action_lines))
    (args.lists / "untrimmed_classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    print(f"wrote {args.videos} untrimmed videos of {frames} frames ({args.seconds:g} s at {args.fps:g} fps, "
          f"{args.size}; {args.background_only} background only, {args.two_action} with two actions, "
          f"{n_actions} actions of {action_frames[0]}-{action_frames[1]} frames) to {args.out}; lists in "
          f"{args.lists}")


if __name__ == "__main__":
    main()
