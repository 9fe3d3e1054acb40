"""Training settings: defaults from the modality spec checked against the reference solver (the paper and its code),
presets that only say how they differ, overrides, help text from the same source, and a command
line that answers --help without importing torch."""
import pytest

from tsn_core.modalities import MODALITIES
from tsn_train import config
from tsn_train.config import FitConfig, default_text, defaults, load_preset, resolve

from .conftest import run_python, train_cli

BASE = {"store": "s", "train_list": "t", "out": "o"}

# the reference defaults (the paper and its code) in the reference's own units (iterations of 128 videos):
# (lr, lr steps, stop, dropout, clip, scales).
REFERENCE = {
    "rgb": (0.001, (1500, 3000), 3500, 0.8, 40.0, (1, .875, .75, .66)),
    "rgbdiff": (0.001, (1500, 3000), 3500, 0.8, 40.0, (1, .875, .75)),
    "flow": (0.005, (10000, 16000), 18000, 0.7, 20.0, (1, .875, .75)),
    "warped_flow": (0.005, (10000, 16000), 18000, 0.7, 20.0, (1, .875, .75)),
}
TRAIN_VIDEOS = {"ucf101": 9537, "hmdb51": 3570}  # split 1


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51"])
@pytest.mark.parametrize("modality", list(MODALITIES))
def test_presets_reproduce_the_reference_solver(dataset, modality):
    lr, steps, stop, dropout, clip, scales = REFERENCE[modality]
    cfg = resolve(dict(BASE, modality=modality), dataset)
    per_epoch = TRAIN_VIDEOS[dataset] / (cfg.batch_size * cfg.accumulate)
    assert cfg.batch_size * cfg.accumulate == 128
    # Epoch boundaries nearest to the reference's iteration counts.
    assert cfg.lr_steps == [round(s / per_epoch) for s in steps]
    assert cfg.epochs == round(stop / per_epoch)
    assert (cfg.lr, cfg.dropout, cfg.clip_grad, tuple(cfg.scales)) == (lr, dropout, clip, scales)
    assert (cfg.arch, cfg.segments, cfg.consensus, cfg.partial_bn) == ("bn_inception", 3, "average", True)


def test_presets_hold_only_what_differs_from_the_defaults():
    for modality in MODALITIES:
        assert load_preset("ucf101", modality) == {}
        hmdb = load_preset("hmdb51", modality)
        assert set(hmdb) == {"lr_steps", "epochs"}
        assert all(hmdb[k] != defaults(modality)[k] for k in hmdb)


def test_options_override_presets_and_none_means_not_given():
    cfg = resolve(dict(BASE, modality="flow", lr=0.01, dropout=None, batch_size=8), "hmdb51")
    assert (cfg.lr, cfg.dropout, cfg.lr_steps, cfg.batch_size) == (0.01, 0.7, [359, 574], 8)
    assert resolve(dict(BASE, modality="rgb", scales=[1.0, .5])).scales == [1.0, .5]
    with pytest.raises(ValueError, match="no preset 'kinetics'; presets: hmdb51, ucf101"):
        resolve(dict(BASE, modality="rgb"), "kinetics")


def test_a_resolved_config_has_no_missing_setting():
    for modality in MODALITIES:
        cfg = resolve(dict(BASE, modality=modality))
        assert None not in (cfg.scales, cfg.dropout, cfg.lr, cfg.lr_steps, cfg.epochs, cfg.clip_grad)
        # defaults() returns fresh lists: changing one run's settings leaves the spec alone
        cfg.scales.append(0.1)
        assert tuple(resolve(dict(BASE, modality=modality)).scales) == config.REFERENCE[modality].scales


def test_help_shows_the_defaults_resolve_uses():
    assert default_text("dropout") == "[default: 0.8 rgb, rgbdiff; 0.7 flow, warped_flow]"
    assert default_text("batch_size") == f"[default: {FitConfig.batch_size}]"
    assert default_text("partial_bn") == "[default: on]"
    out = " ".join(train_cli("fit", "--help").output.split())
    assert "--dropout FLOAT RANGE Before the classifier. [default: 0.8 rgb, rgbdiff; 0.7 flow, warped_flow]" in out
    assert "[default: 20,40 rgb, rgbdiff; 134,215 flow, warped_flow]" in out
    assert "[default: 224; 299 inception_v3]" in out


def test_training_crops_default_to_the_references_13_positions(monkeypatch):
    for dataset in (None, "ucf101", "hmdb51"):
        for modality in MODALITIES:
            assert resolve(dict(BASE, modality=modality), dataset).crop_positions == 13
    assert resolve(dict(BASE, modality="rgb", crop_positions=5)).crop_positions == 5
    assert default_text("crop_positions") == "[default: 13]"
    out = " ".join(train_cli("fit", "--help").output.split())
    assert "--crop-positions [13|5] Fixed places the training crop is drawn from: 13 = the reference TSN's" in out
    assert "5 = four corners and centre (mmaction2's default). [default: 13]" in out
    # The option reaches the run's settings as a number; not given, the default stays.
    import tsn_train.fit
    seen = []
    monkeypatch.setattr(tsn_train.fit, "fit", lambda cfg, resume: seen.append(cfg.crop_positions))
    args = ("fit", "--modality", "rgb", "--store", ".", "--train-list", __file__, "--out", "o")
    train_cli(*args, "--crop-positions", "5")
    train_cli(*args)
    assert seen == [5, 13]
    result = train_cli(*args, "--crop-positions", "7", expect=2)
    assert "Invalid value for '--crop-positions': '7' is not one of '13', '5'." in result.output


def test_number_lists_are_click_types():
    result = train_cli("fit", "--modality", "rgb", "--store", ".", "--train-list", __file__,
                       "--out", "o", "--scales", "1,x", expect=2)
    assert "expected comma-separated floats like 1,1.5; got '1,x'" in result.output
    result = train_cli("fuse", __file__, __file__, "--weights", "1,1.5,2", expect=2)
    assert "2 score files but 3 weights" in result.output


@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"], ["fuse", "--help"]])
def test_help_does_not_import_torch(args):
    code = ("import sys; from click.testing import CliRunner; from tsn_train.cli import main; "
            f"r = CliRunner().invoke(main, {args!r}); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    assert run_python(code).strip() == "[]"


def test_fit_settings_without_click(tmp_path):
    from tsn_train.fit_settings import SettingsMistake, settings_of

    given = {f: None for f in FitConfig.__dataclass_fields__}
    with pytest.raises(SettingsMistake, match=r"missing --modality, --store \(or --videos\), --train-list, --out"):
        settings_of(given)
    cfg = settings_of(dict(given, modality="flow", store="s", train_list="t", out="o", lr=0.01), preset="hmdb51")
    assert (cfg.lr, cfg.lr_steps) == (0.01, [359, 574])
    with pytest.raises(SettingsMistake, match="give --preset or --config, not both"):
        settings_of(given, str(tmp_path / "config.json"), "hmdb51")
