"""tsn-train features on real clips: rows where the recipe puts them, values as a plain loop
computes them, csv100 as the rescaling gives it, and a killed job that resumes to the same files."""
import json
import signal
import time

import numpy as np
import pytest
import torch

from tests.conftest import CLIPS, TRAIN, decode, start_cli
from tests.test_feature_rows import independent_rescale
from tsn_core import modalities
from tsn_core.store import Store
from tsn_train import checkpoint
from tsn_train.checkpoint import Preprocessing
from tsn_train.config import FeatureSettings, resolve
from tsn_train.models.tsn import build_model
from tsn_train.transforms import NORMS
from tsn_train.feature_rows import snippet_centres, snippet_frames
from tsn_train.features import extract_features
from tsn_train.transforms import EvalCrops, to_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """An rgb and a flow checkpoint of untrained ResNet-18s (the values matter, not the accuracy)."""
    runs = tmp_path_factory.mktemp("feature_runs")
    paths = []
    for m in ("rgb", "flow"):
        cfg = resolve({"modality": m, "store": "", "train_list": "", "out": "", "arch": "resnet18",
                       "input_size": 32, "partial_bn": False})
        torch.manual_seed(len(paths))
        model = build_model(cfg, len(CLIPS))
        torch.nn.init.normal_(model.fc.weight, 0, 0.1)  # scores that differ between rows
        prep = Preprocessing(m, 32, 36, NORMS["imagenet"])
        paths.append(runs / f"{m}.pt")
        checkpoint.save(checkpoint.Checkpoint(model.state_dict(), cfg, list(CLIPS), prep, {}, 1), paths[-1])
    return paths


def plain_rows(ckpt_path, store_root, video_id, centres, crops, what):
    """One stream's rows written out plainly: each row's images read and scored on their own."""
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.model_from_checkpoint(ckpt)
    prep = ckpt.preprocessing
    spec = modalities.get(prep.modality)
    store = Store(store_root)
    count = store.entry(video_id, spec.source).meta.count
    rows = []
    for frames_of_row in snippet_frames(centres, spec.snippet_length, count):
        imgs = [[decode(store.get(video_id, ch, i)) for ch in spec.channels] for i in frames_of_row]
        frames = np.stack([im[0] if len(im) == 1 else np.stack(im, -1) for im in imgs])
        views = EvalCrops(prep.input_size, prep.scale_size, crops, spec.is_flow)(frames)
        with torch.no_grad():
            scores, pooled = model.snippet_scores(to_input(torch.from_numpy(views), prep.modality, prep.norm))
        rows.append((pooled if what == "pool" else scores).mean(dim=0).numpy())
    store.close()
    return np.stack(rows)


