"""Training settings: one source of defaults, shipped presets that say only how they differ, and
command-line overrides.

A setting's default is either a ``FitConfig`` field default (the same for every modality) or, for
the fields in ``PER_MODALITY``, the modality's reference value in ``REFERENCE``. The
reference values are UCF101's, so the ``ucf101`` preset changes nothing. ``tsn-train fit --help``
prints its defaults from here (``default_text``).

This module imports neither torch nor torchvision, so the command line can read it for ``--help``.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from typing import Optional

from tsn_core.frames import DECODERS
from tsn_core.machine import usable_cores
from tsn_core.modalities import MODALITIES

from .archs import ARCHS, CONSENSUS

# The paper's test protocol (``tsn-train test`` and ``predict``): evenly spaced snippets per video,
# crops per snippet (four corners, centre and their mirrors), snippet-crops per forward pass.
TEST_SEGMENTS = 25
TEST_CROPS = 10
TEST_BATCH = 64
CROP_CHOICES = (10, 3, 1)

# Fixed places a training crop may sit (``tsn_train.transforms.fixed_offsets``): 13, the reference's
# (Caffe TSN's more_fix_crop, tsn-pytorch), or 5, corners and centre (mmaction2's default).
CROP_POSITION_CHOICES = (13, 5)

# Where training JPEGs are decoded (``FitConfig.decode_on``): the loader workers, or the training
# device in batches (``tsn_train.device_decode``).
DECODE_CHOICES = ("loader", "device")



@dataclass(frozen=True)
class Reference:
    """How a stream of one modality is trained by default: the reference settings (the paper and
    its Caffe code; schedules in epochs of UCF101 split 1: 9537 videos, 74.5 iterations of 128 per
    epoch)."""

    scales: tuple[float, ...]      # multi-scale crop fractions of the short side
    dropout: float
    lr: float
    lr_steps: tuple[int, ...]      # epochs at which lr is multiplied by 0.1
    epochs: int
    clip_grad: float               # max L2 norm of the gradient


_RGB_SCHEDULE = dict(lr=0.001, lr_steps=(20, 40), epochs=47, clip_grad=40.0)
_FLOW_SCHEDULE = dict(lr=0.005, lr_steps=(134, 215), epochs=242, clip_grad=20.0)

REFERENCE: dict[str, Reference] = {
    "rgb": Reference(scales=(1, .875, .75, .66), dropout=0.8, **_RGB_SCHEDULE),
    "rgbdiff": Reference(scales=(1, .875, .75), dropout=0.8, **_RGB_SCHEDULE),
    "flow": Reference(scales=(1, .875, .75), dropout=0.7, **_FLOW_SCHEDULE),
    "warped_flow": Reference(scales=(1, .875, .75), dropout=0.7, **_FLOW_SCHEDULE),
}

# Settings whose default depends on the modality: read from REFERENCE, never typed elsewhere.
PER_MODALITY = tuple(f.name for f in fields(Reference))


def _setting(default=MISSING, help: str = "", **meta):
    """A FitConfig field that is a ``tsn-train fit`` option (``tsn_core.options``: ``help``, and
    ``min``, ``choices``, ``path``...); its default is printed after the help (``default_text``)."""
    return field(default=default, metadata={"help": help, **meta})


REQUIRED = "Required unless --config gives it."
AMP_CHOICES = ("auto", "off", "bf16", "fp16")


@dataclass
class FitConfig:
    """Every setting of one ``tsn-train fit`` run (saved in its checkpoints and config.json).

    Fields in ``PER_MODALITY`` default to None here and are filled in from ``REFERENCE`` by
    ``resolve``; a resolved config has no None among them. Each field is a ``fit`` option too: its
    metadata holds the option's help and type (``tsn_core.options``).
    """

    modality: str = _setting(help="Stream to train. rgbdiff reads the rgb frames; flow and warped_flow "
                                  f"their own. {REQUIRED}", choices=tuple(MODALITIES))
    train_list: str = _setting(help=f"'video_id label' per line. {REQUIRED}", path="file", exists=True)
    out: str = _setting(help="Run folder: last.pt, best.pt, metrics.jsonl, config.json. Required unless "
                             "--config gives it.", path="dir")
    store: Optional[str] = _setting(None, "Output folder of tsn-prep (the LMDB shards). This or --videos "
                                          "is required unless --config gives it.", path="dir", exists=True)
    videos: Optional[str] = _setting(
        None, "Instead of --store, for rgb and rgbdiff: the video files (a folder, one file, or a text "
              "file of paths), named as tsn-prep names them; the sampled frames are decoded from them "
              "as tsn-prep extract-frames would store them (docs/training.md, 'Frames or videos').",
        path="any", exists=True)
    video_size: Optional[str] = _setting(
        "340x256", "With --videos: the frames' size WxH, as tsn-prep extract-frames --size.")
    video_short_side: Optional[int] = _setting(
        None, "With --videos: scale the frames' short side to N, keeping the aspect (instead of "
              "--video-size), as tsn-prep extract-frames --short-side.", min=16)
    decoders: str = _setting(",".join(DECODERS), "With --videos: the video decoders to try, in order, "
                                                  "as tsn-prep's --decoders.")
    val_list: Optional[str] = _setting(None, "Validated every epoch (segment centres, centre crop); the "
                                             "best epoch is kept.", path="file", exists=True)
    classes: Optional[str] = _setting(None, "Class names, one per line in label order (default: labels "
                                            "are the names).", path="file", exists=True)
    num_classes: Optional[int] = _setting(None, "Default: the class file's length, else max label + 1.",
                                          min=2)
    arch: str = _setting("bn_inception", "Backbone.", choices=tuple(ARCHS))
    pretrained: Optional[str] = _setting(
        None, "ImageNet weights file for the backbone (e.g. bn_inception-52deb4733.pth, or a torchvision "
              "resnet50 .pth). Nothing is downloaded. Default: random init.", path="file")
    consensus: str = _setting("average", "Segmental consensus.", choices=CONSENSUS)
    topk: int = _setting(2, "k of top-k consensus.", min=1)
    segments: int = _setting(3, "Segments K per video.", min=1)
    dropout: Optional[float] = _setting(None, "Before the classifier.", min=0, max=1, max_open=True)
    partial_bn: bool = _setting(True, "Freeze every BatchNorm but the first.")
    # None: the architecture's (224, or 299 for Inception-v3)
    input_size: Optional[int] = _setting(None, "Crop side fed to the network.", min=32)
    scales: Optional[list[float]] = _setting(None, "Multi-scale crop fractions of the short side.")
    # off for classes that mirroring changes (left/right)
    flip: bool = _setting(True, "Random horizontal flips (flow x inverted). Turn off when mirroring "
                                "changes the class, e.g. 'move left' vs 'move right'.")
    # fixed training crop places: 13 (reference) or 5
    crop_positions: int = _setting(
        13, "Fixed places the training crop is drawn from: 13 = the reference TSN's (Caffe "
            "more_fix_crop, tsn-pytorch): corners, centre, edge middles and quarter points; 5 = four "
            "corners and centre (mmaction2's default).", choices=CROP_POSITION_CHOICES)
    lr: Optional[float] = _setting(None, "Base learning rate.")
    lr_steps: Optional[list[int]] = _setting(None, "Epochs where lr is multiplied by --lr-gamma.")
    lr_gamma: float = _setting(0.1)
    epochs: Optional[int] = _setting(None, min=1)
    momentum: float = _setting(0.9)
    weight_decay: float = _setting(5e-4)
    clip_grad: Optional[float] = _setting(None, "Max L2 norm of the gradient (0 = off).", min=0)
    batch_size: int = _setting(32, "Videos per forward pass per process.", min=1)
    accumulate: int = _setting(4, "Batches per SGD step; effective batch = batch-size x accumulate x "
                                  "processes.", min=1)
    # None: DEFAULT_WORKERS, at most the usable cores
    workers: Optional[int] = _setting(None, "DataLoader processes per training process.", min=0)
    # training JPEGs: "loader" workers (CPU) or the "device"
    decode_on: str = _setting(
        "loader", "Where training JPEGs are decoded, cropped and resized: in the loader workers on the "
                  "CPU, or on the training device in batches (torchvision.io.decode_jpeg: nvJPEG on "
                  "CUDA), leaving the workers only reading bytes. Validation and test always decode "
                  "in the loader.", choices=DECODE_CHOICES)
    seed: int = _setting(0)
    device: str = _setting("auto", "auto, cpu, cuda or cuda:N.")
    # auto = bf16 (or fp16) on CUDA, off on CPU
    amp: str = _setting("auto", "Mixed precision. auto = bf16 on CUDA (fp16 if the GPU lacks bf16), off "
                                "on the CPU.", choices=AMP_CHOICES)
    channels_last: Optional[bool] = _setting(None)  # None = on for CUDA
    log_every: int = _setting(20, "Write a step record to metrics.jsonl every N batches.", min=0)
    # per epoch; for smoke runs and benchmarks
    max_steps: Optional[int] = _setting(None, "Stop each epoch after N SGD steps (smoke runs).", min=1)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_WORKERS = 4  # DataLoader processes per training process, where there are cores for them


def default_workers() -> int:
    """``DEFAULT_WORKERS``, but no more than the usable cores (a 2-core machine gets 2)."""
    return min(DEFAULT_WORKERS, usable_cores())


def defaults(modality: str) -> dict:
    """Every setting with a default, for ``modality``: field defaults, then its reference, then
    what depends on the machine (``default_workers``)."""
    spec = REFERENCE[modality]
    out = {f.name: f.default for f in fields(FitConfig) if f.default is not MISSING}
    for name in PER_MODALITY:
        value = getattr(spec, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    out["workers"] = default_workers()
    return out


def default_text(name: str) -> str:
    """The ``[default: ...]`` of a fit option, written from the same source ``resolve`` uses."""
    if name in PER_MODALITY:
        by_value: dict[str, list[str]] = {}
        for modality in MODALITIES:
            value = defaults(modality)[name]
            shown = ",".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"
            by_value.setdefault(shown, []).append(modality)
        return "[default: " + "; ".join(f"{v} {', '.join(ms)}" for v, ms in by_value.items()) + "]"
    if name == "workers":
        return f"[default: {DEFAULT_WORKERS}, at most the usable cores ({default_workers()} here)]"
    if name == "input_size":
        return _input_sizes()
    if name == "channels_last":
        return "[default: on for CUDA]"
    value = next(f.default for f in fields(FitConfig) if f.name == name)
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return f"[default: {'on' if value else 'off'}]"
    return f"[default: {value:g}]" if isinstance(value, float) else f"[default: {value}]"


def _input_sizes() -> str:
    """``[default: 224; 299 inception_v3]``: the common size, then the architectures that differ."""
    sizes: dict[int, list[str]] = {}
    for name, arch in ARCHS.items():
        sizes.setdefault(arch.input_size, []).append(name)
    common = max(sizes, key=lambda size: len(sizes[size]))
    others = [f"{size} {', '.join(names)}" for size, names in sizes.items() if size != common]
    return "[default: " + "; ".join([str(common)] + others) + "]"


def preset_names() -> list[str]:
    """Datasets with a shipped preset (``tsn_train/presets/<name>.json``)."""
    return sorted(f.name.removesuffix(".json") for f in resources.files("tsn_train.presets").iterdir()
                  if f.name.endswith(".json"))


def load_preset(name: str, modality: str) -> dict:
    """How preset ``name`` differs from the defaults for ``modality``.

    A preset file holds settings for every modality at its top level and per-modality settings
    under the modality's name; keys starting with ``_`` are comments.
    """
    path = resources.files("tsn_train.presets") / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no preset {name!r}; presets: {', '.join(preset_names())}")
    data = json.loads(path.read_text(encoding="utf-8"))
    settings = {k: v for k, v in data.items() if not k.startswith("_") and k not in MODALITIES}
    settings.update({k: v for k, v in data.get(modality, {}).items() if not k.startswith("_")})
    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"preset {path.name} has unknown settings: {', '.join(unknown)}")
    return settings


def load_config(path: str) -> dict:
    """The settings of a run's ``config.json`` (``FitConfig.to_dict``), checked: a JSON object of
    FitConfig's fields; ValueError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not a run's config.json (not JSON: {exc})") from None
    known = {f.name for f in fields(FitConfig)}
    if not isinstance(data, dict) or "modality" not in data:
        raise ValueError(f"{path}: not a run's config.json (no modality)")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: settings this version does not know: {', '.join(unknown)}")
    return data


