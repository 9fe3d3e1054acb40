"""tsn-prep extract-frames / extract-flow / info / verify on the real clips."""
import json
import shutil

import lmdb
import pytest
import torch

import tsn_prep.extraction.run
from tsn_core.codec import encode_jpeg
from tsn_core.store import Store
from tsn_core.store.keys import image_key
from tsn_core.store.shards import shard_of
from tsn_prep.video import VideoReader

from .conftest import VIDEOS, cli, decode, link_videos, read_frames

FLOW_ARGS = ("--max-frames", 2, "--size", "112x84", "--quiet")  # one pair per video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return link_videos(tmp_path_factory.mktemp("cli") / "videos", {
        "ArmWrestling/arm.mp4": "armwrestling_kinetics.mp4",
        "ApplyEyeMakeup/v_eye.avi": "eyemakeup_ucf101like.avi",
        "carphone.mp4": "carphone.mp4",
    })


@pytest.fixture(scope="module")
def flow_store(videos):
    """TV-L1 flow (the default modality) of the three clips, 2 frames at 112x84; read only."""
    out = videos.parent / "flow"
    cli("extract-flow", videos, out, *FLOW_ARGS)
    return out


def test_extract_frames_ids_counts_and_pixels(videos, tmp_path):
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 6, "--quiet")
    s = Store(out)
    assert s.videos("rgb") == ["ApplyEyeMakeup/v_eye", "ArmWrestling/arm", "carphone"]
    e = s.entry("carphone", "rgb")
    assert e.meta.count == e.meta.num_frames == 6
    assert e.meta.source_size == (176, 144) and e.meta.stored_size == (340, 256)
    assert e.meta.fps == pytest.approx(29.97, abs=0.01)
    expected = read_frames(VIDEOS / "carphone.mp4", 6, (340, 256))  # bilinear, as the reader
    for i in range(6):  # the very bytes of encoding OpenCV's decode, in order
        assert s.get("carphone", "img", i) == encode_jpeg(expected[i], 95)
    assert decode(s.get("carphone", "img", 0)).shape == (256, 340, 3)
    assert expected[5].tobytes() != expected[0].tobytes()


def test_whole_video_and_short_side(tmp_path):
    videos = link_videos(tmp_path / "v", {"tree.avi": "tree.avi"})
    cli("extract-frames", videos, tmp_path / "out", "--short-side", 128, "--quiet")
    e = Store(tmp_path / "out").entry("tree", "rgb")
    assert e.meta.count == 68  # every frame, 0-based keys 0..67
    assert e.meta.stored_size == (171, 128)  # 320x240 scaled to a 128 px short side
    # Its container declares 444 frames, most of them dropped-frame markers: the 68 decoded ones
    # reach the end of its 29.6 s, so it is whole and carries no warning.
    assert e.meta.declared_frames == 444
    assert e.meta.warning is None


def test_flow_and_warped_flow_from_one_decode_pass(videos, flow_store, tmp_path, monkeypatch):
    passes = []
    real = VideoReader.frames

    def counting(self):
        passes.append(self.path.name)
        return real(self)

    monkeypatch.setattr(VideoReader, "frames", counting)
    # --workers 0: decoding in this process, where the count is seen
    cli("extract-flow", videos, tmp_path / "both", "--modality", "flow", "--modality", "warped_flow",
        "--warp-detector", "sift", "--warp-min-pairs", 60, "--workers", 0, *FLOW_ARGS)
    assert sorted(passes) == ["arm.mp4", "carphone.mp4", "v_eye.avi"]
    both, flow = Store(tmp_path / "both"), Store(flow_store)
    assert flow.videos("flow") == both.videos("warped_flow") == \
        ["ApplyEyeMakeup/v_eye", "ArmWrestling/arm", "carphone"]
    for vid in flow.videos("flow"):
        assert both.entry(vid, "flow").meta.count == 1 == both.entry(vid, "warped_flow").meta.count
        assert both.entry(vid, "flow").meta.num_frames == 2
        for ch in ("flow_x", "flow_y"):
            assert both.get(vid, ch, 0) == flow.get(vid, ch, 0)
        x = decode(both.get(vid, "flow_x", 0))
        assert x.ndim == 2 and x.shape == (84, 112)
    p = both.entry("carphone", "warped_flow").meta.parameters
    assert p["bound"] == 20.0 and p["tvl1"]["tau"] == 0.25
    assert p["warp"]["detector"] == "sift" and p["warp"]["min_pairs"] == 60


