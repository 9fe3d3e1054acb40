"""tools/bench/gpu_check.py, the committed GPU check, in its CPU mode (``--device cpu --tiny``):
each part runs as on the GPU machine, at tiny sizes, and writes the JSON the docs describe. Its
figures are checked against what the runs left behind (the saved flows, the store, fit's
metrics.jsonl); a part past its budget is stopped, not waited for; a failing part is recorded and
the next one runs. The GPU's own figures need a GPU (docs/performance.md, "GPU check")."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tools.bench import gpu_check
from tools.bench.common import epe, median
from tools.bench.gpu_check_flow import FUSED_BYTES, PEAK_BYTES_PER_S
from tools.bench.gpu_check_train import fit_figures
from tsn_core.store import Store

REPO = Path(__file__).resolve().parents[1]


def run_check(prepared: Path, out: Path, work: Path, *args: str, timeout: float = 120) -> tuple[dict, float]:
    """One run of the check in a process of its own: (its JSON, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tools.bench.gpu_check", "--device", "cpu", "--tiny",
                           "--dir", str(prepared), "--out", str(out), "--work", str(work), "--keep-work", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = out.glob("gpu_check-*.json")
    figures = json.loads(path.read_text())
    for key in gpu_check.REQUIRED:  # every run writes the whole schema, measured or not
        assert key in figures
    return figures, time.monotonic() - t0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from tools.bench.gpu_check_prepare import prepare
    folder = tmp_path_factory.mktemp("gpu_check") / "prepared"
    prepare(folder, tiny_only=True, wheels=False)
    return folder


@pytest.fixture(scope="module")
def extracted(prepared, tmp_path_factory):
    base = tmp_path_factory.mktemp("extracted")
    figures, _ = run_check(prepared, base / "out", base / "work", "--parts", "e2e,frames,trainstore")
    return base / "work", figures


@pytest.fixture(scope="module")
def fitted(prepared, extracted, tmp_path_factory):
    work, _ = extracted
    out = tmp_path_factory.mktemp("fitted")
    figures, _ = run_check(prepared, out, work, "--parts", "fit", "--fit-runs", "rgb-loader,flow-device")
    return work, figures


def test_solver_figures_are_those_of_the_saved_flows(prepared, tmp_path):
    f, _ = run_check(prepared, tmp_path / "out", tmp_path / "work", "--parts", "flow")
    assert f["parts"]["flow"]["status"] == "ok" and f["mode"] == "tiny"
    table = f["solver"]["variants"]
    # the GPU kernels cannot run here: tried, skipped, and the installed code's reason kept
    for name in ("triton", "tiles-k4"):
        assert table[name]["status"] == "skipped" and "CUDA" in table[name]["reason"]
    assert f["solver_variant"] == "torch-eager"
    eager = table["torch-eager"]
    # the EPE figure is the saved flows' against OpenCV's flows of the same carried inputs
    saved = np.load(tmp_path / "out" / "flows" / "torch-eager.npz")
    refs = np.load(prepared / "refs-tiny.npz")
    n = len(saved["flow"])
    assert n == eager["accuracy"]["reference_pairs"] == min(len(refs["flow"]), f["settings"]["accuracy_batches"][0])
    assert np.array_equal(saved["prev"], refs["prev"][:n]) and np.array_equal(saved["nxt"], refs["nxt"][:n])
    assert np.abs(saved["flow"]).max() > 0.5  # real motion, not an untouched buffer
    direct = np.mean([epe(a, b) for a, b in zip(saved["flow"], refs["flow"][:n])])
    assert f["mean_epe_vs_opencv_px"] == pytest.approx(direct, abs=1e-9)
    assert f["bit_identical_across_batches"] is True
    # pairs/s is pairs over the median pass, the best batch is reported, the bound is the model's
    rows = eager["throughput"]
    assert [r["batch"] for r in rows] == f["settings"]["batches"]
    for r in rows:
        assert r["pairs_per_s"] == pytest.approx(r["pairs"] / median(r["pass_s"]))
        bound = PEAK_BYTES_PER_S / (FUSED_BYTES * r["pixel_iterations_per_pair"])
        assert r["bandwidth_bound_fraction"] == pytest.approx(r["pairs_per_s"] / bound)
        assert r["inner_iterations_per_pair"] > 0
    best = max(rows, key=lambda r: r["pairs_per_s"])
    assert f["solver_pairs_per_s"] == best["pairs_per_s"] > 0 and f["solver_best_batch"] == best["batch"]
    assert eager["grove3"]["copies_identical"] and eager["grove3"]["epe_px"] == f["grove3_epe_px"] > 0
    assert eager["profile"]["top"]
    # no GPU: no utilisation figure, and the JSON says why
    assert f["gpu_busy_fraction"] is None and "CPU" in f["gpu_busy_source"]


def test_extraction_figures_are_those_of_the_store(extracted):
    work, f = extracted
    assert all(f["parts"][p]["status"] == "ok" for p in ("e2e", "frames", "trainstore")), f["parts"]
    e2e, s = f["end_to_end"], f["settings"]
    clips = 5 * s["copies"]
    store = Store(work / "store")
    counts = [e.count for (v, m), e in store.index.items() if m == "flow"]
    assert len(counts) == clips == e2e["videos_stored"]
    assert e2e["pairs"] == sum(counts) == clips * (s["e2e_frames"] - 1)
    assert f["end_to_end_pairs_per_s"] == pytest.approx(e2e["pairs"] / e2e["seconds"])
    assert len(store.videos("rgb")) == clips  # the frames part added rgb to the same videos
    # the training store: steps x batch x accumulate distinct videos, each a cut copy of a clip
    n = s["fit_steps"] * s["fit_batch"] * s["fit_accumulate"]
    lines = (work / "train.txt").read_text().split("\n")[:-1]
    assert len(lines) == n == f["train_store"]["videos"]
    train = Store(Path((work / "train_store_path").read_text()))
    clip_names = sorted(p.stem for p in (work / "many" / "c00").iterdir())
    for line in lines:
        vid, label = line.split()
        assert train.entry(vid, "rgb").count == s["train_frames"]
        assert train.entry(vid, "flow").count == s["train_frames"] - 1
        assert Path(train.entry(vid, "rgb").meta.source).stem == clip_names[int(label)]


def test_fit_figures_are_those_of_its_step_records(fitted):
    work, f = fitted
    s = f["settings"]
    for m, d in (("rgb", "loader"), ("flow", "device")):
        run = f["fit"][m][d]
        assert run["status"] == "ok" and run["checkpoint"], run
        steps = [json.loads(x) for x in (work / "runs" / f"{m}-{d}" / "metrics.jsonl").read_text().splitlines()
                 if json.loads(x)["kind"] == "step"]
        data = sum(x["data_seconds"] for x in steps)
        total = data + sum(x["compute_seconds"] for x in steps)
        videos = s["fit_steps"] * s["fit_accumulate"] * s["fit_batch"]
        assert f["fit_images_per_s"][m][d] == pytest.approx(videos * 3 / total)
        assert f["fit_data_fraction"][m][d] == pytest.approx(data / total)
        assert 0 < f["fit_data_fraction"][m][d] < 1
    assert run["jpegs_per_s"] == pytest.approx(10 * run["images_per_s"])  # a flow snippet: 10 JPEGs
    assert f["fit_images_per_s"]["rgb"]["device"] is None and f["fit"]["rgb"].get("device") is None


def test_test_throughput_and_predict_equal_to_test(prepared, fitted, tmp_path):
    work, _ = fitted
    f, _ = run_check(prepared, tmp_path / "out", work, "--parts", "test")
    assert f["parts"]["test"]["status"] == "ok", f["parts"]
    for m in ("rgb", "flow"):
        assert f["test_videos_per_s"][m] > 0
    (predict,) = [x for x in f["test"] if x["kind"] == "predict"]
    assert predict["videos"] == 1 and predict["max_abs_probability_difference"] <= 1e-5
    assert f["predict_equals_test"] is True


def test_a_part_past_its_budget_is_stopped_and_a_failing_part_does_not_stop_the_rest(prepared, tmp_path):
    # test fails (no checkpoint in a fresh work folder); sleep records a figure, then would
    # sleep 10 minutes: it is killed when its budget (3 s: the deadline) is spent, its figure kept
    f, seconds = run_check(prepared, tmp_path / "out", tmp_path / "work", "--parts", "test,sleep",
                           "--budget", "test=1", "--budget", "sleep=2", timeout=60)
    assert f["deadline_s"] == 3
    assert f["parts"]["test"]["status"] == "failed" and "checkpoint" in f["parts"]["test"]["error"]
    sleep = f["parts"]["sleep"]
    assert sleep["status"] == "stopped" and "budget" in sleep["error"]
    assert 2 <= sleep["budget_s"] <= 3 and sleep["budget_s"] - 0.5 <= sleep["seconds"] <= sleep["budget_s"] + 2
    assert f["sleep"] == [{"kind": "partial", "value": 1.0}]
    assert seconds < 20


def test_fit_figures_leave_out_the_warm_up_batches(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    records = [{"kind": "step", "epoch": 1, "step": s, "data_seconds": d, "compute_seconds": c}
               for s, d, c in ((10, 5.0, 5.0), (20, 1.0, 3.0), (30, 0.5, 3.5))]
    records.append({"kind": "epoch", "epoch": 1, "data_seconds": 6.5, "compute_seconds": 11.5, "seconds": 19})
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = fit_figures(metrics, batch_size=32, modality="rgb", warmup_batches=10)
    assert fig["batches_measured"] == 20 and fig["data_fraction"] == pytest.approx(1.5 / 8)
    assert fig["images_per_s"] == pytest.approx(20 * 32 * 3 / 8)
    assert fig["epoch"]["data_fraction_with_warmup"] == pytest.approx(6.5 / 18)


def test_budget_gives_each_part_what_the_later_ones_leave():
    b = gpu_check.Budget(time.monotonic() + 100, [20, 30, 40])
    assert b.timeout(0) == pytest.approx(30, abs=0.1)  # 100 - 30 - 40: the unused plan moves on
    assert b.timeout(2) == pytest.approx(100, abs=0.1)
