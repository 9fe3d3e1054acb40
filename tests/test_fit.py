"""tsn-train fit on real clips: it learns, it resumes after a kill, and it trains on two ranks."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import CLIPS, REPO, fit_killed_at, train_cli
from tsn_train import checkpoint
from tsn_train.dataset import ShardSampler

SMALL = ["--arch", "resnet18", "--input-size", "64", "--workers", "0", "--accumulate", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def epochs_of(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "epoch"]


def test_a_small_tsn_memorises_real_clips(train_store, tmp_path):
    lst = train_store.parent / "train.txt"
    run = tmp_path / "run"
    result = train_cli("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst,
                       "--out", run, *SMALL, "--batch-size", "5", "--epochs", "25", "--lr", "0.01",
                       "--lr-steps", "100", "--dropout", "0.2", "--no-partial-bn")
    history = epochs_of(run)
    assert [r["epoch"] for r in history] == list(range(1, 26))
    assert history[-1]["train_acc"] == 1.0
    first, last = history[0]["train_loss"], sum(r["train_loss"] for r in history[-3:]) / 3
    assert last < first / 10, (first, last)
    assert "epoch 25/25" in result.output
    ckpt = checkpoint.load(run / "last.pt")
    assert ckpt.epoch == 25 and ckpt.classes == ["0", "1", "2", "3", "4"]
    assert ckpt.preprocessing.input_size == 64 and ckpt.modality == "rgb"


def _fit_args(store: Path, lst: Path, run: Path, epochs: int) -> list[str]:
    return ["fit", "--modality", "flow", "--store", str(store), "--train-list", str(lst),
            "--val-list", str(store.parent / "train.txt"), "--out", str(run), *SMALL, "--batch-size", "1",
            "--epochs", str(epochs), "--lr", "0.01", "--lr-steps", "2", "--log-every", "1"]




def test_killed_mid_epoch_resumes_from_the_last_checkpoint(train_store, tmp_path):
    lst = train_store.parent / "train.txt"  # 5 videos: an epoch is 5 steps of one video
    killed = tmp_path / "killed"
    # One thread, as in this process (the resumed and the straight run): bit-identical results.
    proc = subprocess.run([sys.executable, "-c", fit_killed_at(3, 3), *_fit_args(train_store, lst, killed, 3)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [r["epoch"] for r in epochs_of(killed)] == [1, 2]  # died inside epoch 3
    assert checkpoint.load(killed / "last.pt").epoch == 2

    result = train_cli(*_fit_args(train_store, lst, killed, 3), "--resume")
    assert "resuming after epoch 2" in result.output
    history = epochs_of(killed)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.01, 0.001])
    steps = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for r in steps if r["kind"] == "step" and r["epoch"] == 3) == 5  # no half epoch left
    assert not list(killed.glob(".*.tmp"))

    straight = tmp_path / "straight"
    train_cli(*_fit_args(train_store, lst, straight, 3))
    a, b = checkpoint.load(killed / "last.pt"), checkpoint.load(straight / "last.pt")
    assert a.epoch == b.epoch == 3
    assert all(torch.equal(a.model[k], b.model[k]) for k in b.model)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    best = checkpoint.load(killed / "best.pt")
    assert best.best_val_acc == max(r["val_acc"] for r in history)


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    from tsn_train.config import FitConfig
    from tsn_train.transforms import NORMS
    cfg = FitConfig(modality="flow", store="s", train_list="t", out="o", arch="resnet18")
    ckpt = checkpoint.Checkpoint(
        model={"w": torch.arange(3.0)}, config=cfg, classes=["a", "b"],
        preprocessing=checkpoint.Preprocessing("flow", 64, 73, NORMS["imagenet"]),
        extraction={"size": [112, 84]}, epoch=2, best_val_acc=0.5, history=[{"epoch": 1}],
        optimizer={"state": {}}, scaler={})
    checkpoint.save(ckpt, tmp_path / "c.pt")
    back = checkpoint.load(tmp_path / "c.pt")
    assert torch.equal(back.model["w"], ckpt.model["w"]) and back.config == cfg
    assert (back.modality, back.arch, back.classes, back.preprocessing, back.extraction) == \
        ("flow", "resnet18", ["a", "b"], ckpt.preprocessing, {"size": [112, 84]})
    assert (back.epoch, back.best_val_acc, back.history, back.optimizer) == (2, 0.5, [{"epoch": 1}], {"state": {}})
    raw = torch.load(tmp_path / "c.pt", weights_only=False)
    assert (raw["format"], raw["version"]) == (checkpoint.FORMAT, checkpoint.VERSION) and "rng" not in raw
    assert not list(tmp_path.glob(".*.tmp"))
    # a version-1 file (the unversioned dict written before) still loads
    v1 = {k: v for k, v in raw.items() if k != "version"}
    v1["preprocessing"] = dict(v1["preprocessing"], segments=3)
    torch.save(v1, tmp_path / "v1.pt")
    assert checkpoint.load(tmp_path / "v1.pt").preprocessing == ckpt.preprocessing
    # a config written before crop_positions existed loads as the five positions it trained with
    old = dict(raw, config={k: v for k, v in raw["config"].items() if k != "crop_positions"})
    torch.save(old, tmp_path / "old.pt")
    assert cfg.crop_positions == 13 and checkpoint.load(tmp_path / "old.pt").config.crop_positions == 5
    torch.save(dict(raw, version=99), tmp_path / "new.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    torch.save({k: v for k, v in raw.items() if k != "classes"}, tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for name, message in [("new.pt", "checkpoint format version 99; this tsn-train reads versions 1 to 2"),
                          ("other.pt", "not a tsn-train checkpoint"), ("junk.pt", "unreadable checkpoint"),
                          ("cut.pt", "damaged tsn-train checkpoint"), ("none.pt", "no such checkpoint")]:
        with pytest.raises(ValueError, match=f"^{tmp_path / name}: {message}"):
            checkpoint.load(tmp_path / name)


def test_ranks_split_the_videos():
    train = [ShardSampler(5, r, 2, shuffle=True, seed=3, pad=True) for r in (0, 1)]
    a, b = (s.order() for s in train)
    assert len(a) == len(b) == 3 and sorted(set(a) | set(b)) == [0, 1, 2, 3, 4]
    orders = []
    for epoch in range(5):
        train[0].set_epoch(epoch)
        orders.append(train[0].order())
    assert orders[0] == a and len({tuple(o) for o in orders}) > 1  # a new permutation per epoch
    few = [ShardSampler(1, r, 3, pad=True) for r in range(3)]  # fewer videos than ranks
    assert [s.order() for s in few] == [[0], [0], [0]] and [len(s) for s in few] == [1, 1, 1]
    val = [ShardSampler(5, r, 2).order() for r in (0, 1)]
    assert val == [[0, 2, 4], [1, 3]]  # validation: every video exactly once


def test_two_gloo_ranks_end_with_identical_weights(train_store, tmp_path):
    lst = train_store.parent / "train.txt"
    run = tmp_path / "ddp"
    run.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "helpers" / "ddp_fit.py"), str(run), "--",
           "--modality", "rgb", "--store", str(train_store), "--train-list", str(lst),
           "--val-list", str(lst), "--out", str(run), *SMALL, "--batch-size", "2", "--epochs", "2",
           "--lr", "0.01", "--no-partial-bn", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["state"].keys() == r1["state"].keys()
    params = [k for k in r0["state"] if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in params)
    saved = checkpoint.load(run / "last.pt").model  # rank 0 wrote the checkpoint
    assert all(torch.equal(saved[k], r0["state"][k]) for k in params)
    # Each rank trained on its own 3 of the 5 videos (padded to 6; both ranks reading everything
    # would count 10) and the metrics were summed over both ranks; each video validated once.
    assert [h["train_videos"] for h in r0["history"]] == [6, 6]
    assert [h["val_videos"] for h in r0["history"]] == [5, 5]
    drop_time = [[{k: v for k, v in h.items() if not k.endswith("seconds")} for h in r["history"]]
                 for r in (r0, r1)]
    assert drop_time[0] == drop_time[1]


def test_bad_lists_and_weights_stop_before_training(train_store, tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("carphone 0\nmissing_a 1\nmissing_b 1\n")
    base = ["fit", "--modality", "warped_flow", "--store", train_store, "--out", tmp_path / "r", *SMALL]
    result = train_cli(*base, "--train-list", lst, expect=1)
    assert f"train list {lst}: 2 of 3 videos have no warped_flow" in result.output
    result = train_cli(*base[:2], "flow", *base[3:], "--train-list", lst, expect=1)
    assert "2 of 3 videos have no flow" in result.output and "missing_a, missing_b (2)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()
    good = train_store.parent / "train.txt"
    result = train_cli(*base[:2], "rgb", *base[3:], "--train-list", good, "--pretrained",
                       tmp_path / "r50.pth", expect=1)
    assert "r50.pth: no such weights file" in result.output
    result = train_cli(*base[:2], "rgb", *base[3:], "--train-list", good, "--preset", "kinetics", expect=2)
    assert "'kinetics' is not one of 'hmdb51', 'ucf101'" in result.output
    result = train_cli(*base[:2], "rgb", *base[3:], "--train-list", good, "--resume", expect=1)
    assert "last.pt: no such checkpoint" in result.output
    names = tmp_path / "classes.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    result = train_cli(*base[:2], "rgb", *base[3:], "--train-list", good, "--classes", names,
                       "--num-classes", "6", expect=1)
    assert f"--num-classes 6 disagrees with {names} (5 names)" in result.output
    assert not (tmp_path / "r").exists()


def test_mixed_precision_and_channels_last_path_learns_flow_on_the_cpu(train_store, tmp_path, monkeypatch):
    # The CUDA recipe (autocast, channels_last) run on the CPU device. fp16 (with GradScaler) also
    # runs on the CPU but about 3x slower than bf16 there, so CI covers bf16 only.
    import tsn_train.fit as fit_module
    seen = []  # per convolution call: output dtype, input and weight in channels_last

    def build_and_watch(*args, **kwargs):
        model = build_model(*args, **kwargs)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda m, inp, out: seen.append(
                    (m.kernel_size, out.dtype, inp[0].is_contiguous(memory_format=torch.channels_last),
                     m.weight.is_contiguous(memory_format=torch.channels_last))))
        return model

    build_model = fit_module.build_model
    monkeypatch.setattr(fit_module, "build_model", build_and_watch)
    amp = "bf16"
    run = tmp_path / amp
    train_cli("fit", "--modality", "flow", "--store", train_store, "--train-list",
              train_store.parent / "train.txt", "--out", run, *SMALL, "--batch-size", "5",
              "--epochs", "6", "--lr", "0.01", "--dropout", "0.2", "--no-partial-bn",
              "--amp", amp, "--channels-last")
    history = epochs_of(run)
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    # every convolution ran in bf16 on channels_last input and weights (a 1x1 kernel or map is
    # both layouts at once, so the 7x7 and 3x3 ones are the evidence)
    assert len(seen) == 6 * 20  # resnet18: 20 convolutions, one batch per epoch
    assert {dtype for _, dtype, _, _ in seen} == {torch.bfloat16}
    assert all(x_last and w_last for k, _, x_last, w_last in seen if k != (1, 1))
    ckpt = checkpoint.load(run / "last.pt")
    assert all(v.dtype == torch.float32 for k, v in ckpt.model.items() if v.is_floating_point())


def test_inception_v3_end_to_end(train_store, tmp_path):
    # Fit a tiny Inception-v3 TSN (75 px is its smallest input), then test it: the checkpoint
    # round trip gives the model fit returned, and the test scores are that model's.
    from tsn_train.cli import main
    from tsn_train.dataset import StoreImages
    from tsn_train.protocol import dataset_for_test, run_test, video_scores
    from tsn_core.lists import Record
    from tsn_train.transforms import NORMS

    run = tmp_path / "iv3"
    records = [Record(c, i) for i, c in enumerate(CLIPS[:2])]
    lst = tmp_path / "two.txt"
    lst.write_text("".join(f"{r.video_id} {r.label}\n" for r in records))
    result = main.main(["fit", "--modality", "rgb", "--store", str(train_store), "--train-list",
                        str(lst), "--out", str(run), "--arch", "inception_v3", "--input-size", "75",
                        "--workers", "0", "--accumulate", "1", "--batch-size", "2", "--segments", "2",
                        "--epochs", "1"], standalone_mode=False)
    ckpt = checkpoint.load(run / "last.pt")
    assert ckpt.arch == "inception_v3" and ckpt.epoch == 1
    assert ckpt.preprocessing.input_size == 75 and ckpt.preprocessing.norm == NORMS["imagenet"]
    trained = result.model.eval()
    loaded = checkpoint.model_from_checkpoint(ckpt)
    torch.manual_seed(0)
    x = torch.randn(2, 2, 3, 75, 75)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
    scores = run_test(run / "last.pt", train_store, records, segments=2, crops=1, workers=0,
                      progress=False, device="cpu")
    assert scores.scores.shape == (2, 2) and scores.settings["arch"] == "inception_v3"
    ds = dataset_for_test(StoreImages(train_store), records, {c: 40 for c in CLIPS}, ckpt.preprocessing, 2, 1)
    for i in (0, 1):
        expected = video_scores(trained, ds[i][0], ckpt.preprocessing, 64).numpy()
        assert np.isfinite(expected).all()
        assert np.allclose(scores.scores[i], expected, atol=1e-5), (scores.scores[i], expected)


@pytest.mark.parametrize("clip", [None, 0.05])
def test_accumulating_two_batches_of_two_is_one_step_on_a_batch_of_four(clip):
    from torch import nn

    from tsn_train.config import FitConfig
    from tsn_train.distributed import Dist
    from tsn_train.fit import train_one_epoch
    from tsn_train.transforms import NORMS, to_input

    class Net(nn.Module):  # no BN or dropout, so gradients of sub-batches add up exactly
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            return self.fc(x.flatten(2)).mean(1)

    torch.manual_seed(0)
    x = torch.randint(0, 256, (8, 2, 1, 2, 2, 3), dtype=torch.uint8)  # (batch, K, L, H, W, BGR)
    y = torch.randint(0, 3, (8,))
    init = Net().state_dict()

    def run(batch: int, accumulate: int) -> nn.Module:
        net = Net()
        net.load_state_dict(init)
        opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
        cfg = FitConfig(modality="rgb", store="", train_list="", out="", batch_size=batch,
                        accumulate=accumulate, clip_grad=clip, log_every=0, epochs=1)
        loader = [(x[i:i + batch], y[i:i + batch]) for i in range(0, 8, batch)]
        train_one_epoch(net, loader, opt, torch.amp.GradScaler("cpu", enabled=False), cfg,
                        Dist(0, 1, 0, torch.device("cpu")), None, 0, None,
                        lambda batch: to_input(batch, "rgb", NORMS["caffe_bgr"]))
        return net

    a, b, c = run(4, 1), run(2, 2), run(2, 1)
    assert torch.allclose(a.fc.weight, b.fc.weight, atol=1e-6)
    assert not torch.allclose(a.fc.weight, c.fc.weight, atol=1e-3)  # 4 steps differ from 2


def test_a_finished_run_is_not_overwritten_and_resume_checks_the_stream(train_store, tmp_path):
    lst = train_store.parent / "train.txt"
    run = tmp_path / "run"
    args = ["fit", "--store", train_store, "--train-list", lst, "--out", run, *SMALL,
            "--batch-size", "5", "--epochs", "1", "--no-partial-bn"]
    train_cli(*args, "--modality", "rgb")
    before = (run / "metrics.jsonl").read_text()
    result = train_cli(*args, "--modality", "rgb", expect=1)
    assert "already holds a run (last.pt): add --resume" in result.output
    result = train_cli(*args, "--modality", "flow", "--resume", expect=1)
    assert "is a rgb resnet18 run; this command trains flow resnet18" in result.output
    assert (run / "metrics.jsonl").read_text() == before


def test_config_reruns_a_recorded_run_and_resume_of_a_finished_run_says_so(train_store, tmp_path):
    """fit --config run/config.json trains what that run trained (options beside it override);
    --resume of a run that has done its epochs says there is nothing to do."""
    lst = train_store.parent / "train.txt"
    first = tmp_path / "first"
    args = ["--modality", "rgb", "--store", train_store, "--train-list", lst, *SMALL, "--input-size", "32",
            "--batch-size", "5", "--epochs", "2", "--lr", "0.01", "--no-partial-bn", "--device", "cpu"]
    train_cli("fit", *args, "--out", first)
    again = tmp_path / "again"
    r = train_cli("fit", "--config", first / "config.json", "--out", again)
    assert "warning" not in r.output
    a, b = checkpoint.load(first / "last.pt"), checkpoint.load(again / "last.pt")
    assert {k: v for k, v in b.config.to_dict().items() if k != "out"} == \
        {k: v for k, v in a.config.to_dict().items() if k != "out"}
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)  # the same run, bit for bit
    longer = train_cli("fit", "--config", first / "config.json", "--out", tmp_path / "longer",
                       "--epochs", "3", "--lr", "0.02")
    assert "epoch 3/3" in longer.output
    assert checkpoint.load(tmp_path / "longer" / "last.pt").config.lr == 0.02

    r = train_cli("fit", *args, "--out", first, "--resume")
    assert r.output.strip().splitlines()[-1] == (
        f"nothing to do: {first / 'last.pt'} has finished epoch 2 of 2; to train on, give --epochs N "
        "(more than 2) with --resume")
    assert checkpoint.load(first / "last.pt").epoch == 2

    r = train_cli("fit", "--config", first / "config.json", "--preset", "ucf101", "--out", tmp_path / "x",
                  expect=2)
    assert "give --preset or --config, not both" in r.output
    r = train_cli("fit", "--store", train_store, "--out", tmp_path / "x", expect=2)
    assert "missing --modality, --train-list (give them, or --config with a run's config.json)" in r.output


def test_settings_that_work_against_each_other_get_a_line(train_store, tmp_path):
    from tsn_core.machine import usable_cores
    from tsn_train.config import default_workers, resolve
    from tsn_train.fit import advice

    base = {"modality": "flow", "store": "s", "train_list": "t", "out": "o"}
    assert advice(resolve(base)) == [
        "partial BN (on by default) freezes the statistics of every BatchNorm layer but the first, "
        "which assumes ImageNet weights: training from scratch, add --no-partial-bn (or give "
        "--pretrained)"]
    assert advice(resolve(dict(base, pretrained="w.pth"))) == []
    assert resolve(base).workers == default_workers() == min(4, usable_cores())
    many = advice(resolve(dict(base, partial_bn=False, workers=usable_cores() + 1)))
    assert many == [f"--workers {usable_cores() + 1}: more DataLoader processes than the "
                    f"{usable_cores()} usable cores; they will take turns"]