def test_rerun_skips_complete_videos_and_adds_missing_modalities(videos, flow_store, tmp_path,
                                                                 monkeypatch):
    out = shutil.copytree(flow_store, tmp_path / "out")
    computed = []
    real = tsn_prep.extraction.run.engine_results

    def spy(jobs, params, plan, **kwargs):
        computed.extend(job.modalities for job in jobs)
        return real(jobs, params, plan, **kwargs)

    monkeypatch.setattr(tsn_prep.extraction.run, "engine_results", spy)
    r = cli("extract-flow", videos, out, *FLOW_ARGS)
    assert computed == [] and "0 extracted, 3 already complete" in r.output
    r = cli("extract-flow", videos, out, "--modality", "flow", "--modality", "warped_flow", *FLOW_ARGS)
    assert computed == [("warped_flow",)] * 3 and "3 extracted, 0 already complete" in r.output
    s = Store(out)
    for vid in s.videos("flow"):  # flow untouched, warped flow added beside it
        assert s.entry(vid, "flow").meta.stored_at == Store(flow_store).entry(vid, "flow").meta.stored_at
        assert s.entry(vid, "warped_flow").meta.count == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where PyTorch sees no GPU")
def test_gpu_without_cuda_fails_at_once(videos, tmp_path):
    # auto picks the PyTorch TV-L1 (the PyPI OpenCV has no CUDA), and PyTorch sees no GPU here.
    r = cli("extract-flow", "--gpu", 0, videos, tmp_path / "out", expect=1)
    assert r.stderr.startswith("Error: --gpu 0: PyTorch sees no CUDA device")
    r = cli("extract-flow", "--gpu", 0, "--backend", "opencv-cuda", videos, tmp_path / "out", expect=1)
    assert r.stderr.startswith("Error: --gpu 0: the installed OpenCV") and "drop --gpu" in r.stderr
    r = cli("extract-flow", "--gpu", "0,x", videos, tmp_path / "out", expect=2)
    assert "expected device numbers like 0 or 0,1" in r.stderr
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
    assert "rgb      3 videos, 12 frames" in cli("info", out).output
    assert cli("verify", out, "--quiet").exit_code == 0

    shard = next(out.iterdir())
    Store(out).close()  # release this process's read handle before writing behind its back
    env = lmdb.open(str(shard), max_dbs=4)
    with env.begin(write=True) as txn:
        images = env.open_db(b"images", txn=txn)
        txn.put(image_key("carphone", "img", 2), b"not a jpeg", db=images)
        txn.delete(image_key("ArmWrestling/arm", "img", 3), db=images)
    env.close()
    r = cli("verify", out, "--quiet", expect=1)
    assert sorted(r.stderr.splitlines()) == [
        "problem: ArmWrestling/arm img: 3 images, metadata says 4",
        "problem: shard-00000-of-00001: carphone img 2: does not decode as an image",
    ]
    assert r.stdout == "3 entries checked, 2 problems, 0 recorded failures: DAMAGED\n"


def test_option_types_refuse_bad_values_before_any_work(videos, tmp_path):
    for option, value, message in [("--gpu", "0,-1", "expected device numbers like 0 or 0,1"),
                                   ("--batch-pairs", "0", "expected a number of pairs >= 1 or 'auto'"),
                                   ("--batch-pairs", "many", "expected a number of pairs >= 1 or 'auto'")]:
        r = cli("extract-flow", option, value, videos, tmp_path / "out", expect=2)
        assert message in r.stderr, (option, value, r.stderr)
    assert not (tmp_path / "out").exists()
    from tsn_prep.cli_options import BatchPairs
    assert [BatchPairs().convert(v, None, None) for v in ("auto", "AUTO", "3", 5)] == [0, 0, 3, 5]
