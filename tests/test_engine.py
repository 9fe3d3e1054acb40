"""The batching flow engine (tsn_prep/engine.py): same store as the per-video path, byte for byte.

Real clips, real LMDB stores, the torch TV-L1 on the CPU with tiny settings (2 scales, 1 warping,
a loose epsilon, frames with a 48 px short side): the engine's results do not depend on those, and
the tests stay fast. Under ``--short-side 48`` carphone (176x144) gives 59x48 frames and the other
clips (4:3) 64x48, so one run mixes two frame sizes.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

import tsn_prep.engine as engine
from tsn_prep.extract import ExtractConfig
from tsn_prep.report import verify_store
from tsn_prep.run import run_extraction
from tsn_prep.store import Store
from tsn_prep.tvl1_params import TVL1Params
from tsn_prep.warp import WarpParams

from .conftest import VIDEOS, cli, link_videos

TINY = TVL1Params(scales=2, warps=1, epsilon=0.05)
TINY_ARGS = ("--scales", "2", "--warps", "1", "--epsilon", "0.05")
CFG = ExtractConfig(modalities=("flow",), size=None, short_side=48, max_frames=6, backend="torch",
                    tvl1=TINY, batch_pairs=0)
CLIPS = {"a/arm.mp4": "armwrestling_kinetics.mp4", "a/car.mp4": "carphone.mp4",
         "b/eye.avi": "eyemakeup_ucf101like.avi", "b/pool.mp4": "poolcleaning.mp4",
         "c/tree.avi": "tree.avi", "c/car2.mp4": "carphone.mp4"}
GUARD = 120  # s; only bounds a broken run, no outcome depends on it


@pytest.fixture(autouse=True)
def eager_two_threads(monkeypatch):
    """torch.compile costs a minute per shape on the CPU, far more than these few pairs."""
    monkeypatch.setenv("TSN_TORCH_COMPILE", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def snapshot(out):
    """Every image and every entry's metadata (less its time of writing) of a store."""
    s = Store(out)
    images = {(vid, ch, i): data for _, vid, ch, i, data in s.iter_images()}
    meta = {k: {f: v for f, v in e.meta.items() if f != "stored_at"} for k, e in s.index.items()}
    return images, meta


class Spy:
    """Records every batch the engine sends: its pairs' (video, index, second pass) and shape."""

    def __init__(self, monkeypatch):
        self.batches = []
        real = engine._Device.send

        def send(device, pairs, pad_to):
            self.batches.append(([(p.key, p.index, p.second) for p in pairs], pairs[0].prev.shape,
                                 {p.prev.shape for p in pairs}))
            return real(device, pairs, pad_to)

        monkeypatch.setattr(engine._Device, "send", send)


def test_mixed_sizes_batched_across_videos_equal_the_per_video_path(tmp_path, monkeypatch):
    videos = link_videos(tmp_path / "videos", CLIPS)
    spy = Spy(monkeypatch)
    cfg = dataclasses.replace(CFG, batch_pairs=3)  # 5 pairs per video: batches span videos
    got = run_extraction(videos, tmp_path / "engine", cfg, workers=2, progress=False)
    assert (got.done, got.pairs, got.frames, got.failed) == (6, 30, 36, [])
    ref = run_extraction(videos, tmp_path / "ref", dataclasses.replace(CFG, batch_pairs=1),
                         progress=False, engine=False)
    assert (ref.done, ref.pairs, ref.frames) == (6, 30, 36)
    assert snapshot(tmp_path / "engine") == snapshot(tmp_path / "ref")

    sizes = Store(tmp_path / "engine").index
    assert sizes[("a/car", "flow")].meta["stored_size"] == [59, 48]
    assert sizes[("a/arm", "flow")].meta["stored_size"] == [64, 48]
    assert all(len(shapes) == 1 for _, _, shapes in spy.batches)  # sizes never share a batch
    assert {shape for _, shape, _ in spy.batches} == {(48, 59), (48, 64)}
    assert any(len({key for key, _, _ in pairs}) > 1 for pairs, _, _ in spy.batches)  # across videos
    sent = sorted(p for pairs, _, _ in spy.batches for p in pairs)
    assert sent == sorted((k, i, False) for k in range(6) for i in range(5))  # each pair once


