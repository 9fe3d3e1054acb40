"""``tsn-train lists``: train/test video lists from official split files and annotations
(tsn_train/lists.py, dataset_lists.py and untrimmed_lists.py read them; this is the command group)."""
from __future__ import annotations

from pathlib import Path, PurePath

import click

from tsn_core import interrupts

from .dataset_lists import KINETICS_LAYOUTS, kinetics_lists, ssv2_lists, write_dataset_lists
from .untrimmed_lists import activitynet_lists, thumos14_lists, thumos14_video_names
from .lists import hmdb51_lists, ucf101_lists, write_split


@click.group(short_help="Write video lists from official splits and annotations.")
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
    from tsn_core.video_files import list_videos

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
