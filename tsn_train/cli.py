"""``tsn-train``: train and test Temporal Segment Networks on a tsn-prep store.

Three words, one meaning each: ``fit`` *validates* after every epoch (tsn_train/fit.py); ``test``
and ``predict`` score with the paper's *test* protocol (tsn_train/protocol.py); ``evaluate``
computes *metrics* of a score file (mAP, accuracy: tsn_train/metrics.py).

Only click and torch-free modules are imported at start-up, so ``--help`` answers at once; torch
is imported inside the commands that need it. The group, its error handling and the option types
are both tools' (tsn_core/command.py, tsn_core/options.py); the options several commands share,
and the errors shown as one line, are in tsn_train/cli_options.py; fit's options are generated
from ``FitConfig`` (tsn_train/config.py). Each command parses, calls one module function
(tsn_train/fit_settings.py, evaluate.py, draw_classes.py, classify.py...) and prints.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Optional

import click

from tsn_core import interrupts
from tsn_core.command import group, one_line
from tsn_core.options import DeviceList, record_options, setting_options, shard_options
from tsn_prep.decoders_option import decoders_option
from tsn_core.diskspace import DiskFull, is_disk_full

from .config import TEST_BATCH, DrawSettings, FeatureSettings, FitConfig, default_text, preset_names
from .classify import Streams
from .cli_lists import lists
from .cli_options import (amp_option, cannot_write, checkpoint_option, crops_option, device_option,
                          mtwi_options, our_errors, segments_option, store_or_videos, streams_of,
                          top_option,
                          weights_option)
from .evaluate import METRICS
from .outputs import writable_file, writable_folder

DRAW = DrawSettings()

# fit's options, in the order --help lists them: the run's data, then (after --preset) training
FIT_DATA = ("modality", "store", "videos", "train_list", "val_list", "classes", "num_classes", "out",
            "video_size", "video_short_side", "decoders")
FIT_TRAINING = ("arch", "pretrained", "consensus", "topk", "segments", "dropout", "partial_bn", "input_size",
                "scales", "crop_positions", "flip", "lr", "lr_steps", "lr_gamma", "epochs", "momentum",
                "weight_decay", "clip_grad", "batch_size", "accumulate", "workers", "decode_on", "seed",
                "device", "amp", "channels_last", "log_every", "max_steps")


@group(errors=our_errors)
@click.version_option(package_name="tsn", prog_name="tsn-train")
def main() -> None:
    """Train Temporal Segment Networks on frames and flow extracted by tsn-prep.

    \b
    Typical use:
      tsn-train lists ucf101 ucfTrainTestlist/ lists/ --split 1
      tsn-train fit --preset ucf101 --modality rgb --store ucf101.store \\
          --train-list lists/ucf101_train_split1.txt --val-list lists/ucf101_test_split1.txt \\
          --classes lists/ucf101_classes.txt --pretrained bn_inception-52deb4733.pth --out runs/rgb
    """


main.add_command(lists)


@main.command(short_help="Train a TSN stream on a store.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A run's config.json: train with its settings again (options given beside it "
                   "override them; --out usually, or --resume to continue that run).")
@setting_options(FitConfig, FIT_DATA, "settings", default_text)
@click.option("--preset", type=click.Choice(preset_names()),
              help="Reference settings of a dataset, where they differ from the defaults (the "
                   "defaults are UCF101's). Options given here override it.")
@setting_options(FitConfig, FIT_TRAINING, "settings", default_text, declared={"amp": amp_option(default=None)})
@click.option("--resume", is_flag=False, flag_value="last", default=None,
              help="Continue from OUT/last.pt (or the checkpoint given) after its last full epoch.")
def fit(config_file, preset, resume, settings: dict) -> None:
    """Train a TSN stream.

    Settings come from the defaults (the reference's, per modality), then --preset, then the
    options given. Launch on several GPUs (or CPU processes) with torchrun:

    \b
      torchrun --nproc_per_node 4 -m tsn_train.cli fit ...
    """
    from . import distributed
    from .fit import fit as run_fit
    from .fit_settings import SettingsMistake, settings_of

    cfg = None
    try:
        cfg = settings_of(settings, config_file, preset)
        return run_fit(cfg, str(Path(cfg.out) / "last.pt") if resume == "last" else resume)
    except SettingsMistake as exc:
        raise click.UsageError(str(exc)) from None
    except RuntimeError as exc:  # e.g. out of GPU memory: one line that says how to see more
        if os.environ.get("TSN_DEBUG"):
            raise  # the full traceback, for bug reports
        raise click.ClickException(f"{one_line(exc)} (set TSN_DEBUG=1 for the traceback)") from None
    except OSError as exc:  # our DiskFull, like our other errors, is one line (the group's errors)
        if isinstance(exc, DiskFull) or not is_disk_full(exc) or os.environ.get("TSN_DEBUG"):
            raise
        raise click.ClickException(str(DiskFull(exc.filename or cfg.out))) from None
    finally:
        distributed.cleanup()


def _writable(*paths: Path, folder: bool = False) -> None:
    """Before a command's work: each output file (or ``folder``) can be written, else an
    OutputError naming it (tsn_train/outputs.py), one line by the group's errors (``our_errors``)."""
    for p in paths:
        (writable_folder if folder else writable_file)(p)


def _report_line(name: str, m: dict) -> str:
    return (f"{name}: top-1 {m['top1']:.2%}  top-5 {m['top5']:.2%}  "
            f"mean class accuracy {m['mean_class_accuracy']:.2%}  ({m['videos']} videos)")


@main.command(short_help="Score a list of videos with the paper's test protocol.")
@checkpoint_option("A fit checkpoint (best.pt or last.pt); modality, architecture and preprocessing "
                   "come from it.")
@store_or_videos("for rgb and rgbdiff checkpoints: the snippets' frames decoded from them as the "
                 "checkpoint's training frames were made (docs/training.md, 'Frames or videos').")
@click.option("--list", "list_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="'video_id label' per line.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Score file (.npz); the confusion matrix (.png) and per-class accuracy (.csv) "
                   "are written beside it.")
@segments_option()
@crops_option()
@click.option("--batch", type=click.IntRange(min=1), default=TEST_BATCH, show_default=True,
              help="Snippet-crops per forward pass.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@device_option()
@amp_option()
@mtwi_options
@decoders_option
def test(checkpoint, source, list_path, out, segments, crops, batch, workers, device, amp,
         mtwi: Optional[dict], decoders) -> None:
    """Score a list of videos with the paper's protocol and print top-1, top-5 and mean class
    accuracy. Scores are averaged over crops, then snippets, before softmax; with --protocol mtwi
    they are integrated over temporal windows instead (then `tsn-train evaluate` gives mAP)."""
    from .protocol import run_test
    from .sources import SourceSpec
    from .scores import metrics, write_confusion_png, write_per_class_csv

    out = Path(out)
    stem = out.with_suffix("")
    picture, per_class = (stem.with_name(stem.name + "_confusion.png"),
                          stem.with_name(stem.name + "_per_class.csv"))
    _writable(out, picture, per_class)  # before the scoring, not after it
    records = Path(list_path)  # run_test resolves it against the source (checkpoint's modality)
    interrupts.safe(f"nothing was written (the scores are written at the end); run the same "
                    "command again")
    kind, path = source
    spec = SourceSpec(store=path if kind == "store" else None, videos=path if kind == "videos" else None,
                      decoders=decoders)
    scores = run_test(checkpoint, spec, records, segments, crops, batch, workers, device, amp, mtwi=mtwi)
    try:
        with interrupts.deferred():  # the three files, or none
            scores.save(out)
            write_confusion_png(scores, picture)
            write_per_class_csv(scores, per_class)
    except OSError as exc:  # e.g. the disk filled up while scoring
        raise cannot_write(exc.filename or out, exc) from None
    how = (f"M-TWI, {mtwi['rate']:g} snippets/s x {crops} crops" if mtwi
           else f"{segments} snippets x {crops} crops")
    click.echo(_report_line(f"{scores.settings['modality']} ({how})", metrics(scores)))
    click.echo(f"scores: {out}")


@main.command(short_help="Fuse score files of several streams.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@weights_option("Weight per score file, in their order, e.g. 1,1.5 (the paper's RGB : flow).")
@click.option("--softmax", "use_softmax", is_flag=True,
              help="Fuse probabilities instead of the scores before softmax.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the fused scores (.npz) here.")
def fuse(files, weights, use_softmax, out) -> None:
    """Weighted late fusion of score FILES from `tsn-train test`.

    \b
      tsn-train fuse rgb.npz flow.npz --weights 1,1.5 [--softmax] [--out fused.npz]

    Scores are fused before softmax unless --softmax is given. The files must hold the same videos
    with the same labels. Prints each stream's accuracy and the fusion's.
    """
    from .scores import Scores, fuse as fuse_scores, metrics

    weights = weights or [1.0] * len(files)
    if len(weights) != len(files):
        raise click.BadParameter(f"{len(files)} score files but {len(weights)} weights",
                                 param_hint="--weights")
    if out:
        _writable(out)  # before the fusion, not after it
    streams = [Scores.load(f) for f in files]
    for f, st in zip(files, streams):
        st.settings["source"] = str(f)
    fused = fuse_scores(streams, weights, use_softmax)
    for f, w, st in zip(files, weights, streams):
        click.echo(_report_line(f"{f} (weight {w:g})", metrics(st)))
    click.echo(_report_line(f"fused{' (softmax)' if use_softmax else ''}", metrics(fused)))
    if out:
        try:
            with interrupts.deferred():
                fused.save(out)
        except OSError as exc:  # e.g. a full disk
            raise cannot_write(out, exc) from None
        click.echo(f"fused scores: {out}")


@main.command(short_help="mAP or accuracy of a score file.")
@click.argument("scores_file", metavar="SCORES", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labels", "labels_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ground truth: 'video_id label[,label...]' per line; 'video_id -' (or the id "
                   "alone) for a background video with no label.")
@click.option("--metric", type=click.Choice(list(METRICS)), required=True,
              help="activitynet: classification mAP (VOC-2011 interpolated AP, duplicates are false "
                   "positives) and hit@3; thumos14: recognition mAP (non-interpolated AP over all "
                   "videos, background ones negative); accuracy: top-1 / top-5 over labelled videos.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for per_class_ap.csv and pr_curve.png.  [default: SCORES without .npz, "
                   "plus -METRIC]")
def evaluate(scores_file, labels_path, metric, out) -> None:
    """Score a score file (from `test` or `fuse`) against multi-label ground truth.

    \b
      tsn-train evaluate fused.npz --labels val_labels.txt --metric activitynet

    Scores are turned into probabilities (softmax of the raw scores) first, as the reference
    pipeline does. Prints mAP (and hit@3 for activitynet) and writes per-class AP as CSV and a
    precision-recall picture. docs/untrimmed.md gives the exact rules.
    """
    from .evaluate import EvaluationError, default_out, evaluate as run_evaluate

    if metric != "accuracy":  # accuracy only prints
        out = out or default_out(scores_file, metric)
        _writable(out, folder=True)  # before the work, not after it
    try:
        found = run_evaluate(scores_file, labels_path, metric)
    except EvaluationError as exc:
        raise click.ClickException(str(exc)) from None
    if found.result is not None:
        try:
            found.write(out)
        except OSError as exc:  # e.g. a full disk
            raise cannot_write(exc.filename or out, exc) from None
    click.echo(found.line)
    if found.result is not None:
        click.echo(f"per-class AP: {out / 'per_class_ap.csv'}; PR curves: {out / 'pr_curve.png'}")


@main.command(short_help="Classify raw video files.")
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@checkpoint_option("A fit checkpoint; repeat for several streams (e.g. RGB and flow).", multiple=True)
@weights_option()
@segments_option()
@crops_option()
@top_option("Classes printed per video, most probable first.")
@device_option()
@amp_option()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video on stdout.")
@decoders_option
@streams_of
def predict(videos, streams: Streams, segments, crops, top, as_json, decoders) -> None:
    """Classify raw video files: decode, extract what each stream needs (frames, RGB
    difference, TV-L1 flow, with the settings its training store used), score with the
    paper's test protocol, fuse the streams' probabilities, and print the top classes."""
    from .classify import predict_files

    loaded, _ = streams.load()
    if predict_files(videos, loaded, segments, crops, top, decoders, as_json):
        sys.exit(1)


@main.command(short_help="Draw what a stream has learned per class.")
@checkpoint_option("A fit checkpoint of any modality (rgb, rgbdiff, flow, warped_flow).")
@click.option("--class", "class_names", multiple=True,
              help="A class to draw, by name; repeat for several.  [default: every class]")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for CLASS.png (one grid per class), CLASS.npz (the snippet in stored "
                   "levels), overview.png and summary.json.")
@click.option("--steps", type=click.IntRange(min=1), default=DRAW.steps, show_default=True,
              help="Gradient-ascent steps per class, shared by the octaves.")
@click.option("--size", type=click.IntRange(min=32), default=None,
              help="Side of the drawn input in px (112-224 runs in minutes on a CPU).  [default: "
                   "the checkpoint's input size: what the network learned to see]")
@click.option("--seed", type=int, default=DRAW.seed, show_default=True,
              help="Seed of the starting noise and the jitter: the same seed draws the same "
                   "pictures (bit for bit on one CPU thread; threaded convolutions may round "
                   "differently, which the ascent can amplify).")
@device_option()
def visualize(checkpoint, class_names, out, steps, size, seed, device) -> None:
    """Draw what a trained stream has learned for each class (the paper's DeepDraw pictures):
    gradient ascent on the class's pre-softmax score from noise, with octaves, jitter and blur
    between steps (docs/visualize.md says why these). RGB is drawn as an image, RGB difference as
    its five difference frames, flow as x and y maps in grey and as colour-coded fields. Prints
    each picture's probability for its class, and that of the noise it started from."""
    from .draw_classes import UnknownClass, draw_classes

    _writable(out, folder=True)  # before the drawing, not after it
    settings = dataclasses.replace(DRAW, steps=steps, seed=seed)
    try:
        drawn = draw_classes(checkpoint, class_names, out, settings, size, device)
    except UnknownClass as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{drawn} class picture(s) and overview.png in {out}")


@main.command(short_help="Export a stream as ONNX or TorchScript.")
@checkpoint_option("A fit checkpoint of any modality and architecture.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True,
              help="onnx (needs the [export] extra: onnx, onnxscript, onnxruntime) or torchscript "
                   "(torch alone; loadable from C++ with libtorch).")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def export(checkpoint, fmt, out) -> None:
    """Export a trained stream as one file for deployment, OUT.

    The exported model takes uint8 snippets in stored levels, (N, K, L, S, S, C): N videos (any
    number), the checkpoint's K segments, L images per snippet, S the crop side, C 3 (BGR) or 2
    (flow x, y). Input scaling, RGB differences and the segmental consensus run inside it; it
    returns class scores before softmax, (N, classes). Classes, input layout and extraction
    settings travel in the file's metadata (docs/deploy.md shows how to read them)."""
    from .export import export as run_export

    _writable(out)  # before the export, not after it
    interrupts.safe(f"{out} was not written (it is written whole at the end); run the same command again")
    try:
        meta = run_export(checkpoint, fmt, out)
    except OSError as exc:  # e.g. OUT's folder cannot be made or written
        raise cannot_write(out, exc) from None
    shape = " x ".join(map(str, meta["input"]["shape"]))
    click.echo(f"{out}: {fmt}, {meta['arch']} {meta['modality']}, input uint8 {shape}, "
               f"{len(meta['classes'])} class scores")


@main.command(short_help="Recognise actions live in a video or camera.")
@click.argument("source")
@checkpoint_option("An rgb or rgbdiff fit checkpoint; repeat for the pair (e.g. rgb.pt, rgbdiff.pt).",
                   multiple=True)
@weights_option()
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds of video each update looks at (its K segments span them).")
@click.option("--every", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="Seconds of video between updates.")
@segments_option("Snippets K per window.  [default: each checkpoint's training segments]",
                 default=None)
@top_option("Classes in each update's top list, most probable first.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the video with the current top-3 drawn on it (.mp4 or .avi).")
@click.option("--realtime/--no-realtime", default=True, show_default=True,
              help="A file plays at its frame rate, as a camera would deliver it, and updates the "
                   "scoring cannot keep up with are skipped (counted). --no-realtime reads a file "
                   "as fast as scoring allows and scores every update (offline analysis). Cameras "
                   "and network streams are always real time.")
@device_option()
@amp_option()
@click.option("--threads", type=click.IntRange(min=1),
              help="PyTorch CPU threads.  [default: usable cores - 1, one being the decoder's]")
@decoders_option
@streams_of
def stream(source, streams: Streams, window, every, segments, top, out, realtime, threads, decoders) -> None:
    """Recognise actions live in SOURCE (a video file, a camera index such as 0, or a stream URL
    OpenCV opens) with TSN's real-time pair, RGB + RGB difference (no optical flow).

    Frames are decoded in their own thread into a ring buffer of the last --window seconds; every
    --every seconds the window's K snippets are scored by each stream in one batch, the streams'
    probabilities fused by --weights, and one JSON line printed: time (source seconds), frame, top
    (classes and probabilities), latency_ms (newest frame decoded to result) and skipped (update
    points passed over because scoring was slower than the source). End of file or Ctrl-C prints
    a summary line: updates, skipped, frames decoded, mean and max latency."""
    import json

    import torch

    from tsn_core.machine import usable_cores

    from .stream import Scorer, run_stream

    if out is not None:
        _writable(out)
    torch.set_num_threads(threads or max(1, usable_cores() - 1))
    loaded, dev = streams.load()
    summary = run_stream(source, Scorer(loaded, segments, dev), loaded[0].checkpoint.classes, window, every,
                         top, realtime, out, lambda update: click.echo(json.dumps(update)), decoders)
    click.echo(json.dumps({"summary": summary.to_dict()}))
    text = _stream_summary(summary.to_dict(), out)
    signum = interrupts.requested()
    if signum is None:
        click.echo(f"end of source: {text}", err=True)
        return
    interrupts.safe(f"stopped: {text}")
    sys.exit(interrupts.finish(signum))


def _stream_summary(s: dict, out: Optional[Path]) -> str:
    """stream's last line: updates, skipped, frames decoded, latency, the annotated video."""
    return (f"{s['updates']} updates, {s['skipped']} skipped, {s['frames']} frames decoded, mean "
            f"latency {s['mean_latency_ms']} ms (max {s['max_latency_ms']} ms)"
            + (f"; annotated video: {out} (complete)" if out else ""))


@main.command(short_help="Features of whole videos, for action localization.")
@checkpoint_option("A stream's checkpoint; repeat for several streams (a row holds theirs side "
                   "by side, in this order; e.g. rgb then flow).", multiple=True)
@store_or_videos("each extracted in memory as the checkpoints' training stores were (as predict "
                 "does).")
@click.option("--list", "list_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --store, the videos, one a line ('video_id', or with labels, which are not "
                   "read). Default: every video of the first stream's modality in the store.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of the feature files and their index.json.")
@record_options(FeatureSettings, "settings")
@shard_options
@click.option("--gpu", "gpus", type=DeviceList(), help="CUDA devices, one process each: '0' or "
              "'0,1,2,3' (the shard's videos are dealt among them). Default: --device.")
@device_option()
@click.option("--batch", type=click.IntRange(min=1), default=TEST_BATCH, show_default=True,
              help="Snippet-crops per forward pass.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def features(checkpoints, source, list_path, out, settings: FeatureSettings, shard_index, num_shards, gpus,
             device, batch, workers, quiet) -> None:
    """Write per-snippet features of whole videos (docs/untrimmed.md, "Features for
    localization"): a row every --interval frames, each stream's snippet centred on it.

    \b
    The ActivityNet recipe (the files BSN, BMN and G-TAD read):
      tsn-train features --checkpoint rgb.pt --checkpoint flow.pt --store anet.store \\
          --short-side 256 --input-size 256 --interval 16 --format csv100 --out csv_mean_100/

    A job like extraction: a video's file is written whole or not at all, the same command does
    the rest after an interrupt, and --shard-index/--num-shards split the videos over array jobs.
    """
    from .features import extract_on_devices

    _writable(out, folder=True)
    interrupts.safe(f"finished videos are safe in {out}; run the same command again for the rest")
    kind, path = source
    kwargs = dict(checkpoints=list(checkpoints), store_root=path if kind == "store" else None,
                  videos=path if kind == "videos" else None, out=out, settings=settings,
                  list_path=list_path, shard_index=shard_index, num_shards=num_shards,
                  workers=workers, batch=batch, progress=not quiet)
    s = extract_on_devices([f"cuda:{g}" for g in gpus] if gpus else [device], **kwargs)
    click.echo(f"{s.written} videos written, {s.skipped} already there, {s.empty} without a row "
               f"(at most {settings.interval // 2} frames) -> {out}")


@main.command("import-checkpoint", short_help="A checkpoint of an mmaction2 or tsn-pytorch TSN.")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--classes", "classes_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Class names, one a line in label order. Default: the checkpoint's own (mmaction2 "
                   "1.x records them), else required.")
@click.option("--modality", type=click.Choice(["rgb", "rgbdiff", "flow", "warped_flow"]),
              help="What the model reads. Default: what its first convolution reads (3 channels: "
                   "rgb, 10: flow, 15: rgbdiff); give warped_flow for a warped-flow model.")
@click.option("--input-size", type=click.IntRange(min=16), default=224, show_default=True,
              help="Crop side test, predict and features use.")
@click.option("--scale-size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Short side frames are rescaled to before cropping.")
def import_checkpoint(source, out, classes_file, modality, input_size, scale_size) -> None:
    """Turn the TSN checkpoint SOURCE of mmaction2 (ResNet-50/101; RGB or flow) or tsn-pytorch
    (BN-Inception; RGB, RGB difference or flow) into the tsn-train checkpoint OUT, which test,
    predict, features, export and fit --resume read (docs/coming-from.md, "From the model zoos").
    Its input normalisation, channel order and flow scaling are the source's; the file is read
    without running code. fit --pretrained SOURCE takes its backbone directly."""
    from .imported import import_checkpoint as run

    _writable(out)
    zoo, ckpt = run(source, out, classes_file, modality, input_size, scale_size)
    click.echo(f"{out}: {ckpt.modality} {ckpt.arch} of {zoo.source}, {len(ckpt.classes)} classes, "
               f"crops {input_size} of frames rescaled to {scale_size}")


if __name__ == "__main__":
    main()