def test_warped_flow_through_the_engine_equals_the_per_video_path(tmp_path, monkeypatch):
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if not k.startswith("c/")})
    spy = Spy(monkeypatch)
    # Homography thresholds for 48 px frames (corners only: 67 to 91 RANSAC inliers a pair here):
    # the second TV-L1 pass runs through the batched solver for some pairs and is skipped
    # (identity homography) for others.
    warp = WarpParams(detector="none", min_pairs=8, min_inliers=80)
    cfg = dataclasses.replace(CFG, modalities=("flow", "warped_flow"), warp=warp)
    # The first run stores flow of some videos only: the second run adds warped flow to those
    # (only the missing modality) and does both for the rest, in the same batches.
    first = run_extraction(videos, tmp_path / "engine", dataclasses.replace(cfg, modalities=("flow",)),
                           workers=1, progress=False)
    assert first.done == 4
    Store(tmp_path / "engine").close()
    got = run_extraction(videos, tmp_path / "engine", dataclasses.replace(cfg, modalities=("warped_flow",)),
                         workers=2, progress=False)
    assert (got.done, got.pairs, got.failed) == (4, 20, [])
    spy.batches.clear()
    both = run_extraction(videos, tmp_path / "both", cfg, workers=2, progress=False)
    assert both.done == 4
    ref = run_extraction(videos, tmp_path / "ref", cfg, progress=False, engine=False)
    assert ref.done == 4
    images, meta = snapshot(tmp_path / "ref")
    assert snapshot(tmp_path / "both") == (images, meta)
    assert snapshot(tmp_path / "engine")[0] == images
    second = [p for pairs, _, _ in spy.batches for p in pairs if p[2]]
    assert 0 < len(second) < 20  # some pairs took the second pass, not all of them


