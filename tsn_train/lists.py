"""Lists against a store: which stored videos a list names (``store_known``), their image counts
(``validate``), and the official UCF101 / HMDB51 split converters. The list format itself is
``tsn_core.lists``; its names are imported here for tsn_train's modules."""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tsn_core import modalities
from tsn_core.lists import Known, ListError, Record, preview, write_classes, write_list
from tsn_core.store import Store

from .videos import Videos


def store_known(store: Store, modality: str) -> Known:
    """The ids ``store`` holds entries of for what ``modality`` reads (``rgbdiff`` reads ``rgb``),
    without copying them, and messages naming the store."""
    source = modalities.get(modality).source
    return Known(StoreIds(store.index, source), "the store", f"{source} in {store.root}",
                 lambda missing: _missing_hint(store, source, missing))


@dataclass(frozen=True, eq=False)
class StoreIds:
    """The video ids of a store index (``Store.index``) that have an entry of ``modality``: a view
    (``in`` is one lookup in the compact index), so a list of a store of millions of videos builds
    no set."""
    index: Mapping[tuple[str, str], object]
    modality: str

    def __contains__(self, video_id: object) -> bool:
        return (video_id, self.modality) in self.index

    def __iter__(self) -> Iterator[str]:
        return (vid for vid, mod in self.index if mod == self.modality)


def validate(records: list[Record], store: Store, modality: str, num_classes: int,
             list_name: str = "list") -> dict[str, int]:
    """Check every id has ``modality`` in ``store`` and every label is in range.

    Returns ``{video_id: image count}`` for the series the modality reads (frames for rgb and
    rgbdiff, flow fields for flow). Raises ListError naming the first few problems and how many.
    """
    videos = validated(records, store, modality, num_classes, list_name)
    return {r.video_id: c for r, c in zip(records, videos.counts.tolist())}


def validated(records: Sequence[Record], store: Store, modality: str, num_classes: int,
              list_name: str = "list") -> Videos:
    """:func:`validate`'s checks and errors; the records with their counts as a dataset holds
    them (``Videos``: arrays, no dict of a million entries), the counts read from the store's
    compact index."""
    source = modalities.get(modality).source
    index = store.index
    counts = np.fromiter((_count(index, r.video_id, source) for r in records), np.int64, len(records))
    missing = [records[i].video_id for i in np.flatnonzero(counts < 0).tolist()]
    if missing:
        raise ListError(f"{list_name}: {len(missing)} of {len(records)} videos have no {source} in "
                        f"{store.root}: {preview(missing)}{_missing_hint(store, source, missing)}")
    bad = [f"{r.video_id}={r.label}" for r in records if not 0 <= r.label < num_classes]
    if bad:
        raise ListError(f"{list_name}: labels must be in 0..{num_classes - 1}; "
                        f"out of range: {preview(bad)}")
    return Videos.of(records, counts)


def _count(index, video_id: str, source: str) -> int:
    count = index.count(video_id, source)
    return -1 if count is None else count


def _missing_hint(store: Store, source: str, missing: list[str]) -> str:
    """What the store has instead, and how many of the ``missing`` ids failed extraction."""
    have = sorted({m for _, m in store.index})
    hint = (f"; the store has {', '.join(have)}" if have else "; the store is empty")
    failed = {f.video_id for f in store.failures() if f.modality == source}
    failed_missing = [v for v in set(missing) if v in failed]
    if failed_missing:
        hint += f"; {len(failed_missing)} of them failed extraction (see tsn-prep info)"
    return hint


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