def test_rows_of_two_streams_match_a_plain_loop(train_store, streams, tmp_path):
    out = tmp_path / "feat"
    s = extract_features(streams, train_store, out, FeatureSettings(interval=8, crop="ten"), workers=0,
                         progress=False)
    assert (s.written, s.skipped, s.empty) == (len(CLIPS), 0, 0)
    index = json.loads((out / "index.json").read_text())
    for clip in CLIPS:
        got = np.load(out / f"{clip}.npy")
        # 40 stored frames, a row every 8: centres 4, 12, 20, 28, 36; flow (15 fields) clamps to 14
        centres = snippet_centres(40, 8)
        assert centres.tolist() == [4, 12, 20, 28, 36]
        assert index["videos"][clip]["centres"] == centres.tolist() and index["videos"][clip]["frames"] == 40
        assert got.shape == (5, 1024) and got.dtype == np.float32
        want = np.concatenate([plain_rows(p, train_store, clip, centres, 10, "pool") for p in streams], axis=1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [st["modality"] for st in index["settings"]["streams"]] == ["rgb", "flow"]


def test_csv100_is_each_stream_rescaled_then_joined(train_store, streams, tmp_path):
    extract_features(streams, train_store, tmp_path / "npy", FeatureSettings(what="scores"), workers=0,
                     progress=False)
    extract_features(streams, train_store, tmp_path / "csv", FeatureSettings(what="scores", format="csv100"),
                     workers=1, progress=False)
    raw = np.load(tmp_path / "npy" / "tree.npy")
    assert raw.shape == (2, 10)  # centres 8, 24 of 40 frames; 5 class scores per stream
    lines = (tmp_path / "csv" / "tree.csv").read_text().split("\n")
    assert lines[0] == ",".join(f"f{i}" for i in range(10)) and len(lines) == 101
    got = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    want = np.concatenate([independent_rescale(raw[:, :5].astype(np.float64)),
                           independent_rescale(raw[:, 5:].astype(np.float64))], axis=1)
    np.testing.assert_allclose(got, want, atol=5.01e-5, rtol=0)


def test_other_settings_in_the_same_folder_are_refused(train_store, streams, tmp_path):
    extract_features(streams[:1], train_store, tmp_path, FeatureSettings(), workers=0, progress=False)
    with pytest.raises(ValueError, match=r"holds features made with other settings \(interval: 16 there, 8 now"):
        extract_features(streams[:1], train_store, tmp_path, FeatureSettings(interval=8), workers=0,
                         progress=False)


def test_a_killed_job_resumes_to_the_same_files(train_store, streams, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    settings = FeatureSettings(interval=2, crop="ten")  # 20 rows x 10 crops a clip: a kill lands mid-job
    extract_features(streams, train_store, whole, settings, workers=0, batch=40, progress=False)
    proc = start_cli("features", "--checkpoint", streams[0], "--checkpoint", streams[1], "--store", train_store,
                     "--out", cut, "--interval", "2", "--crop", "ten", "--workers", "0", "--batch", "40",
                     "--quiet", module=TRAIN)
    deadline = time.time() + 120
    while not list(cut.glob("*.npy")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in cut.glob("*.npy"))
    assert 0 < len(done) < len(CLIPS), "the kill came before any file or after the last"
    s = extract_features(streams, train_store, cut, settings, workers=0, batch=40, progress=False)
    assert (s.written, s.skipped) == (len(CLIPS) - len(done), len(done))
    for clip in CLIPS:
        assert (cut / f"{clip}.npy").read_bytes() == (whole / f"{clip}.npy").read_bytes()
    assert json.loads((cut / "index.json").read_text()) == json.loads((whole / "index.json").read_text())
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]


def test_processes_of_one_job_split_its_videos_and_share_its_index(train_store, streams, tmp_path):
    """--gpu 0,1 runs one process per device; here two CPU processes take that path."""
    from tsn_train.features import extract_on_devices
    one, two = tmp_path / "one", tmp_path / "two"
    settings = FeatureSettings(interval=8)
    extract_features(streams[1:], train_store, one, settings, workers=0, progress=False)
    s = extract_on_devices(["cpu", "cpu"], checkpoints=streams[1:], store_root=train_store, out=two,
                           settings=settings, workers=0, progress=False)
    assert (s.written, s.skipped, s.empty) == (len(CLIPS), 0, 0)
    for clip in CLIPS:
        np.testing.assert_array_equal(np.load(two / f"{clip}.npy"), np.load(one / f"{clip}.npy"))
    assert json.loads((two / "index.json").read_text()) == json.loads((one / "index.json").read_text())


def test_the_command_and_a_converted_zoo_model_give_the_sources_scores(train_store, tmp_path):
    """tsn-train import-checkpoint, then features --what scores and test: the scores the source
    architecture gives with its own preprocessing (tsn-pytorch's BN-Inception flow TSN here)."""
    from tests.conftest import train_cli
    from tests.test_zoo import TSNPytorch, randomise, tsn_pytorch_input
    from tsn_train.protocol import run_test
    from tsn_core.lists import read_list

    source = randomise(TSNPytorch("flow", len(CLIPS)), 8)
    (tmp_path / "classes.txt").write_text("".join(f"{c}\n" for c in CLIPS))
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "tp.pth")
    r = train_cli("import-checkpoint", tmp_path / "tp.pth", tmp_path / "flow.pt", "--classes",
                  tmp_path / "classes.txt", "--input-size", "64", "--scale-size", "72")
    assert r.output == f"{tmp_path / 'flow.pt'}: flow bn_inception of tsn-pytorch, 5 classes, crops 64 of frames rescaled to 72\n"
    r = train_cli("features", "--checkpoint", tmp_path / "flow.pt", "--store", train_store, "--out",
                  tmp_path / "feat", "--what", "scores", "--interval", "6", "--workers", "0", "--quiet")
    assert r.output == f"5 videos written, 0 already there, 0 without a row (at most 3 frames) -> {tmp_path / 'feat'}\n"
    store = Store(train_store)
    count = store.entry("tree", "flow").meta.count
    centres = snippet_centres(count + 1, 6)  # a flow-only job: the video has its flows + 1 frames
    rows = []
    for frames_of_row in snippet_frames(centres, 5, count):
        x = np.stack([np.stack([decode(store.get("tree", ch, i)) for ch in ("flow_x", "flow_y")], -1) for i in frames_of_row])
        view = EvalCrops(64, 72, 1, True)(x)[0]
        with torch.no_grad():
            rows.append(source(tsn_pytorch_input(view, "flow"))[0].numpy())
    np.testing.assert_allclose(np.load(tmp_path / "feat" / "tree.npy"), np.stack(rows), atol=1e-4, rtol=0)
    # the 25-snippet protocol on the same checkpoint: the mean of the source's snippet-crop scores
    scores = run_test(tmp_path / "flow.pt", train_store, read_list(train_store.parent / "train.txt"),
                      segments=3, crops=1, workers=0, device="cpu", progress=False)
    from tsn_train.sampling import center_starts, sample_indices
    want = []
    for starts in sample_indices(center_starts(count, 5, 3), 5, count):
        x = np.stack([np.stack([decode(store.get("tree", ch, i)) for ch in ("flow_x", "flow_y")], -1) for i in starts])
        with torch.no_grad():
            want.append(source(tsn_pytorch_input(EvalCrops(64, 72, 1, True)(x)[0], "flow"))[0].numpy())
    store.close()
    np.testing.assert_allclose(scores.scores[scores.video_ids.index("tree")], np.mean(want, axis=0), atol=1e-4)


