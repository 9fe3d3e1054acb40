"""Lists from the official annotation files of Kinetics-400/600/700, Something-Something v2,
ActivityNet v1.2/v1.3 and THUMOS14 (``tsn-train lists kinetics|ssv2|activitynet|thumos14``;
docs/training.md "Lists of other datasets", docs/untrimmed.md "Lists of ActivityNet and THUMOS14"):
here the lists' records, the steps every converter shares, Kinetics and Something-Something v2;
the untrimmed datasets' converters are ``tsn_train.untrimmed_lists``.

Pure functions: each reads the annotation files (and, where given, the ids of the videos that
are there) and returns a ``DatasetLists``, which ``write_dataset_lists`` writes:
``<name>_<split>.txt`` (``video_id label``, for ``fit`` and ``test``), for untrimmed datasets
also ``<name>_<split>_labels.txt`` (all labels, ``-`` for background, for ``evaluate``),
``<name>_<split>_missing.txt`` (the ids of annotated videos that are not there) and
``<name>_classes.txt``. Malformed input is a ListError naming the file, and the line where a
line is at fault. The UCF101 / HMDB51 converters are in ``tsn_train.lists``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Optional

from tsn_core.lists import (ListError, MultiRecord, Record, read_text, write_classes, write_list,
                            write_multilabel_list)


@dataclass
class Split:
    """One split's lists. ``records``: ``video_id label`` (for untrimmed data the first label in
    time, 0 for a background video, as tools/make_untrimmed_demo.py writes ``untrimmed_test.txt``);
    ``multilabel``: for untrimmed data, the same videos with all their labels. ``missing``: ids
    the annotations name that are not among the videos given (left out of the lists);
    ``checked``: whether videos were given to check against."""
    name: str
    records: list[Record]
    multilabel: Optional[list[MultiRecord]] = None
    missing: list[str] = field(default_factory=list)
    checked: bool = False

    def summary(self) -> str:
        """``train: 234,012 listed, 12,345 missing (5.0%)``, and for untrimmed data how many
        videos have several labels and how many none."""
        text = f"{self.name}: {len(self.records):,} listed"
        if self.checked:
            total = len(self.records) + len(self.missing)
            text += f", {len(self.missing):,} missing ({100 * len(self.missing) / max(total, 1):.1f}%)"
        if self.multilabel is not None:
            several = sum(len(r.labels) > 1 for r in self.multilabel)
            background = sum(not r.labels for r in self.multilabel)
            text += f" ({several:,} with several labels, {background:,} background)"
        return text


@dataclass
class DatasetLists:
    """What a converter read: the file-name prefix (``kinetics400``), the class names in label
    order, the splits, and notes worth a line each (warnings start with ``warning:``)."""
    name: str
    classes: list[str]
    splits: list[Split]
    notes: list[str] = field(default_factory=list)


def write_dataset_lists(out_dir: Path, lists: DatasetLists) -> dict[str, Path]:
    """Write every split's lists and the class file into ``out_dir``; ``{what: path}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split in lists.splits:
        stem = f"{lists.name}_{split.name}"
        paths[split.name] = out_dir / f"{stem}.txt"
        write_list(paths[split.name], split.records)
        if split.multilabel is not None:
            paths[f"{split.name} labels"] = out_dir / f"{stem}_labels.txt"
            write_multilabel_list(paths[f"{split.name} labels"], split.multilabel)
        if split.missing:
            paths[f"{split.name} missing"] = out_dir / f"{stem}_missing.txt"
            paths[f"{split.name} missing"].write_text("".join(f"{v}\n" for v in split.missing),
                                                      encoding="utf-8")
    paths["classes"] = out_dir / f"{lists.name}_classes.txt"
    write_classes(paths["classes"], lists.classes)
    return paths


# --- shared steps ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Annotated:
    """An annotated video: its id, labels (sorted, none for background), the label of the
    single-label list, and where it was read (``line 12``) for messages."""
    video_id: str
    labels: tuple[int, ...]
    first: int
    where: str


def make_split(name: str, source: str | Path, entries: list[Annotated], existing: Optional[Collection[str]],
               notes: list[str], untrimmed: bool = False, where_videos: str = "the videos given") -> Split:
    """A split of ``entries`` in their order: a video listed again is left out (a note says how
    many, the first of them, and whether labels differ); with ``existing``, videos not in it are
    left out as missing (none there at all is an error: the naming is likely wrong)."""
    seen: dict[str, Annotated] = {}
    again: list[tuple[Annotated, Annotated]] = []
    for e in entries:
        if e.video_id in seen:
            again.append((e, seen[e.video_id]))
        else:
            seen[e.video_id] = e
    if again:
        e, first = again[0]
        other = sum(a.labels != b.labels for a, b in again)
        notes.append(f"warning: {source}: {videos_text(len(again))} listed twice (the first: "
                     f"{e.video_id!r}, {e.where}, as on {first.where}); kept the first listing"
                     + (f" ({other:,} of them with other labels)" if other else ""))
    kept = list(seen.values())
    missing: list[str] = []
    if existing is not None:
        there = [e.video_id in existing for e in kept]
        missing = [e.video_id for e, ok in zip(kept, there) if not ok]
        kept = [e for e, ok in zip(kept, there) if ok]
        if missing and not kept:
            raise ListError(f"{source}: none of its {len(missing):,} videos is among {where_videos} "
                            f"(the first expected: {missing[0]!r}); check how the videos are named")
    if not kept:
        raise ListError(f"{source}: no videos")
    return Split(name, [Record(e.video_id, e.first) for e in kept],
                 [MultiRecord(e.video_id, e.labels) for e in kept] if untrimmed else None,
                 missing, existing is not None)


