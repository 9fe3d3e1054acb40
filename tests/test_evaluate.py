"""tsn-train test, fuse and predict: the batched protocol against a slow loop, score files,
fusion checks, and prediction from raw video files."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import CLIPS, TRAIN, VIDEOS, cli, cli_subprocess, decode, read_frames, train_cli
from tsn_core.store import Store
from tsn_train import checkpoint
from tsn_train.protocol import run_test
from tsn_core.lists import Record, read_list
from tsn_core import modalities
from tsn_train.sampling import center_starts, sample_indices
from tsn_train.scores import Scores, ScoreError, fuse, metrics, softmax
from tsn_train.transforms import eval_boxes, hflip, rescale_short_side, to_input

SMALL = ["--arch", "resnet18", "--input-size", "64", "--workers", "0", "--accumulate", "1",
         "--batch-size", "5", "--no-partial-bn", "--lr", "0.01", "--dropout", "0.2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


STREAMS = ("rgb", "flow", "rgbdiff", "warped_flow")
WEIGHTS = (1, 1.5, 0.5, 1)


@pytest.fixture(scope="module")
def trained(train_store, tmp_path_factory):
    """A model of each modality trained on the five clips (a few epochs)."""
    runs = tmp_path_factory.mktemp("runs")
    lst = train_store.parent / "train.txt"
    for m in STREAMS:
        train_cli("fit", "--modality", m, "--store", train_store, "--train-list", lst,
                  "--out", runs / m, *SMALL, "--epochs", "4")
    return runs


def slow_scores(ckpt_path, store_root, video_id, segments, crops):
    """The protocol written out plainly: every snippet, every crop, one forward pass each."""
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.model_from_checkpoint(ckpt)
    prep = ckpt.preprocessing
    modality, norm = prep.modality, prep.norm
    store = Store(store_root)
    spec = modalities.get(modality)
    count = store.entry(video_id, spec.source).meta.count
    length, channels = spec.snippet_length, spec.channels
    total, n = 0, 0
    for snippet in sample_indices(center_starts(count, length, segments), length, count):
        imgs = [[decode(store.get(video_id, ch, i)) for ch in channels] for i in snippet]
        frames = np.stack([im[0] if len(im) == 1 else np.stack(im, -1) for im in imgs])
        frames = rescale_short_side(frames, prep.scale_size)
        h, w = frames.shape[1:3]
        views = [f[:, y:y + s, x:x + s] for x, y, s, _ in eval_boxes(h, w, prep.input_size, crops)
                 for f in [frames]]
        if crops == 10:
            views += [hflip(v, spec.is_flow) for v in views]
        for v in views:
            x = to_input(v[None], modality, norm)  # one snippet, one crop
            with torch.no_grad():
                total = total + model.snippet_scores(x)[0][0]
            n += 1
    return (total / n).numpy()


@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_batched_protocol_matches_a_slow_loop(train_store, trained, modality):
    records = [Record(c, i) for i, c in enumerate(CLIPS)]
    scores = run_test(trained / modality / "last.pt", train_store, records, segments=7, crops=10,
                      batch=9, workers=0, progress=False)
    assert scores.scores.shape == (5, 5) and scores.video_ids == CLIPS
    for i in (0, 3):
        slow = slow_scores(trained / modality / "last.pt", train_store, CLIPS[i], 7, 10)
        assert np.allclose(scores.scores[i], slow, atol=1e-4), (scores.scores[i], slow)


def test_test_command_writes_scores_picture_and_per_class_csv(train_store, trained, tmp_path):
    """The real command in its own process, where an OpenCV warning (C++, on stderr) would show."""
    out = tmp_path / "rgb.npz"
    result = cli_subprocess("test", "--checkpoint", trained / "rgb" / "last.pt", "--store", train_store,
                            "--list", train_store.parent / "train.txt", "--segments", "5", "--crops", "1",
                            "--workers", "0", "--out", out, module=TRAIN,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and "WARN" not in result.stderr, result.stderr
    s = Scores.load(out)
    m = metrics(s)
    assert f"top-1 {m['top1']:.2%}" in result.stdout and "(5 videos)" in result.stdout
    assert s.settings["segments"] == 5 and s.settings["crops"] == 1 and s.classes == list("01234")
    picture = cv2.imread(str(tmp_path / "rgb_confusion.png"))
    assert picture is not None and picture.shape[0] > 50
    rows = (tmp_path / "rgb_per_class.csv").read_text().splitlines()
    assert rows[0] == "label,class,videos,correct,accuracy" and len(rows) == 6
    correct = sum(int(r.split(",")[3]) for r in rows[1:])
    assert correct == round(m["top1"] * 5)


def test_metrics_and_fusion_arithmetic(tmp_path):
    ids, labels = ["a", "b", "c", "d"], np.array([0, 1, 2, 2])
    rgb = Scores(ids, labels, np.array([[3, 1, 0], [0, 2, 1], [1, 0, 0], [0, 0, 5]], np.float32),
                 ["x", "y", "z"], {"source": "rgb"})
    flow = Scores(ids[::-1], labels[::-1], np.array([[0, 0, 1], [2, 0, 1], [0, 1, 0], [0, 0, 2]],
                                                    np.float32), ["x", "y", "z"], {"source": "flow"})
    m = metrics(rgb)
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert m["mean_class_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    fused = fuse([rgb, flow], [1, 1.5])  # flow's rows are aligned by id, not by position
    assert np.allclose(fused.scores[2], [1 + 1.5 * 2, 0, 1.5 * 1])
    assert np.allclose(fuse([rgb, flow], [1, 1], use_softmax=True).scores[0],
                       softmax(rgb.scores[:1])[0] + softmax(flow.scores[3:])[0])
    bad = Scores(ids, np.array([0, 1, 2, 0]), flow.scores, ["x", "y", "z"], {"source": "bad.npz"})
    with pytest.raises(ScoreError, match=r"bad.npz: labels disagree with the first file for 1 videos \(d\)"):
        fuse([rgb, bad], [1, 1])
    short = Scores(ids[:3], labels[:3], rgb.scores[:3], ["x", "y", "z"], {"source": "short.npz"})
    with pytest.raises(ScoreError, match=r"short.npz: video ids disagree .* 1 missing \(d\)"):
        fuse([rgb, short], [1, 1])
    rgb.save(tmp_path / "rgb.npz")
    flow.save(tmp_path / "flow.npz")
    result = train_cli("fuse", tmp_path / "rgb.npz", tmp_path / "flow.npz", "--weights", "1,1.5",
                       "--out", tmp_path / "fused.npz")
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'rgb.npz'} (weight 1): top-1 75.00%")
    assert lines[2].startswith("fused: top-1 ")
    assert np.allclose(Scores.load(tmp_path / "fused.npz").scores, fused.scores)
    before = train_cli("fuse", "--weights", "1,1.5", tmp_path / "rgb.npz", tmp_path / "flow.npz")
    assert before.output.splitlines()[2] == lines[2]  # weights may come first
    result = train_cli("fuse", tmp_path / "rgb.npz", tmp_path / "nope.npz", expect=2)
    assert "nope.npz' does not exist" in result.output
    result = train_cli("fuse", tmp_path / "rgb.npz", tmp_path / "flow.npz", "--weights", "1", expect=2)
    assert "2 score files but 1 weights" in result.output


def test_predict_from_a_raw_video_equals_testing_its_extracted_store(trained, tmp_path):
    # A 12-frame clip of a real video, extracted the way the training store was (112x84); each
    # of the four streams scored by `test` on that store, fused, must be what `predict` says.
    clip = tmp_path / "videos" / "carphone_short.avi"
    clip.parent.mkdir()
    frames = read_frames(VIDEOS / "carphone.mp4", 12)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    store = tmp_path / "store"
    cli("extract-frames", clip.parent, store, "--size", "112x84")
    cli("extract-flow", clip.parent, store, "--size", "112x84", "--max-frames", "12",
        "--modality", "flow", "--modality", "warped_flow")
    (tmp_path / "l.txt").write_text("carphone_short 4\n")
    probs = []
    for m in STREAMS:
        s = run_test(trained / m / "last.pt", store, read_list(tmp_path / "l.txt"), segments=7,
                     crops=10, workers=0, progress=False)
        assert s.settings["modality"] == m
        probs.append(softmax(s.scores)[0])
    expected = sum(w * p for w, p in zip(WEIGHTS, probs)) / sum(WEIGHTS)

    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    checkpoints = [a for m in STREAMS for a in ("--checkpoint", trained / m / "last.pt")]
    result = train_cli("predict", clip, tmp_path / "broken.mp4", *checkpoints,
                       "--weights", ",".join(map(str, WEIGHTS)), "--segments", "7", "--json",
                       expect=None)
    assert result.exit_code == 1
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(lines) == 1 and lines[0]["video"] == str(clip)
    top = lines[0]["top"]
    assert [t["class"] for t in top] == [str(i) for i in np.argsort(-expected)[:5]]
    assert np.allclose([t["probability"] for t in top], np.sort(expected)[::-1][:5], atol=1e-5)
    assert "broken.mp4" in result.stderr and "Traceback" not in result.output

    # --amp bf16 (autocast runs on the CPU too): predict is still test, under the same autocast
    s = run_test(trained / "rgb" / "last.pt", store, read_list(tmp_path / "l.txt"), segments=7,
                 crops=10, workers=0, progress=False, amp="bf16")
    bf16 = softmax(s.scores)[0]
    result = train_cli("predict", clip, "--checkpoint", trained / "rgb" / "last.pt", "--segments", "7",
                       "--amp", "bf16", "--json", "--top", "5")
    top = json.loads(result.stdout)["top"]
    assert [t["class"] for t in top] == [str(i) for i in np.argsort(-bf16)[:5]]
    assert np.allclose([t["probability"] for t in top], np.sort(bf16)[::-1][:5], atol=1e-5)
    assert not np.allclose(np.sort(bf16)[::-1][:5], np.sort(probs[0])[::-1][:5], atol=1e-5)  # not fp32's


def test_mtwi_protocol_is_window_integration_of_per_snippet_scores(train_store, trained, tmp_path):
    """test --protocol mtwi: snippets at 2 per second from the recorded fps, crops combined by
    max, windows integrated; equal to composing the pieces by hand on the slow per-crop path."""
    from tsn_train.mtwi import mtwi_scores, snippet_positions

    out = tmp_path / "flow_mtwi.npz"
    train_cli("test", "--checkpoint", trained / "flow" / "last.pt", "--store", train_store,
              "--list", train_store.parent / "train.txt", "--crops", "10", "--workers", "0",
              "--protocol", "mtwi", "--rate", "2", "--out", out)
    s = Scores.load(out)
    assert s.settings["protocol"] == {"name": "mtwi", "rate": 2.0, "combine": "max", "rule": "reference"}
    ckpt = checkpoint.load(trained / "flow" / "last.pt")
    model = checkpoint.model_from_checkpoint(ckpt)
    prep = ckpt.preprocessing
    store = Store(train_store)
    for i in (0, 4):
        video = CLIPS[i]
        meta = store.entry(video, "flow").meta
        starts = snippet_positions(meta.count, meta.fps, 2, 5)
        assert len(starts) >= 2  # 15 flows at 25-30 fps: a second or so, two snippets a second
        per_snippet = []
        for start in starts:
            idx = sample_indices([start], 5, meta.count)[0]
            frames = np.stack([np.stack([decode(store.get(video, ch, j)) for ch in ("flow_x", "flow_y")], -1)
                               for j in idx])
            frames = rescale_short_side(frames, prep.scale_size)
            h, w = frames.shape[1:3]
            views = [frames[:, y:y + n, x:x + n] for x, y, n, _ in eval_boxes(h, w, prep.input_size, 10)]
            views += [hflip(v, True) for v in views]
            with torch.no_grad():
                crop_scores = [model.snippet_scores(to_input(v[None], "flow", prep.norm))[0][0].numpy()
                               for v in views]
            per_snippet.append(np.max(crop_scores, axis=0))
        want = mtwi_scores(np.array(per_snippet), 2)
        np.testing.assert_allclose(s.scores[i], want, rtol=1e-4, atol=1e-4)