def test_fit_resume_fine_tunes_an_imported_model_with_its_sources_input(train_store, tmp_path):
    from tests.conftest import train_cli
    from tests.test_zoo import Recognizer2D, randomise
    from tsn_train.zoo import MMACTION2

    source = randomise(Recognizer2D((3, 4, 6, 3), 10, len(CLIPS)), 9)
    torch.save({"meta": {"dataset_meta": {"classes": list(CLIPS)}}, "state_dict": source.state_dict()},
               tmp_path / "mm_flow.pth")
    train_cli("import-checkpoint", tmp_path / "mm_flow.pth", tmp_path / "imported.pt", "--input-size", "32",
              "--scale-size", "36")
    (tmp_path / "classes.txt").write_text("".join(f"{c}\n" for c in CLIPS))
    train_cli("fit", "--modality", "flow", "--arch", "resnet50", "--store", train_store, "--train-list",
              train_store.parent / "train.txt", "--classes", tmp_path / "classes.txt", "--out", tmp_path / "run",
              "--resume", tmp_path / "imported.pt", "--epochs", "1", "--max-steps", "1", "--batch-size", "5",
              "--accumulate", "1", "--input-size", "32", "--workers", "0", "--device", "cpu", "--log-every", "0")
    tuned = checkpoint.load(tmp_path / "run" / "last.pt")
    assert tuned.epoch == 1 and tuned.classes == list(CLIPS) and tuned.preprocessing.norm == MMACTION2
    before = checkpoint.load(tmp_path / "imported.pt").model["fc.weight"]
    assert not torch.equal(tuned.model["fc.weight"], before)  # a step was taken from the imported weights
    assert (tuned.model["fc.weight"] - before).abs().max() < 0.1


def test_raw_video_files_give_the_rows_of_their_store(tmp_path):
    """--videos extracts each file in memory as the checkpoint's training store was: the same
    images, so the same rows, as features from a store that tsn-prep extracted."""
    from tests.conftest import cli, link_videos
    from tsn_core.store import Store as Reader

    videos = link_videos(tmp_path / "videos", {"tree.avi": "tree.avi", "carphone.mp4": "carphone.mp4"})
    cli("extract-frames", videos, tmp_path / "store", "--size", "112x84")
    cfg = resolve({"modality": "rgb", "store": "", "train_list": "", "out": "", "arch": "resnet18",
                   "input_size": 32, "partial_bn": False})
    torch.manual_seed(3)
    model = build_model(cfg, 2)
    reader = Reader(tmp_path / "store")
    extraction = reader.entry("tree", "rgb").meta.parameters  # what fit records from its store
    reader.close()
    ckpt = tmp_path / "rgb.pt"
    checkpoint.save(checkpoint.Checkpoint(model.state_dict(), cfg, ["a", "b"],
                                          Preprocessing("rgb", 32, 36, NORMS["imagenet"]), extraction, 1), ckpt)
    settings = FeatureSettings(interval=8)
    a = extract_features([ckpt], tmp_path / "store", tmp_path / "from_store", settings, workers=0, progress=False)
    b = extract_features([ckpt], None, tmp_path / "from_videos", settings, workers=0, progress=False,
                         videos=videos)
    assert (a.written, b.written) == (2, 2)
    for clip in ("tree", "carphone"):
        np.testing.assert_array_equal(np.load(tmp_path / "from_videos" / f"{clip}.npy"),
                                      np.load(tmp_path / "from_store" / f"{clip}.npy"))
    assert json.loads((tmp_path / "from_videos" / "index.json").read_text())["videos"] == \
        json.loads((tmp_path / "from_store" / "index.json").read_text())["videos"]
    with pytest.raises(ValueError, match="--list goes with --store"):
        extract_features([ckpt], None, tmp_path / "x", settings, list_path=ckpt, videos=videos)