def videos_text(n: int, verb: str = "is") -> str:
    """``1 video is``, ``2,345 videos are`` (``verb`` "is", or "" for none)."""
    return f"{n:,} video{'s' if n != 1 else ''}" + (f" {'is' if n == 1 else 'are'}" if verb else "")


def in_several_splits(splits: list[Split]) -> list[str]:
    """Warnings for the videos two splits both list (compared by file name, so that a clip in
    two class folders counts too); they stay in both."""
    notes = []
    for i, a in enumerate(splits):
        names = {PurePath(r.video_id).name for r in a.records}
        for b in splits[i + 1:]:
            both = [r.video_id for r in b.records if PurePath(r.video_id).name in names]
            if both:
                notes.append(f"warning: {videos_text(len(both))} in both {a.name} and {b.name} "
                             f"(the first: {both[0]!r}); kept in both")
    return notes


def text_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of a text file's non-blank lines."""
    return [(n, line.strip()) for n, line in enumerate(read_text(path).split("\n"), 1) if line.strip()]


def load_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ListError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None


def seconds(path: Path, n: int, what: str, text: str) -> float:
    """A non-negative number of seconds, or ListError ``PATH:N: WHAT 'x' is not ...``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ListError(f"{path}:{n}: {what} {text!r} is not a number of seconds")
    return value


# --- Kinetics -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """How a downloader arranges Kinetics clips: ``folder(label)`` is a clip's class folder (None:
    all in one folder), and who names them so."""
    folder: Optional[Callable[[str], str]]
    help: str


KINETICS_LAYOUTS = {
    "flat": Layout(None, "CLIP: one folder (cvdfoundation/kinetics-dataset's archives)"),
    "by-label": Layout(lambda label: label, "LABEL/CLIP, the label exactly as in the CSV, spaces "
                                            "kept (the official ActivityNet Crawler/Kinetics/download.py)"),
    "by-label-underscores": Layout(lambda label: label.replace(" ", "_"),
                                   "LABEL/CLIP with spaces as '_' (mmaction2's rename_classnames.sh)"),
    "by-label-torchvision": Layout(
        lambda label: label.replace(" ", "_").replace("'", "").replace("(", "").replace(")", ""),
        "LABEL/CLIP with spaces as '_' and ' ( ) removed (torchvision.datasets.Kinetics)"),
}


def kinetics_clip(youtube_id: str, start: float, end: float) -> str:
    """``{youtube_id}_{start:06d}_{end:06d}``: a clip's file name without extension, as the
    downloaders write it (whole seconds, as their ``'%06d'`` formats a number)."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def _kinetics_rows(path: Path) -> tuple[list[tuple[int, Optional[str], str]], bool]:
    """``[(line, label or None, clip)]`` of a Kinetics CSV and whether it has a ``label``
    column. The header names the columns (``label,youtube_id,time_start,time_end,split``; more
    columns such as ``is_cc`` are ignored, ``label`` may be absent in a test CSV)."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    need = ["youtube_id", "time_start", "time_end"]
    if not all(c in header for c in need):
        raise ListError(f"{path}:1: expected a header naming label,youtube_id,time_start,time_end "
                        f"(the Kinetics CSV format), got {','.join(header)!r}")
    col = {c: header.index(c) for c in need + ["label"] if c in header}
    rows = []
    for row in reader:
        n = reader.line_num
        if not any(f.strip() for f in row):
            continue
        if len(row) != len(header):
            raise ListError(f"{path}:{n}: expected {len(header)} fields ({','.join(header)}), got "
                            f"{len(row)}: {','.join(row)!r}")
        youtube_id = row[col["youtube_id"]].strip()
        label = row[col["label"]].strip() if "label" in col else None
        if not youtube_id or label == "":
            raise ListError(f"{path}:{n}: empty {'youtube_id' if not youtube_id else 'label'}")
        start, end = (seconds(path, n, c, row[col[c]].strip()) for c in ("time_start", "time_end"))
        rows.append((n, label, kinetics_clip(youtube_id, start, end)))
    return rows, "label" in col


def kinetics_lists(train_csv: Path, val_csv: Path, test_csv: Optional[Path] = None,
                   layout: str = "flat", existing: Optional[Collection[str]] = None,
                   name: Optional[str] = None, where_videos: str = "the videos given") -> DatasetLists:
    """Train, val (and test) lists of Kinetics-400/600/700 from its CSVs. Classes are the train
    CSV's labels in sorted order; ids are ``kinetics_clip``, in a class folder per ``layout``
    (``KINETICS_LAYOUTS``). With ``existing`` (the ids of the downloaded videos) the clips not
    there are left out and counted. A test CSV without labels writes no list (a note says so).
    ``name`` defaults to ``kinetics<number of classes>``."""
    train_rows, labelled = _kinetics_rows(train_csv)
    if not labelled:
        raise ListError(f"{train_csv}: no 'label' column; the train CSV must have one")
    classes = sorted({label for _, label, _ in train_rows})
    index = {c: i for i, c in enumerate(classes)}
    folder = KINETICS_LAYOUTS[layout].folder
    splits: list[Split] = []
    notes: list[str] = []
    for split, path in (("train", train_csv), ("val", val_csv), ("test", test_csv)):
        if path is None:
            continue
        rows, labelled = (train_rows, True) if path == train_csv else _kinetics_rows(path)
        if not labelled:
            if split != "test":
                raise ListError(f"{path}: no 'label' column; the {split} CSV must have one")
            notes.append(f"{path}: no 'label' column (an unlabelled test set): no test list written")
            continue
        entries = []
        for n, label, clip in rows:
            if label not in index:
                raise ListError(f"{path}:{n}: label {label!r} is not a class of {train_csv}")
            vid = clip if folder is None else f"{folder(label)}/{clip}"
            entries.append(Annotated(vid, (index[label],), index[label], f"line {n}"))
        splits.append(make_split(split, path, entries, existing, notes, where_videos=where_videos))
    notes += in_several_splits(splits)
    return DatasetLists(name or f"kinetics{len(classes)}", classes, splits, notes)


# --- Something-Something v2 ---------------------------------------------------------------------

SSV2_SPLITS = {"train": "train.json", "val": "validation.json"}


def ssv2_template(template: str) -> str:
    """A template of train.json (``Holding [something] next to [something]``) as labels.json
    names it: without the brackets (the dataset's own mapping)."""
    return template.replace("[", "").replace("]", "")


def _ssv2_classes(path: Path) -> list[str]:
    labels = load_json(path)
    if not isinstance(labels, dict) or not labels:
        raise ListError(f"{path}: expected a JSON object mapping template names to indices "
                        "({\"Approaching something with your camera\": \"0\", ...})")
    by_index: dict[int, str] = {}
    for template, value in labels.items():
        if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", str(value).strip()):
            raise ListError(f"{path}: {template!r}: index {value!r} is not a whole number")
        i = int(str(value))
        if i in by_index:
            raise ListError(f"{path}: index {i} is given to both {by_index[i]!r} and {template!r}")
        by_index[i] = template
    gaps = sorted(set(range(len(by_index))) - set(by_index))
    if gaps:
        raise ListError(f"{path}: the indices are not 0..{len(by_index) - 1}: {gaps[0]} is missing")
    return [by_index[i] for i in range(len(by_index))]


def ssv2_lists(folder: Path) -> DatasetLists:
    """Train and val lists of Something-Something v2 from its label folder: ``labels.json``
    (template -> index), ``train.json`` and ``validation.json`` (``[{"id": "78687", "template":
    "Holding [something] next to [something]", ...}]``). A video's class is
    ``labels[ssv2_template(template)]``; ids are the ``id`` values (files ``{id}.webm``).
    ``test.json`` has no labels: a note says no test list is written."""
    folder = Path(folder)
    labels_path = folder / "labels.json"
    classes = _ssv2_classes(labels_path)
    index = {c: i for i, c in enumerate(classes)}
    splits, notes = [], []
    for split, fname in SSV2_SPLITS.items():
        path = folder / fname
        items = load_json(path)
        if not isinstance(items, list):
            raise ListError(f"{path}: expected a JSON list of videos ([{{\"id\": ..., \"template\": ...}}])")
        entries = []
        for k, item in enumerate(items, 1):
            vid = item.get("id") if isinstance(item, dict) else None
            if isinstance(vid, bool) or not isinstance(vid, (str, int)) or not str(vid).strip():
                raise ListError(f"{path}: video {k}: no 'id'")
            template = item.get("template")
            if not isinstance(template, str):
                raise ListError(f"{path}: video {k} (id {vid!r}): no 'template'")
            if ssv2_template(template) not in index:
                raise ListError(f"{path}: video {k} (id {vid!r}): template {template!r} (without "
                                f"brackets {ssv2_template(template)!r}) is not in {labels_path}")
            label = index[ssv2_template(template)]
            entries.append(Annotated(str(vid).strip(), (label,), label, f"video {k}"))
        splits.append(make_split(split, path, entries, None, notes))
    if (folder / "test.json").is_file():
        notes.append(f"{folder / 'test.json'}: the test set has no labels: no test list written")
    return DatasetLists("ssv2", classes, splits, notes + in_several_splits(splits))
