"""``tsn-train``: train and test Temporal Segment Networks on a tsn-prep store.

Three words, one meaning each: ``fit`` *validates* after every epoch (tsn_train/fit.py); ``test``
and ``predict`` score with the paper's *test* protocol (tsn_train/protocol.py); ``evaluate``
computes *metrics* of a score file (mAP, accuracy: tsn_train/metrics.py).

Only click and torch-free modules are imported at start-up, so ``--help`` answers at once; torch
is imported inside the commands that need it. Options several commands share, and the decorator
that turns our errors into one line, are in tsn_train/cli_options.py.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path, PurePath

import click

from tsn_core import interrupts
from tsn_core.command import Group, one_line
from tsn_core.progress import Rates, bar as progress_bar
from tsn_core.modalities import MODALITIES
from tsn_core.diskspace import DiskFull, is_disk_full
from tsn_prep.cli import decoders_option

from .config import (CROP_POSITION_CHOICES, DECODE_CHOICES, TEST_BATCH, DrawSettings, load_config,
                     preset_names, resolve)
from .archs import ARCHS, CONSENSUS
from .cli_options import (FLOATS, INTS, amp_option, cannot_write, checkpoint_option,
                          config_help as _help, crops_option, device_option, int_choice,
                          one_line_errors, segments_option, store_option, top_option, weights_option)
from .outputs import writable_file, writable_folder
from .lists import hmdb51_lists, ucf101_lists, write_split
from .dataset_lists import KINETICS_LAYOUTS, kinetics_lists, ssv2_lists, write_dataset_lists
from .untrimmed_lists import activitynet_lists, thumos14_lists, thumos14_video_names

DRAW = DrawSettings()
CROP_POSITIONS = click.Choice([str(c) for c in CROP_POSITION_CHOICES])


def _input_sizes() -> str:
    """``[default: 224; 299 inception_v3]``: the common size, then the architectures that differ."""
    sizes: dict[int, list[str]] = {}
    for name, arch in ARCHS.items():
        sizes.setdefault(arch.input_size, []).append(name)
    common = max(sizes, key=lambda size: len(sizes[size]))
    others = [f"{size} {', '.join(names)}" for size, names in sizes.items() if size != common]
    return "[default: " + "; ".join([str(common)] + others) + "]"


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


@main.group(short_help="Write video lists from official splits and annotations.")
def lists() -> None:
    """Write train/test video lists from official split or annotation files."""


@lists.command("ucf101", short_help="UCF101 split lists from ucfTrainTestlist/.")
@click.argument("splits_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", type=click.IntRange(1, 3), default=1, show_default=True)
def lists_ucf101(splits_dir: Path, out_dir: Path, split: int) -> None:
    """From UCF101's ucfTrainTestlist folder (classInd.txt, trainlist0N.txt, testlist0N.txt).

    Ids are paths without extension, e.g. ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01: extract the
    UCF-101/ folder with tsn-prep to get the same ids.
    """
    _write_lists("ucf101", split, out_dir, lambda: ucf101_lists(splits_dir, split))


@lists.command("hmdb51", short_help="HMDB51 split lists from its split files.")
@click.argument("splits_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", type=click.IntRange(1, 3), default=1, show_default=True)
@click.option("--class-folders/--flat", default=True, show_default=True,
              help="Ids are <class>/<video> (videos unpacked one folder per class) or just <video>.")
def lists_hmdb51(splits_dir: Path, out_dir: Path, split: int, class_folders: bool) -> None:
    """From HMDB51's testTrainMulti_7030_splits folder (<class>_test_splitN.txt files)."""
    _write_lists("hmdb51", split, out_dir, lambda: hmdb51_lists(splits_dir, split, class_folders))


@one_line_errors
def _write_lists(name: str, split: int, out_dir: Path, read) -> None:
    train, test, names = read()
    with interrupts.deferred():  # every list, or none begun
        paths = write_split(out_dir, name, split, train, test, names)
    click.echo(f"{len(train)} train and {len(test)} test videos, {len(names)} classes:")
    for key, path in paths.items():
        click.echo(f"  {key}: {path}")


VIDEOS_HELP = ("Folder of the downloaded videos, ids relative to it as tsn-prep names them (path "
               "without extension); repeat for one folder per split. Annotated videos not there are "
               "left out, counted, and written to <name>_<split>_missing.txt.")