def resolve(options: dict, preset: Optional[str] = None) -> FitConfig:
    """Defaults (see ``defaults``), then the preset, then ``options`` (entries that are None are
    treated as not given)."""
    modality = options["modality"]
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    settings = defaults(modality)
    if preset:
        settings.update(load_preset(preset, modality))
    settings.update({k: v for k, v in options.items() if v is not None})
    return FitConfig(**settings)


@dataclass(frozen=True)
class DrawSettings:
    """``tsn-train visualize``'s gradient ascent (tsn_train/visualize.py); the defaults give
    readable pictures at 112-224 px in about a minute per class on 2 CPU cores for ResNet-18."""

    steps: int = 240          # gradient steps in all, shared by the octaves
    size: int = 112           # side of the network input (px); the CLI draws at the checkpoint's
    octaves: int = 3
    octave_scale: float = 1.4
    step_size: float = 2.0    # levels per step, along the gradient normalised by its mean |g|
    jitter: int = 6           # px, at the input size
    blur_every: int = 4
    blur_start: float = 1.0   # Gaussian sigma (px at the octave's size) at the first step ...
    blur_end: float = 0.3     # ... and at the last
    noise: float = 8.0        # the start: mid-level (flow: 127.5, zero motion) +- this, uniform
    seed: int = 0


