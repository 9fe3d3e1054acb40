"""Video lists (``video_id label`` per line), official-split converters, and checks against a store."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tsn_prep import modalities
from tsn_prep.store import Store


class ListError(Exception):
    """A list, class file or split file is malformed or does not match the store."""


@dataclass(frozen=True)
class Record:
    video_id: str
    label: int


def read_list(path: Path) -> list[Record]:
    """Read ``video_id label`` lines; the label is the last field, so ids may contain spaces.

    Blank lines and lines starting with ``#`` are skipped. A TSN-style ``path num_frames label``
    line also parses (the frame count is ignored; the store knows it).
    """
    records = []
    for n, line in _list_lines(path):
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise ListError(f"{path}:{n}: expected 'video_id label', got {line!r}")
        records.append(Record(_drop_frame_count(parts[0]), int(parts[1])))
    return _non_empty(path, records)


def _list_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of a list file, without blank and ``#`` lines."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"{path}: no such list file")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def _drop_frame_count(vid: str) -> str:
    """``path num_frames`` (a TSN-style line's first fields) -> ``path``."""
    tsn_style = vid.rsplit(None, 1)
    return tsn_style[0] if len(tsn_style) == 2 and tsn_style[1].isdigit() else vid


def _non_empty(path: Path, records: list) -> list:
    if not records:
        raise ListError(f"{path}: the list is empty")
    return records


@dataclass(frozen=True)
class MultiRecord:
    """An untrimmed video and its labels: several, one, or none (``()``: a background video)."""
    video_id: str
    labels: tuple[int, ...]


_LABELS = re.compile(r"-|\d+(,\d+)*")


def read_multilabel_list(path: Path) -> list[MultiRecord]:
    """Read an untrimmed-video list: ``video_id LABELS`` per line, LABELS comma-separated
    (``v1 3``, ``v2 0,7``) or ``-`` for a background video; a line that is one field is a
    background video too. Labels are sorted and deduplicated.

    As in ``read_list`` the labels are the last field (so ``read_list``'s files, labels >= 0,
    read the same, one label each), ids may contain spaces (then write ``-`` for no label), a
    TSN-style frame count before the labels is dropped, and blank and ``#`` lines are skipped.
    """
    records = []
    for n, line in _list_lines(path):
        parts = line.rsplit(None, 1)
        vid, last = parts if len(parts) == 2 else (line, "-")
        if not _LABELS.fullmatch(last):
            raise ListError(f"{path}:{n}: expected 'video_id label[,label...]' or 'video_id -', "
                            f"got {line!r}")
        labels = () if last == "-" else tuple(sorted({int(x) for x in last.split(",")}))
        records.append(MultiRecord(_drop_frame_count(vid), labels))
    return _non_empty(path, records)


def write_list(path: Path, records: list[Record]) -> None:
    Path(path).write_text("".join(f"{r.video_id} {r.label}\n" for r in records), encoding="utf-8")


def read_classes(path: Path) -> list[str]:
    """One class name per line, in label order."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"{path}: no such class-name file")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ListError(f"{path}: no class names")
    return names


def write_classes(path: Path, names: list[str]) -> None:
    Path(path).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def _preview(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else f" ({len(items)})")


def validate(records: list[Record], store: Store, modality: str, num_classes: int,
             list_name: str = "list") -> dict[str, int]:
    """Check every id has ``modality`` in ``store`` and every label is in range.

    Returns ``{video_id: image count}`` for the series the modality reads (frames for rgb and
    rgbdiff, flow fields for flow). Raises ListError naming the first few problems and how many.
    """
    source = modalities.get(modality).source
    index = store.index
    missing = [r.video_id for r in records if (r.video_id, source) not in index]
    if missing:
        have = sorted({m for _, m in index})
        hint = (f"; the store has {', '.join(have)}" if have else "; the store is empty")
        failed = {f["video_id"] for f in store.failures() if f["modality"] == source}
        failed_missing = [v for v in missing if v in failed]
        if failed_missing:
            hint += f"; {len(failed_missing)} of them failed extraction (see tsn-prep info)"
        raise ListError(f"{list_name}: {len(missing)} of {len(records)} videos have no {source} in "
                        f"{store.root}: {_preview(missing)}{hint}")
    bad = [f"{r.video_id}={r.label}" for r in records if not 0 <= r.label < num_classes]
    if bad:
        raise ListError(f"{list_name}: labels must be in 0..{num_classes - 1}; "
                        f"out of range: {_preview(bad)}")
    return {r.video_id: index[(r.video_id, source)].meta["count"] for r in records}


# --- official split files -------------------------------------------------------------------

def ucf101_lists(splits_dir: Path, split: int) -> tuple[list[Record], list[Record], list[str]]:
    """Train and test records and class names from UCF101's ``ucfTrainTestlist`` folder.

    ``classInd.txt`` holds ``1 ApplyEyeMakeup``; ``trainlist0N.txt`` holds
    ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``; ``testlist0N.txt`` only the path. Ids are
    the paths without extension (what ``tsn-prep`` names videos under ``UCF-101/``); labels are
    0-based, taken from the class folder (case-insensitively: the official files spell
    ``HandstandPushups`` two ways).
    """
    splits_dir = Path(splits_dir)
    class_file = splits_dir / "classInd.txt"
    names: list[str] = []
    for n, line in enumerate(_lines(class_file), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(names) + 1:
            raise ListError(f"{class_file}:{n}: expected '{len(names) + 1} ClassName', got {line!r}")
        names.append(parts[1])
    by_name = {name.lower(): i for i, name in enumerate(names)}

    def records(fname: str) -> list[Record]:
        path = splits_dir / fname
        out = []
        for n, line in enumerate(_lines(path), 1):
            rel = line.split()[0].replace("\\", "/")
            folder = rel.split("/")[0].lower()
            if folder not in by_name:
                raise ListError(f"{path}:{n}: class folder {rel.split('/')[0]!r} is not in {class_file}")
            out.append(Record(rel.rsplit(".", 1)[0], by_name[folder]))
        return out

    return records(f"trainlist{split:02d}.txt"), records(f"testlist{split:02d}.txt"), names


def hmdb51_lists(splits_dir: Path, split: int, class_folders: bool = True
                 ) -> tuple[list[Record], list[Record], list[str]]:
    """Train and test records and class names from HMDB51's ``testTrainMulti_7030_splits``.

    Each ``<class>_test_split<N>.txt`` line is ``video.avi T`` with T = 1 train, 2 test, 0 unused.
    Classes are numbered in sorted order. Ids are ``<class>/<video>`` without extension (videos
    unpacked into one folder per class), or just ``<video>`` with ``class_folders=False``.
    """
    splits_dir = Path(splits_dir)
    pattern = re.compile(rf"^(.+)_test_split{split}\.txt$")
    files = sorted(p for p in splits_dir.iterdir() if pattern.match(p.name)) if splits_dir.is_dir() else []
    if not files:
        raise ListError(f"{splits_dir}: no *_test_split{split}.txt files")
    names = [pattern.match(p.name).group(1) for p in files]
    train, test = [], []
    for label, (name, path) in enumerate(zip(names, files)):
        for n, line in enumerate(_lines(path), 1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ListError(f"{path}:{n}: expected 'video.avi 0|1|2', got {line!r}")
            stem = parts[0].rsplit(".", 1)[0]
            vid = f"{name}/{stem}" if class_folders else stem
            if parts[1] == "1":
                train.append(Record(vid, label))
            elif parts[1] == "2":
                test.append(Record(vid, label))
    return train, test, names


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ListError(f"{path}: no such file")
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip()]


def write_split(out_dir: Path, dataset: str, split: int, train: list[Record], test: list[Record],
                names: list[str]) -> dict[str, Path]:
    """Write ``<dataset>_{train,test}_split<N>.txt`` and ``<dataset>_classes.txt`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": out_dir / f"{dataset}_train_split{split}.txt",
             "test": out_dir / f"{dataset}_test_split{split}.txt",
             "classes": out_dir / f"{dataset}_classes.txt"}
    write_list(paths["train"], train)
    write_list(paths["test"], test)
    write_classes(paths["classes"], names)
    return paths


def num_classes_of(records: list[Record], classes: Optional[list[str]]) -> int:
    return len(classes) if classes else max(r.label for r in records) + 1
