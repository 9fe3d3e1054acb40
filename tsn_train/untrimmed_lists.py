"""Lists from the official annotation files of the untrimmed datasets ActivityNet v1.2/v1.3 and
THUMOS14 (``tsn-train lists activitynet|thumos14``; docs/untrimmed.md "Lists of ActivityNet and
THUMOS14"): each returns a ``DatasetLists`` (``tsn_train.dataset_lists``) whose splits also hold
every video's labels (``multilabel``), ``-`` for background.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable
from pathlib import Path, PurePath
from typing import Optional

from tsn_core.lists import ListError

from .dataset_lists import Annotated, DatasetLists, load_json, make_split, seconds, text_lines, videos_text


# --- ActivityNet ----------------------------------------------------------------------------------

ACTIVITYNET_SUBSETS = {"training": "train", "validation": "val"}


def _activitynet_annotations(where: str, video) -> list[tuple[float, str]]:
    """``[(segment start, label)]`` of one database entry, in file order."""
    anns = video.get("annotations", [])
    if not isinstance(anns, list):
        raise ListError(f"{where}: 'annotations' is not a list")
    out = []
    for k, a in enumerate(anns, 1):
        label = a.get("label") if isinstance(a, dict) else None
        if not isinstance(label, str) or not label.strip():
            raise ListError(f"{where}: annotation {k} has no 'label'")
        seg = a.get("segment")
        if not (isinstance(seg, list) and len(seg) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seg)):
            raise ListError(f"{where}: annotation {k}: 'segment' is not [start, end] in seconds")
        out.append((float(seg[0]), label))
    return out


def _untrimmed_entry(video_id: str, actions: list[tuple[float, int]], where: str) -> Annotated:
    """An untrimmed video from its ``(start, label)`` actions: its labels, each once, sorted; the
    single-label list's label is the first action's (earliest start; ties: the first given),
    0 for a background video."""
    labels = tuple(sorted({label for _, label in actions}))
    first = min(range(len(actions)), key=lambda i: (actions[i][0], i)) if actions else None
    return Annotated(video_id, labels, actions[first][1] if actions else 0, where)


def activitynet_lists(path: Path, prefix: str = "v_", existing: Optional[Collection[str]] = None,
                      name: Optional[str] = None, where_videos: str = "the videos given") -> DatasetLists:
    """Train and val lists of ActivityNet (v1.2 or v1.3 JSON: ``{"version": ..., "database":
    {youtube id: {"subset": ..., "annotations": [{"segment": [s, e], "label": ...}]}}}``), the
    official training / validation subsets; testing has no annotations and is left out (a note
    counts it). Classes are the distinct annotation labels of the whole database, sorted. Ids
    are ``prefix + youtube id`` (the ActivityNet crawler writes ``v_<id>.mp4``). ``name``
    defaults to ``activitynet`` and the version's digits (``activitynet13``)."""
    data = load_json(path)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise ListError(f"{path}: no 'database' object (expected ActivityNet's JSON: version, "
                        "taxonomy, database)")
    videos: dict[str, list[tuple[str, list[tuple[float, str]]]]] = {s: [] for s in ACTIVITYNET_SUBSETS}
    others: Counter = Counter()
    labels: set[str] = set()
    for youtube_id, video in database.items():
        where = f"{path}: database[{youtube_id!r}]"
        if not isinstance(video, dict) or not isinstance(video.get("subset"), str):
            raise ListError(f"{where}: no 'subset'")
        actions = _activitynet_annotations(where, video)
        labels.update(label for _, label in actions)
        if video["subset"] in videos:
            videos[video["subset"]].append((youtube_id, actions))
        else:
            others[video["subset"]] += 1
    if not labels:
        raise ListError(f"{path}: no annotations")
    classes = sorted(labels)
    index = {c: i for i, c in enumerate(classes)}
    notes = [f"{subset}: {videos_text(count, '')} not listed (only the training and validation subsets are)"
             for subset, count in others.items()]
    splits = []
    for subset, split in ACTIVITYNET_SUBSETS.items():
        entries = [_untrimmed_entry(prefix + yid, [(s, index[label]) for s, label in actions],
                                    f"database[{yid!r}]")
                   for yid, actions in videos[subset]]
        if entries:
            splits.append(make_split(split, f"{path} ({subset})", entries, existing, notes,
                                     untrimmed=True, where_videos=where_videos))
    if not splits:
        raise ListError(f"{path}: no training or validation videos")
    version = re.findall(r"[0-9]+", str(data.get("version", "")))
    return DatasetLists(name or "activitynet" + "".join(version), classes, splits, notes)


# --- THUMOS14 -------------------------------------------------------------------------------------

THUMOS14_SPLITS = {"val": ("_val.txt", "video_validation_"), "test": ("_test.txt", "video_test_")}
THUMOS14_VIDEO = re.compile(r"video_(validation|test)_[0-9]+")
THUMOS14_NOT_CLASSES = {"Ambiguous"}   # Ambiguous_val.txt: parts hard to call action or not


def thumos14_classes(path: Path) -> list[tuple[int, str]]:
    """``[(THUMOS index, name)]`` of a class index file (``Class Index_Detection.txt``: ``7
    BaseballPitch`` per line), in file order."""
    out: list[tuple[int, str]] = []
    for n, line in text_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ListError(f"{path}:{n}: expected 'index ClassName' (e.g. '7 BaseballPitch'), got {line!r}")
        for i, (index, name) in enumerate(out):
            if int(parts[0]) == index or parts[1] == name:
                raise ListError(f"{path}:{n}: {line!r} repeats the index or name of class {i} "
                                f"({index} {name})")
        out.append((int(parts[0]), parts[1]))
    if not out:
        raise ListError(f"{path}: no classes")
    return out