def _videos_option(help: str = VIDEOS_HELP):
    return click.option("--videos", "video_dirs", multiple=True, help=help,
                        type=click.Path(exists=True, file_okay=False, path_type=Path))


def _found_videos(video_dirs) -> dict:
    """``existing`` (the ids of the videos under the folders, as tsn-prep names them; None
    without folders) and ``where_videos`` (how messages name them), for the converters."""
    if not video_dirs:
        return {"existing": None}
    from tsn_prep.video import list_videos

    ids: set[str] = set()
    for folder in video_dirs:
        listing = list_videos(folder)
        ids.update(item.id for item in listing.items)
        if listing.rejected:
            item, why = listing.rejected[0]
            click.echo(f"warning: {folder}: {len(listing.rejected):,} file(s) are no usable videos for "
                       f"tsn-prep ({item.path}: {why}); counted as missing", err=True)
    return {"existing": ids, "where_videos": "the videos under " + " and ".join(map(str, video_dirs))}


@lists.command("kinetics", short_help="Kinetics-400/600/700 lists from its CSVs.")
@click.argument("train_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("val_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--test", "test_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The test CSV: listed when it has a label column (some releases' have none).")
@click.option("--layout", type=click.Choice(list(KINETICS_LAYOUTS)), default="flat", show_default=True,
              help="How the videos are arranged: " + "; ".join(
                  f"{k}: {v.help}" for k, v in KINETICS_LAYOUTS.items()) + ".")
@_videos_option()
@click.option("--name", help="File-name prefix.  [default: kinetics<number of classes>, e.g. kinetics400]")
def lists_kinetics(train_csv: Path, val_csv: Path, out_dir: Path, test_csv, layout, video_dirs, name) -> None:
    """From the Kinetics-400/600/700 CSVs (header label,youtube_id,time_start,time_end,split;
    more columns, e.g. is_cc, are ignored).

    Ids are the downloaders' file names without extension, {youtube_id}_{start:06d}_{end:06d}
    (whole seconds: 14 or 14.0 is 000014), in a class folder per --layout. Classes are the train
    CSV's labels, sorted. Writes <name>_train.txt, <name>_val.txt (<name>_test.txt) and
    <name>_classes.txt. A clip in two splits stays in both (with a warning); a clip listed twice
    in one CSV is kept once.
    """
    _write_dataset_lists(out_dir, lambda: kinetics_lists(
        train_csv, val_csv, test_csv, layout, name=name, **_found_videos(video_dirs)))


@lists.command("ssv2", short_help="Something-Something v2 lists from its JSON.")
@click.argument("labels_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def lists_ssv2(labels_dir: Path, out_dir: Path) -> None:
    """From Something-Something v2's label folder (labels.json, train.json, validation.json).

    A video's class is labels.json's index of its template without brackets ("Holding
    [something] next to [something]" -> "Holding something next to something"); class names are
    labels.json's templates in index order. Ids are the videos' "id" values (the files are
    {id}.webm). Writes ssv2_train.txt, ssv2_val.txt, ssv2_classes.txt; test.json has no labels.
    """
    _write_dataset_lists(out_dir, lambda: ssv2_lists(labels_dir))


@lists.command("activitynet", short_help="ActivityNet v1.2/v1.3 lists from its JSON.")
@click.argument("json_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prefix", default="v_", show_default=True,
              help="Ids are PREFIX + YouTube id: v_ as ActivityNet's crawler names the files "
                   "(v_<id>.mp4); --prefix '' for files named <id>.mp4.")
@_videos_option()
@click.option("--name", help="File-name prefix.  [default: activitynet + the version's digits, e.g. activitynet13]")
def lists_activitynet(json_file: Path, out_dir: Path, prefix: str, video_dirs, name) -> None:
    """From ActivityNet's v1.2 / v1.3 JSON: the training and validation subsets (testing has no
    annotations).

    Classes are the distinct annotation labels of the whole database, sorted. Writes, per split,
    <name>_<split>_labels.txt (all of a video's labels, for evaluate --labels) and
    <name>_<split>.txt (the label of its first segment, for fit and test), and
    <name>_classes.txt (docs/untrimmed.md).
    """
    _write_dataset_lists(out_dir, lambda: activitynet_lists(
        json_file, prefix, name=name, **_found_videos(video_dirs)))


@lists.command("thumos14", short_help="THUMOS14 lists from its detection annotations.")
@click.argument("class_index", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("annotations", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@_videos_option("Folder holding a split's videos (video_validation_0000051.mp4 ...), searched "
                "recursively; repeat for val and test. Its videos without annotations are listed as "
                "background (-); annotated videos not there are left out and counted.")
@click.option("--all-ids", "id_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file naming all videos of a split, one a line (instead of --videos).")
def lists_thumos14(class_index: Path, annotations, out_dir: Path, video_dirs, id_files) -> None:
    """From THUMOS14's detection annotations: CLASS_INDEX ("Class Index_Detection.txt", lines
    "7 BaseballPitch") and the <ClassName>_val.txt / <ClassName>_test.txt files (lines
    "video_validation_0000051 67.5 75.9"), or folders holding them.

    Labels are 0..19 in CLASS_INDEX's order, not THUMOS's UCF101 numbers; Ambiguous_val.txt is
    not a class and is skipped. Ids are the video names. Writes, per split found,
    thumos14_<split>_labels.txt (all labels, - for background, for evaluate --labels) and
    thumos14_<split>.txt (the first action's label, 0 for background, for test), and
    thumos14_classes.txt. Without --videos or --all-ids only annotated videos are listed.
    """
    def read():
        names = {PurePath(v).name for v in (_found_videos(video_dirs)["existing"] or ())}
        for path in id_files:
            names |= thumos14_video_names(path)
        return thumos14_lists(class_index, annotations, names if video_dirs or id_files else None)

    _write_dataset_lists(out_dir, read)


@one_line_errors
def _write_dataset_lists(out_dir: Path, read) -> None:
    lists = read()
    for note in lists.notes:
        click.echo(note, err=True)
    with interrupts.deferred():  # every list, or none begun
        paths = write_dataset_lists(out_dir, lists)
    for split in lists.splits:
        click.echo(split.summary())
    click.echo(f"{len(lists.classes)} classes:")
    for key, path in paths.items():
        click.echo(f"  {key}: {path}")


@main.command(short_help="Train a TSN stream on a store.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A run's config.json: train with its settings again (options given beside it "
                   "override them; --out usually, or --resume to continue that run).")
@click.option("--modality", type=click.Choice(list(MODALITIES)),
              help="Stream to train. rgbdiff reads the rgb frames; flow and warped_flow their own. "
                   "Required unless --config gives it.")
@click.option("--store", type=click.Path(exists=True, file_okay=False),
              help="Output folder of tsn-prep (the LMDB shards). Required unless --config gives it.")
@click.option("--train-list", type=click.Path(exists=True, dir_okay=False),
              help="'video_id label' per line. Required unless --config gives it.")
@click.option("--val-list", type=click.Path(exists=True, dir_okay=False),
              help="Validated every epoch (segment centres, centre crop); the best epoch is kept.")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False),
              help="Class names, one per line in label order (default: labels are the names).")
@click.option("--num-classes", type=click.IntRange(min=2), help="Default: the class file's length, else max label + 1.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run folder: last.pt, best.pt, metrics.jsonl, config.json. Required unless "
                   "--config gives it.")
@click.option("--preset", type=click.Choice(preset_names()),
              help="Reference settings of a dataset, where they differ from the defaults (the "
                   "defaults are UCF101's). Options given here override it.")
@click.option("--arch", type=click.Choice(list(ARCHS)), help=_help("Backbone.", "arch"))
@click.option("--pretrained", type=click.Path(dir_okay=False),
              help="ImageNet weights file for the backbone (e.g. bn_inception-52deb4733.pth, or a "
                   "torchvision resnet50 .pth). Nothing is downloaded. Default: random init.")
@click.option("--consensus", type=click.Choice(CONSENSUS), help=_help("Segmental consensus.", "consensus"))
@click.option("--topk", type=click.IntRange(min=1), help=_help("k of top-k consensus.", "topk"))
@segments_option(_help("Segments K per video.", "segments"), default=None)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              help=_help("Before the classifier.", "dropout"))
@click.option("--partial-bn/--no-partial-bn", default=None,
              help=_help("Freeze every BatchNorm but the first.", "partial_bn"))
@click.option("--input-size", type=click.IntRange(min=32), help=f"Crop side fed to the network.  {_input_sizes()}")
@click.option("--scales", type=FLOATS, help=_help("Multi-scale crop fractions of the short side.", "scales"))
@click.option("--crop-positions", type=CROP_POSITIONS, callback=int_choice,
              help=_help("Fixed places the training crop is drawn from: 13 = the reference TSN's (Caffe "
                         "more_fix_crop, tsn-pytorch): corners, centre, edge middles and quarter "
                         "points; 5 = four corners and centre (mmaction2's default).", "crop_positions"))
@click.option("--flip/--no-flip", default=None,
              help=_help("Random horizontal flips (flow x inverted). Turn off when mirroring changes "
                         "the class, e.g. 'move left' vs 'move right'.", "flip"))
@click.option("--lr", type=float, help=_help("Base learning rate.", "lr"))
@click.option("--lr-steps", type=INTS, help=_help("Epochs where lr is multiplied by --lr-gamma.", "lr_steps"))
@click.option("--lr-gamma", type=float, help=_help("", "lr_gamma"))
@click.option("--epochs", type=click.IntRange(min=1), help=_help("", "epochs"))
@click.option("--momentum", type=float, help=_help("", "momentum"))
@click.option("--weight-decay", type=float, help=_help("", "weight_decay"))
@click.option("--clip-grad", type=click.FloatRange(min=0),
              help=_help("Max L2 norm of the gradient (0 = off).", "clip_grad"))
@click.option("--batch-size", type=click.IntRange(min=1),
              help=_help("Videos per forward pass per process.", "batch_size"))
@click.option("--accumulate", type=click.IntRange(min=1),
              help=_help("Batches per SGD step; effective batch = batch-size x accumulate x processes.",
                         "accumulate"))
@click.option("--workers", type=click.IntRange(min=0),
              help=_help("DataLoader processes per training process.", "workers"))
@click.option("--decode-on", type=click.Choice(DECODE_CHOICES),
              help=_help("Where training JPEGs are decoded, cropped and resized: in the loader "
                         "workers on the CPU, or on the training device in batches "
                         "(torchvision.io.decode_jpeg: nvJPEG on CUDA), leaving the workers only "
                         "reading bytes. Validation and test always decode in the loader.", "decode_on"))
@click.option("--seed", type=int, help=_help("", "seed"))
@device_option(default=None)
@amp_option(default=None)
@click.option("--channels-last/--no-channels-last", default=None, help="[default: on for CUDA]")
@click.option("--log-every", type=click.IntRange(min=0),
              help=_help("Write a step record to metrics.jsonl every N batches.", "log_every"))
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop each epoch after N SGD steps (smoke runs).")
@click.option("--resume", is_flag=False, flag_value="last", default=None,
              help="Continue from OUT/last.pt (or the checkpoint given) after its last full epoch.")
@one_line_errors
def fit(**options) -> None:
    """Train a TSN stream.

    Settings come from the defaults (the reference's, per modality), then --preset, then the
    options given. Launch on several GPUs (or CPU processes) with torchrun:

    \b
      torchrun --nproc_per_node 4 -m tsn_train.cli fit ...
    """
    from . import distributed
    from .fit import fit as run_fit

    preset = options.pop("preset")
    resume = options.pop("resume")
    config_file = options.pop("config_file")
    if config_file:
        if preset:
            raise click.UsageError("--config holds its run's settings, its preset's included: give "
                                   "--preset or --config, not both")
        recorded = load_config(config_file)
        options = {k: (recorded.get(k) if v is None else v) for k, v in options.items()}
    missing = [f"--{k.replace('_', '-')}" for k in ("modality", "store", "train_list", "out") if not options[k]]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (give {'it' if len(missing) == 1 else 'them'}, "
                               "or --config with a run's config.json)")
    try:
        cfg = resolve(options, preset)
        if resume == "last":
            resume = str(Path(cfg.out) / "last.pt")
        return run_fit(cfg, resume)
    except RuntimeError as exc:  # e.g. out of GPU memory: one line that says how to see more
        if os.environ.get("TSN_DEBUG"):
            raise  # the full traceback, for bug reports
        raise click.ClickException(f"{one_line(exc)} (set TSN_DEBUG=1 for the traceback)") from None
    except OSError as exc:  # our DiskFull, like our other errors, is one line by one_line_errors
        if isinstance(exc, DiskFull) or not is_disk_full(exc) or os.environ.get("TSN_DEBUG"):
            raise
        raise click.ClickException(str(DiskFull(exc.filename or options["out"]))) from None
    finally:
        distributed.cleanup()


def _writable(*paths: Path, folder: bool = False) -> None:
    """Before a command's work: each output file (or ``folder``) can be written, else an
    OutputError naming it (tsn_train/outputs.py), one line by the command's ``one_line_errors``."""
    for p in paths:
        (writable_folder if folder else writable_file)(p)


def _report_line(name: str, m: dict) -> str:
    return (f"{name}: top-1 {m['top1']:.2%}  top-5 {m['top5']:.2%}  "
            f"mean class accuracy {m['mean_class_accuracy']:.2%}  ({m['videos']} videos)")


@main.command(short_help="Score a list of videos with the paper's test protocol.")
@checkpoint_option("A fit checkpoint (best.pt or last.pt); modality, architecture and preprocessing "
                   "come from it.")
@store_option()
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
@click.option("--protocol", type=click.Choice(["segments", "mtwi"]), default="segments", show_default=True,
              help="segments: the paper's trimmed-video protocol (--segments snippets, averaged). "
                   "mtwi: untrimmed video, Multi-scale Temporal Window Integration over snippets at "
                   "--rate per second (docs/untrimmed.md).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="mtwi: snippets per second, placed by the store's recorded fps.")
@click.option("--crop-combine", type=click.Choice(["max", "mean"]), default="max", show_default=True,
              help="mtwi: how a snippet's crops are combined (the reference code takes the max).")
@click.option("--mtwi-rule", type=click.Choice(["reference", "paper"]), default="reference",
              show_default=True, help="mtwi: the reference code's windows, or the paper's text.")
@one_line_errors
def test(checkpoint, store, list_path, out, segments, crops, batch, workers, device, amp, protocol,
         rate, crop_combine, mtwi_rule) -> None:
    """Score a list of videos with the paper's protocol and print top-1, top-5 and mean class
    accuracy. Scores are averaged over crops, then snippets, before softmax; with --protocol mtwi
    they are integrated over temporal windows instead (then `tsn-train evaluate` gives mAP)."""
    from .protocol import run_test
    from .scores import metrics, write_confusion_png, write_per_class_csv

    out = Path(out)
    stem = out.with_suffix("")
    picture, per_class = (stem.with_name(stem.name + "_confusion.png"),
                          stem.with_name(stem.name + "_per_class.csv"))
    _writable(out, picture, per_class)  # before the scoring, not after it
    records = Path(list_path)  # run_test resolves it against the store (checkpoint's modality)
    mtwi = {"rate": rate, "combine": crop_combine, "rule": mtwi_rule} if protocol == "mtwi" else None
    interrupts.safe(f"nothing was written (the scores are written at the end); run the same "
                    "command again")
    scores = run_test(checkpoint, Path(store), records, segments, crops, batch, workers, device, amp,
                      mtwi=mtwi)
    try:
        with interrupts.deferred():  # the three files, or none
            scores.save(out)
            write_confusion_png(scores, picture)
            write_per_class_csv(scores, per_class)
    except OSError as exc:  # e.g. the disk filled up while scoring
        raise cannot_write(exc.filename or out, exc) from None
    how = (f"M-TWI, {rate:g} snippets/s x {crops} crops" if protocol == "mtwi"
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
@one_line_errors
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
@click.option("--metric", type=click.Choice(["activitynet", "thumos14", "accuracy"]), required=True,
              help="activitynet: classification mAP (VOC-2011 interpolated AP, duplicates are false "
                   "positives) and hit@3; thumos14: recognition mAP (non-interpolated AP over all "
                   "videos, background ones negative); accuracy: top-1 / top-5 over labelled videos.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for per_class_ap.csv and pr_curve.png.  [default: SCORES without .npz, "
                   "plus -METRIC]")
@one_line_errors
def evaluate(scores_file, labels_path, metric, out) -> None:
    """Score a score file (from `test` or `fuse`) against multi-label ground truth.

    \b
      tsn-train evaluate fused.npz --labels val_labels.txt --metric activitynet

    Scores are turned into probabilities (softmax of the raw scores) first, as the reference
    pipeline does. Prints mAP (and hit@3 for activitynet) and writes per-class AP as CSV and a
    precision-recall picture. docs/untrimmed.md gives the exact rules.
    """
    from tsn_core.lists import Known, read_multilabel_list
    from .metrics import activitynet_map, multilabel_accuracy, thumos14_map, write_ap_csv
    from .pr_picture import write_pr_png
    from .scores import Scores, softmax

    if metric != "accuracy":  # accuracy only prints
        out = out or scores_file.with_name(f"{scores_file.stem}-{metric}")
        _writable(out, folder=True)  # before the work, not after it
    scores = Scores.load(scores_file)
    # every line must name exactly one video of the score file
    known = Known(set(scores.video_ids), str(scores_file), f"scores in {scores_file}")
    truth = {r.video_id: r.labels for r in read_multilabel_list(labels_path, known)}
    missing = [v for v in scores.video_ids if v not in truth]
    if missing:
        raise click.ClickException(f"{labels_path}: {len(missing)} videos of {scores_file} have no line "
                                   f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    labels = [truth[v] for v in scores.video_ids]
    num_classes = len(scores.classes)
    bad = sorted({c for labs in labels for c in labs if not 0 <= c < num_classes})
    if bad:
        raise click.ClickException(f"{labels_path}: labels {bad[:5]} are outside the {num_classes} "
                                   f"classes of {scores_file}")
    probs = softmax(scores.scores)
    if metric == "accuracy":
        labelled = sum(bool(labs) for labs in labels)
        click.echo(f"accuracy: top-1 {multilabel_accuracy(probs, labels, 1):.2%}, top-5 "
                   f"{multilabel_accuracy(probs, labels, 5):.2%} over {labelled} labelled videos")
        return
    try:
        result = (activitynet_map if metric == "activitynet" else thumos14_map)(probs, labels)
    except ValueError as exc:
        raise click.ClickException(f"{labels_path}: {exc}") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        with interrupts.deferred():  # both files, or neither begun
            write_ap_csv(result, scores.classes, labels, out / "per_class_ap.csv")
            write_pr_png(result, out / "pr_curve.png", f"{metric}: {scores_file.name}", scores.classes)
    except OSError as exc:  # e.g. a full disk
        raise cannot_write(exc.filename or out, exc) from None
    line = f"{metric} mAP {result.mean_ap:.4f} over {len(result.evaluated)} classes"
    if result.hit_at_k is not None:
        line += f", hit@{result.k} {result.hit_at_k:.4f}"
    click.echo(f"{line} ({len(labels)} videos, {sum(not labs for labs in labels)} background)")
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
@one_line_errors
def predict(videos, checkpoints, weights, segments, crops, top, device, amp, as_json, decoders) -> None:
    """Classify raw video files: decode, extract what each stream needs (frames, RGB
    difference, TV-L1 flow, with the settings its training store used), score with the
    paper's test protocol, fuse the streams' probabilities, and print the top classes."""
    import json

    from . import distributed
    from .predict import load_streams, predict_video
    from .scores import ranked

    dev = distributed.resolve_device(device)
    streams = load_streams(list(checkpoints), weights, dev, amp)
    classes = streams[0].checkpoint.classes
    failed = 0
    interrupts.safe("the videos printed above are done; run the command again with the others")
    bar = progress_bar(total=len(videos), unit="video", desc="predict")
    inside = Rates(bar, "frames", "pairs")  # decoding and flow of a long video move the bar
    for path in videos:
        try:
            probs = predict_video(path, streams, segments, crops, decoders=decoders, progress=inside.add)
        except ValueError as exc:
            bar.write(f"error: {exc}", file=sys.stderr)
            failed += 1
            bar.update(1)
            continue
        finally:
            bar.set_postfix_str(inside.text(), refresh=False)
        top_classes = ranked(probs, classes, top)
        if as_json:
            line = json.dumps({"video": str(path), "top": [{"class": c, "probability": p}
                                                            for c, p in top_classes]})
        else:
            line = f"{path}: " + ", ".join(f"{c} {p:.3f}" for c, p in top_classes)
        bar.write(line, file=sys.stdout)
        sys.stdout.flush()
        bar.update(1)
    bar.close()
    if failed:
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
@one_line_errors
def visualize(checkpoint, class_names, out, steps, size, seed, device) -> None:
    """Draw what a trained stream has learned for each class (the paper's DeepDraw pictures):
    gradient ascent on the class's pre-softmax score from noise, with octaves, jitter and blur
    between steps (docs/visualize.md says why these). RGB is drawn as an image, RGB difference as
    its five difference frames, flow as x and y maps in grey and as colour-coded fields. Prints
    each picture's probability for its class, and that of the noise it started from."""
    import dataclasses
    import json

    import cv2
    import numpy as np
    from tqdm import tqdm

    from tsn_prep.extraction.params import ExtractParams

    from . import checkpoint as ckpt_mod
    from . import distributed
    from . import visualize as vis

    _writable(out, folder=True)  # before the drawing, not after it
    ckpt = ckpt_mod.load(checkpoint)  # its errors name the file
    dev = distributed.resolve_device(device)
    classes = ckpt.classes
    unknown = [c for c in class_names if c not in classes]
    if unknown:
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise click.ClickException(f"{checkpoint}: no class {', '.join(map(repr, unknown))}; its "
                                   f"classes: {shown}")
    wanted = list(dict.fromkeys(class_names)) or classes
    model = ckpt_mod.model_from_checkpoint(ckpt, dev).eval().requires_grad_(False)
    prep, modality = ckpt.preprocessing, ckpt.modality
    bound = float(ckpt.extraction.get("bound", ExtractParams().bound))
    settings = dataclasses.replace(DRAW, steps=steps, size=size or prep.input_size, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    interrupts.safe(f"the class pictures listed above are complete in {out}; run the same command "
                    "again for all of them")
    summary, tiles = {}, []
    for name in progress_bar(iterable=wanted, total=len(wanted), desc="classes", unit="class"):
        c = classes.index(name)
        levels, noise = vis.draw(model, modality, prep.norm, c, settings, dev)
        p, p0 = vis.probabilities(model, np.stack([levels, noise]), modality, prep.norm, dev)[:, c]
        rows = vis.cells(levels, modality, bound)
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        with interrupts.deferred():  # a class's two files, or neither
            cv2.imwrite(str(out / f"{stem}.png"), vis.grid(rows, f"{name}: p={p:.3f} (noise {p0:.3f})"))
            np.savez_compressed(out / f"{stem}.npz", levels=levels, noise=noise)
        tiles.append((name, vis.overview_tile(rows)))
        summary[name] = {"file": f"{stem}.png", "probability": float(p), "noise_probability": float(p0)}
        tqdm.write(f"{name}: probability {p:.3f} (noise {p0:.3f}) -> {out / (stem + '.png')}")
    with interrupts.deferred():
        cv2.imwrite(str(out / "overview.png"), vis.overview(tiles))
        (out / "summary.json").write_text(json.dumps(
            {"checkpoint": str(checkpoint), "modality": modality, "bound": bound,
             "settings": dataclasses.asdict(settings), "classes": summary}, indent=1) + "\n")
    click.echo(f"{len(wanted)} class picture(s) and overview.png in {out}")


@main.command(short_help="Export a stream as ONNX or TorchScript.")
@checkpoint_option("A fit checkpoint of any modality and architecture.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True,
              help="onnx (needs the [export] extra: onnx, onnxscript, onnxruntime) or torchscript "
                   "(torch alone; loadable from C++ with libtorch).")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@one_line_errors
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
@one_line_errors
def stream(source, checkpoints, weights, window, every, segments, top, out, realtime, device, amp,
           threads, decoders) -> None:
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

    from . import distributed
    from .predict import load_streams
    from .stream import Scorer, run_stream

    if out is not None:
        _writable(out)
    torch.set_num_threads(threads or max(1, usable_cores() - 1))
    dev = distributed.resolve_device(device)
    streams = load_streams(list(checkpoints), weights, dev, amp)
    scorer = Scorer(streams, segments, dev)

    def emit(update: dict) -> None:
        click.echo(json.dumps(update))

    summary = run_stream(source, scorer, streams[0].checkpoint.classes, window, every, top,
                         realtime, out, emit, decoders)
    s = summary.to_dict()
    click.echo(json.dumps({"summary": s}))
    text = (f"{s['updates']} updates, {s['skipped']} skipped, {s['frames']} frames decoded, mean "
            f"latency {s['mean_latency_ms']} ms (max {s['max_latency_ms']} ms)"
            + (f"; annotated video: {out} (complete)" if out else ""))
    signum = interrupts.requested()
    if signum is None:
        click.echo(f"end of source: {text}", err=True)
        return
    interrupts.safe(f"stopped: {text}")
    sys.exit(interrupts.finish(signum))


if __name__ == "__main__":
    main()