# ``tsn-train features`` (tsn_train/features.py): what a row holds and how it is computed.
WHAT = ("pool", "scores")
CROPS = {"center": 1, "ten": 10}
FORMATS = ("npy", "csv100")


@dataclass(frozen=True)
class FeatureSettings:
    """What a row holds and how it is computed (recorded in index.json; a re-run must match)."""

    interval: int = field(default=16, metadata={
        "min": 1, "help": "Frames between rows; row i is centred on frame interval // 2 + i * interval."})
    what: str = field(default="pool", metadata={
        "choices": WHAT, "help": "pool: each stream's feature before its classifier (1024 for "
        "BN-Inception, 2048 for ResNet-50); scores: its class scores before softmax."})
    crop: str = field(default="center", metadata={
        "choices": tuple(CROPS), "help": "center: one centre crop; ten: corners, centre and their "
        "mirror images, averaged."})
    input_size: Optional[int] = field(default=None, metadata={
        "min": 16, "help": "Crop side. Default: each checkpoint's (its training crop)."})
    short_side: Optional[int] = field(default=None, metadata={
        "min": 16, "help": "Rescale the stored frames' short side to N before cropping. Default: "
        "each checkpoint's test rescaling."})
    format: str = field(default="npy", metadata={
        "choices": FORMATS, "help": "npy: OUT/<video_id>.npy, float32 [rows, dims], streams side by "
        "side; csv100: OUT/<video_id>.csv, each stream rescaled to 100 rows, header f0,..., 4 "
        "decimals (what BSN and BMN read)."})

    def __post_init__(self):
        for name, value, choices in (("what", self.what, WHAT), ("crop", self.crop, tuple(CROPS)),
                                     ("format", self.format, FORMATS)):
            if value not in choices:
                raise ValueError(f"--{name} {value!r}: choose from {', '.join(choices)}")
        if self.interval < 1:
            raise ValueError(f"--interval must be at least 1, not {self.interval}")
