"""tsn-train features on real clips: rows where the recipe puts them, values as a plain loop
computes them, csv100 as the rescaling gives it, and a killed job that resumes to the same files."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import CLIPS, decode
from tests.test_feature_rows import independent_rescale
from tsn_core import modalities
from tsn_core.store import Store
from tsn_train import checkpoint
from tsn_train.checkpoint import Preprocessing
from tsn_train.config import resolve
from tsn_train.models.tsn import build_model
from tsn_train.transforms import NORMS
from tsn_train.feature_rows import snippet_centres, snippet_frames
from tsn_train.features import FeatureSettings, extract_features
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


KILLABLE = """
import sys
from pathlib import Path
from tsn_train.features import FeatureSettings, extract_features
extract_features([Path(p) for p in sys.argv[3:]], Path(sys.argv[1]), Path(sys.argv[2]),
                 FeatureSettings(interval=2, crop="ten"), workers=0, batch=40, progress=False)
"""


def test_a_killed_job_resumes_to_the_same_files(train_store, streams, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    settings = FeatureSettings(interval=2, crop="ten")  # 20 rows x 10 crops a clip: a kill lands mid-job
    extract_features(streams, train_store, whole, settings, workers=0, batch=40, progress=False)
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(train_store), str(cut), *map(str, streams)],
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
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