def thumos14_video_names(path: Path) -> set[str]:
    """The THUMOS14 video names a text file lists, one a line (``video_test_0000004``, a file
    name or path; an extension is dropped); ``#`` lines are comments."""
    names = set()
    for n, line in text_lines(path):
        if line.startswith("#"):
            continue
        stem = PurePath(line.replace("\\", "/")).name.split(".")[0]
        if not THUMOS14_VIDEO.fullmatch(stem):
            raise ListError(f"{path}:{n}: expected a THUMOS14 video name like video_test_0000004, got {line!r}")
        names.add(stem)
    return names


def _thumos14_files(annotations: Iterable[Path]) -> list[tuple[str, str, Path]]:
    """``[(split, class name, path)]`` of the annotation files given (folders: their
    ``*_val.txt`` and ``*_test.txt``)."""
    out = []
    for given in map(Path, annotations):
        paths = sorted(p for p in given.iterdir() if p.is_file()) if given.is_dir() else [given]
        found = []
        for p in paths:
            for split, (suffix, _) in THUMOS14_SPLITS.items():
                if p.name.endswith(suffix) and len(p.name) > len(suffix):
                    found.append((split, p.name[:-len(suffix)], p))
        if not found:
            what = "holds no *_val.txt or *_test.txt files" if given.is_dir() else (
                "is not a <ClassName>_val.txt or <ClassName>_test.txt file" if given.is_file() else
                "does not exist")
            raise ListError(f"{given}: {what}")
        out += found
    return out


def thumos14_lists(class_index: Path, annotations: Iterable[Path],
                   videos: Optional[Iterable[str]] = None) -> DatasetLists:
    """Val and test lists of THUMOS14's 20 detection classes: ``class_index`` (``7 BaseballPitch``
    lines) and the per-class annotation files (``<ClassName>_val.txt`` / ``_test.txt``, lines
    ``video_validation_0000051 67.5 75.9``), or folders of them; ``Ambiguous_*.txt`` is not a
    class and is skipped. Labels are 0..19 in the index file's order (not THUMOS's 1-based
    UCF101 numbers). ``videos``: names of all the videos (any split); a split with some gets its
    unannotated videos as background (``-``) and leaves out annotated ones not among them;
    without, only its annotated videos are listed (a note says so)."""
    entries_index = thumos14_classes(class_index)
    classes = [name for _, name in entries_index]
    index = {name: i for i, name in enumerate(classes)}
    actions: dict[str, dict[str, list[tuple[float, int]]]] = {}
    covered: dict[str, set[str]] = {}
    notes: list[str] = []
    for split, cls, path in _thumos14_files(annotations):
        if cls in THUMOS14_NOT_CLASSES:
            notes.append(f"{path}: ignored (not a class: the parts of videos hard to call action or not)")
            continue
        if cls not in index:
            raise ListError(f"{path}: class {cls!r} (from the file name) is not in {class_index}")
        prefix = THUMOS14_SPLITS[split][1]
        split_actions = actions.setdefault(split, {})
        covered.setdefault(split, set()).add(cls)
        for n, line in text_lines(path):
            parts = line.split()
            if len(parts) != 3 or not re.fullmatch(prefix + "[0-9]+", parts[0]):
                raise ListError(f"{path}:{n}: expected '{prefix}0000051 67.5 75.9' (video start end), "
                                f"got {line!r}")
            start = seconds(path, n, "start", parts[1])
            seconds(path, n, "end", parts[2])
            split_actions.setdefault(parts[0], []).append((start, index[cls]))
    names = set(videos or ())
    other = {v for v in names if not THUMOS14_VIDEO.fullmatch(v)}
    if other:
        notes.append(f"{videos_text(len(other))} not THUMOS14 video names (e.g. "
                     f"{sorted(other)[0]!r}): ignored")
    splits = []
    for split in THUMOS14_SPLITS:
        if split not in actions:
            continue
        lacking = [c for c in classes if c not in covered[split]]
        if lacking:
            notes.append(f"warning: {split}: no annotation file for {len(lacking)} class{'es' if len(lacking) > 1 else ''} "
                         f"({', '.join(lacking[:5])}{', ...' if len(lacking) > 5 else ''})")
        prefix = THUMOS14_SPLITS[split][1]
        universe = {v for v in names if v.startswith(prefix)} or None
        if universe is None:
            notes.append(f"{split}: only the annotated videos are listed, no background videos "
                         "(give the split's videos to list the others as background)")
        ids = sorted(set(actions[split]) | (universe or set()))
        entries = [_untrimmed_entry(v, actions[split].get(v, []), v) for v in ids]
        splits.append(make_split(split, f"the {split} annotations", entries, universe, notes, untrimmed=True,
                             where_videos=f"the {split} videos given"))
    if not splits:
        raise ListError("no annotation files of a class")
    (i0, n0), (i1, n1) = entries_index[0], entries_index[-1]
    notes.insert(0, f"classes 0..{len(classes) - 1} are {class_index}'s in its order ({i0} {n0} -> 0, "
                    f"..., {i1} {n1} -> {len(classes) - 1})")
    return DatasetLists("thumos14", classes, splits, notes)
