"""tsn-prep extract-frames / extract-flow / info / verify on the real clips."""
import json

import cv2
import lmdb
import numpy as np
import pytest

import tsn_prep.extract
from tsn_prep.store import Store, image_key, shard_of

from .conftest import VIDEOS, cli, cli_subprocess, decode, link_videos, read_frames


@pytest.fixture
def videos(tmp_path):
    return link_videos(tmp_path / "videos", {
        "ArmWrestling/arm.mp4": "armwrestling_kinetics.mp4",
        "ApplyEyeMakeup/v_eye.avi": "eyemakeup_ucf101like.avi",
        "carphone.mp4": "carphone.mp4",
    })


def test_extract_frames_ids_counts_and_pixels(videos, tmp_path):
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 6, "--quiet")
    s = Store(out)
    assert s.videos("rgb") == ["ApplyEyeMakeup/v_eye", "ArmWrestling/arm", "carphone"]
    e = s.entry("carphone", "rgb")
    assert e.meta["count"] == e.meta["num_frames"] == 6
    assert e.meta["source_size"] == [176, 144] and e.meta["stored_size"] == [340, 256]
    assert e.meta["fps"] == pytest.approx(29.97, abs=0.01)
    expected = read_frames(VIDEOS / "carphone.mp4", 6, (340, 256))
    for i in (0, 5):
        stored = decode(s.get("carphone", "img", i))
        assert stored.shape == (256, 340, 3)
        assert np.abs(stored.astype(int) - expected[i]).mean() < 3  # only JPEG's loss
    assert np.abs(decode(s.get("carphone", "img", 5)).astype(int) - expected[0]).mean() > 3


def test_whole_video_and_short_side(tmp_path):
    videos = link_videos(tmp_path / "v", {"tree.avi": "tree.avi"})
    cli("extract-frames", videos, tmp_path / "out", "--short-side", 128, "--quiet")
    e = Store(tmp_path / "out").entry("tree", "rgb")
    assert e.meta["count"] == 68  # every frame, 0-based keys 0..67
    assert e.meta["stored_size"] == [171, 128]  # 320x240 scaled to a 128 px short side
    assert "warning" in e.meta  # the container declares 444 frames


def test_flow_and_warped_flow_from_one_decode_pass(videos, tmp_path, monkeypatch):
    passes = []
    real = tsn_prep.extract.VideoReader.frames

    def counting(self):
        passes.append(self.path.name)
        return real(self)

    monkeypatch.setattr(tsn_prep.extract.VideoReader, "frames", counting)
    args = ["--max-frames", 3, "--size", "170x128", "--quiet"]
    cli("extract-flow", videos, tmp_path / "both", "--modality", "flow", "--modality", "warped_flow",
        "--warp-detector", "sift", "--warp-min-pairs", 60, *args)
    assert sorted(passes) == ["arm.mp4", "carphone.mp4", "v_eye.avi"]
    cli("extract-flow", videos, tmp_path / "flow", *args)
    both, flow = Store(tmp_path / "both"), Store(tmp_path / "flow")
    for vid in flow.videos("flow"):
        assert both.entry(vid, "flow").meta["count"] == 2 == both.entry(vid, "warped_flow").meta["count"]
        assert both.entry(vid, "flow").meta["num_frames"] == 3
        for i in range(2):
            for ch in ("flow_x", "flow_y"):
                assert both.get(vid, ch, i) == flow.get(vid, ch, i)
        x = decode(both.get(vid, "flow_x", 0))
        assert x.ndim == 2 and x.shape == (128, 170)
    p = both.entry("carphone", "warped_flow").meta["parameters"]
    assert p["bound"] == 20.0 and p["tvl1"]["tau"] == 0.25
    assert p["warp"]["detector"] == "sift" and p["warp"]["min_pairs"] == 60


def test_rerun_skips_complete_videos_and_adds_missing_modalities(videos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["--max-frames", 3, "--size", "170x128", "--quiet"]
    cli("extract-flow", videos, out, *args)
    computed = []
    real = tsn_prep.extract.extract_frames

    def spy(frames, cfg, flow_fn=None):
        computed.append(cfg.modalities)
        return real(frames, cfg, flow_fn)

    monkeypatch.setattr(tsn_prep.extract, "extract_frames", spy)
    r = cli("extract-flow", videos, out, *args)
    assert computed == [] and "0 extracted, 3 already complete" in r.output
    cli("extract-flow", videos, out, "--modality", "flow", "--modality", "warped_flow", *args)
    assert computed == [("warped_flow",)] * 3


def test_gpu_without_cuda_fails_at_once(videos, tmp_path):
    # auto picks the PyTorch TV-L1 (the PyPI OpenCV has no CUDA), and PyTorch sees no GPU here.
    r = cli_subprocess("extract-flow", "--gpu", 0, videos, tmp_path / "out")
    assert r.returncode == 1
    assert "--gpu 0: PyTorch sees no CUDA device" in r.stderr and "Traceback" not in r.stderr
    r = cli_subprocess("extract-flow", "--gpu", 0, "--backend", "opencv-cuda", videos, tmp_path / "out")
    assert r.returncode == 1
    assert "CUDA" in r.stderr and "drop --gpu" in r.stderr and "Traceback" not in r.stderr
    r = cli_subprocess("extract-flow", "--gpu", "0,x", videos, tmp_path / "out")
    assert r.returncode == 2 and "expected device numbers like 0 or 0,1" in r.stderr
    assert not (tmp_path / "out").exists()


def test_slurm_array_jobs_split_the_videos(videos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    ids = ["ApplyEyeMakeup/v_eye", "ArmWrestling/arm", "carphone"]
    for task in (1, 2):  # --array=1-2: ids start at the minimum, 1
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        cli("extract-frames", videos, out, "--max-frames", 2, "--quiet")
        shard = out / f"shard-0000{task - 1}-of-00002"
        env = lmdb.open(str(shard), readonly=True, lock=False, max_dbs=4)
        with env.begin() as txn:
            keys = [bytes(k).decode().rsplit("|", 1)[0] for k, _ in txn.cursor(db=env.open_db(b"meta", txn=txn))]
        env.close()
        assert sorted(keys) == sorted(v for v in ids if shard_of(v, 2) == task - 1)
    info = json.loads(cli("info", out, "--json").output)
    assert info["num_shards"] == 2 and info["videos"] == 3 and info["shards_missing"] == []
    assert info["modalities"]["rgb"]["images_per_channel"] == 6


def test_info_and_verify_find_damage(videos, tmp_path):
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 4, "--quiet")
    info = json.loads(cli("info", out, "--json").output)
    assert info["videos"] == 3 and info["modalities"]["rgb"]["videos"] == 3
    assert info["modalities"]["rgb"]["parameters"][0]["size"] == [340, 256]
    assert info["failures"] == [] and info["bytes"] > 0
    assert "rgb        3 videos, 12 frames" in cli("info", out).output
    assert cli("verify", out, "--quiet").exit_code == 0

    shard = next(out.iterdir())
    Store(out).close()  # release this process's read handle before writing behind its back
    env = lmdb.open(str(shard), max_dbs=4)
    with env.begin(write=True) as txn:
        images = env.open_db(b"images", txn=txn)
        txn.put(image_key("carphone", "img", 2), b"not a jpeg", db=images)
        txn.delete(image_key("ArmWrestling/arm", "img", 3), db=images)
    env.close()
    r = cli_subprocess("verify", out, "--quiet")
    assert r.returncode == 1
    assert "carphone img 2: does not decode" in r.stderr
    assert "ArmWrestling/arm img: 3 images, metadata says 4" in r.stderr