def test_a_broken_file_among_good_ones_fails_alone(tmp_path, capsys):
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if k.startswith("a/")})
    (videos / "a" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    (videos / "b").mkdir()
    (videos / "b" / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    r = cli("extract-flow", videos, out, "--backend", "torch", "--short-side", 48, "--max-frames", 6,
            "--workers", 2, "--quiet", *TINY_ARGS, expect=1)
    assert "2 extracted, 0 already complete, 2 failed, of 4 videos" in r.output
    assert f"error: {videos / 'a' / 'broken.mp4'}: " in r.output
    s = Store(out)
    assert s.videos("flow") == ["a/arm", "a/car"]
    failures = {f["video_id"]: f["error"] for f in s.failures()}
    assert failures["b/empty"] == "empty file (0 bytes)"
    # the same failures, worded the same, as the per-video path
    run_extraction(videos, tmp_path / "ref", dataclasses.replace(CFG, batch_pairs=8), progress=False,
                   engine=False)
    assert {f["video_id"]: f["error"] for f in Store(tmp_path / "ref").failures()} == failures
    assert snapshot(out)[0] == snapshot(tmp_path / "ref")[0]


def test_batch_auto_on_the_cpu_equals_batch_one(tmp_path, capsys):
    videos = link_videos(tmp_path / "videos", {k: v for k, v in CLIPS.items() if k.startswith("a/")})
    auto = run_extraction(videos, tmp_path / "auto", CFG, workers=1, progress=False)
    err = capsys.readouterr().err
    assert "batch pairs auto: 64x48 frames on cpu: 8" in err
    assert "batch pairs auto: 59x48 frames on cpu: 8" in err
    one = run_extraction(videos, tmp_path / "one", dataclasses.replace(CFG, batch_pairs=1), workers=1,
                         progress=False)
    assert "batch pairs auto" not in capsys.readouterr().err
    assert auto.done == one.done == 2
    assert snapshot(tmp_path / "auto") == snapshot(tmp_path / "one")


class FakeSolver:
    """Stands in for a compiled solver: flow = (prev - cur, prev + cur) per pixel, records shapes."""

    compiled = True

    def __init__(self):
        self.shapes = []

    def batch(self, prev, cur):
        self.shapes.append(prev.shape)
        a, b = prev.astype(np.float32), cur.astype(np.float32)
        return np.stack([(a - b) / 8, (a + b) / 64 - 4], axis=-1)


def test_compiled_solvers_get_one_shape_per_frame_size(tmp_path):
    """Partial batches are padded to the batch size (a new shape would be a new compilation) and
    the padding's flows are dropped."""
    from tsn_prep.extract import encode_flow
    from tsn_prep.video import VideoItem

    from .conftest import read_frames

    videos = link_videos(tmp_path / "videos", {"arm.mp4": "armwrestling_kinetics.mp4", "car.mp4": "carphone.mp4"})
    cfg = dataclasses.replace(CFG, batch_pairs=4, size=(40, 30), short_side=None, max_frames=7)
    todo = [(VideoItem(p.stem, p), cfg) for p in sorted(videos.iterdir())]
    solver = FakeSolver()
    results = list(engine.engine_results(todo, cfg, workers=1, say=lambda line: None,
                                         make_solver=lambda gpu: solver))
    assert sorted(r.item.id for r in results) == ["arm", "car"] and not any(r.error for r in results)
    assert set(solver.shapes) == {(4, 30, 40)}  # 12 pairs: 3 batches of 4, whichever videos
    for r in results:
        greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in read_frames(r.item.path, 7, (40, 30))]
        expected = [encode_flow(FakeSolver().batch(a[None], b[None])[0], cfg.bound, cfg.jpeg_quality)
                    for a, b in zip(greys, greys[1:])]
        assert list(zip(r.images["flow"]["flow_x"], r.images["flow"]["flow_y"])) == expected
        assert r.pairs == 6 and r.meta["flow"]["num_frames"] == 7


# -- SIGKILL with the engine running ------------------------------------------------------------

def _open_writer(fifo, proc) -> int:
    """Wait until ``proc``'s decoding worker opens the pipe; return our write end (it keeps the
    worker's reads waiting). Opening a write end without blocking works only while a reader has
    the pipe open."""
    deadline = time.monotonic() + GUARD
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO, exc
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before opening {fifo}"
        assert time.monotonic() < deadline, f"{fifo} not opened within {GUARD} s"
        time.sleep(0.01)


def _complete(out) -> list[str]:
    try:
        return sorted(vid for vid, _ in Store(out).index)
    except Exception:  # not created yet
        return []


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    """One decoding worker takes the videos in sorted order; the third is a named pipe, so the run
    commits the first two (their flows are solved while the worker waits on the pipe) and can go
    no further. Then SIGKILL: the decoding worker must die with it, the store must hold exactly
    the two whole videos, and a re-run must finish the store as an uninterrupted run does."""
    names = {"0_arm.mp4": "armwrestling_kinetics.mp4", "1_car.mp4": "carphone.mp4",
             "2_eye.avi": "eyemakeup_ucf101like.avi", "3_pool.mp4": "poolcleaning.mp4"}
    videos = link_videos(tmp_path / "videos", names)
    args = ("extract-flow", "--backend", "torch", "--short-side", "48", "--max-frames", "5",
            "--workers", "1", "--quiet", *TINY_ARGS)
    ref = tmp_path / "ref"
    cli(*args[:1], videos, ref, *args[1:])

    pipe = videos / "2_eye.avi"
    pipe.unlink()
    os.mkfifo(pipe)
    out = tmp_path / "out"
    env = dict(os.environ, TSN_TORCH_COMPILE="0", OMP_NUM_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-m", "tsn_prep.cli", args[0], str(videos), str(out), *args[1:]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        writer = _open_writer(pipe, proc)  # the worker is past the first two videos
        deadline = time.monotonic() + GUARD
        while _complete(out) != ["0_arm", "1_car"]:  # the parent commits them, then has nothing
            assert proc.poll() is None and time.monotonic() < deadline, _complete(out)
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the decoding worker dies with the run: soon nobody has the pipe open for reading
        deadline = time.monotonic() + GUARD
        while True:
            try:
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                assert exc.errno == errno.ENXIO, exc
                break
            assert time.monotonic() < deadline, "the decoding worker outlived the killed run"
            time.sleep(0.05)
        os.close(writer)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _complete(out) == ["0_arm", "1_car"]
    assert verify_store(Store(out)) == []

    pipe.unlink()
    pipe.symlink_to(VIDEOS / names["2_eye.avi"])
    r = subprocess.run([sys.executable, "-m", "tsn_prep.cli", args[0], str(videos), str(out), *args[1:]],
                       capture_output=True, text=True, env=env, timeout=GUARD)
    assert r.returncode == 0, r.stderr
    assert "2 extracted, 2 already complete, 0 failed, of 4 videos" in r.stderr
    assert snapshot(out) == snapshot(ref)
