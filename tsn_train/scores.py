"""Score files (.npz), accuracy metrics, late fusion, and writing the confusion-matrix picture
(``confusion_picture`` draws it)."""
from __future__ import annotations

import csv
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class ScoreError(Exception):
    """A score file is unreadable, or score files do not describe the same videos."""


def _gist(exc: BaseException, limit: int = 100) -> str:
    """An exception in one short line (its first line, or its type when it says nothing)."""
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "") or type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


@dataclass
class Scores:
    """Per-video class scores (before softmax) of one stream, or of a fusion."""

    video_ids: list[str]
    labels: np.ndarray       # (N,) int
    scores: np.ndarray       # (N, C) float32
    classes: list[str]
    settings: dict

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, video_ids=np.array(self.video_ids), labels=self.labels.astype(np.int64),
                 scores=self.scores.astype(np.float32), classes=np.array(self.classes),
                 settings=np.array(json.dumps(self.settings)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Scores":
        path = Path(path)
        if not path.is_file():
            raise ScoreError(f"{path}: no such score file")
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as exc:
            raise ScoreError(f"{path}: cannot read the score file ({exc.strerror or exc})") from None
        if not head:
            raise ScoreError(f"{path}: not a tsn-train score file (empty file)")
        if head != b"PK\x03\x04":  # np.savez writes a zip archive
            raise ScoreError(f"{path}: not a tsn-train score file (not a zip archive)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("video_ids", "labels", "scores", "classes", "settings")
                           if k not in z.files]
                if missing:
                    raise ScoreError(f"{path}: not a tsn-train score file (no {', '.join(missing)} in it)")
                return cls([str(v) for v in z["video_ids"]], z["labels"].astype(np.int64),
                           z["scores"].astype(np.float32), [str(c) for c in z["classes"]],
                           json.loads(str(z["settings"])))
        except ScoreError:
            raise
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # cut short, or bytes changed
            detail = "" if "is not a zip file" in str(exc) else f": {_gist(exc)}"  # no end record
            raise ScoreError(f"{path}: not a tsn-train score file (truncated or damaged zip archive"
                             f"{detail})") from None
        except Exception as exc:  # noqa: BLE001 - whatever numpy raises on a damaged member
            raise ScoreError(f"{path}: not a tsn-train score file (damaged: {_gist(exc)})") from None


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ranked(probs: np.ndarray, classes: list[str], n: int) -> list[tuple[str, float]]:
    """The ``n`` most probable classes of one score vector, highest first; ties in class order
    (the stable sort ``topk_accuracy`` uses)."""
    return [(classes[i], float(probs[i])) for i in np.argsort(-probs, kind="stable")[:n]]


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` video counts."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (labels, scores.argmax(axis=1)), 1)
    return m


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for classes with no test video."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def metrics(s: Scores) -> dict:
    """Top-1, top-5 and mean class accuracy (the papers' metric on UCF101 and HMDB51)."""
    m = confusion(s.scores, s.labels, len(s.classes))
    return {"videos": len(s.video_ids), "top1": topk_accuracy(s.scores, s.labels, 1),
            "top5": topk_accuracy(s.scores, s.labels, 5),
            "mean_class_accuracy": float(np.nanmean(per_class_accuracy(m)))}


def write_per_class_csv(s: Scores, path: Path) -> None:
    m = confusion(s.scores, s.labels, len(s.classes))
    acc = per_class_accuracy(m)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "class", "videos", "correct", "accuracy"])
        for i, name in enumerate(s.classes):
            w.writerow([i, name, int(m[i].sum()), int(m[i, i]), "" if np.isnan(acc[i]) else f"{acc[i]:.4f}"])


def write_confusion_png(s: Scores, path: Path) -> None:
    """The confusion matrix as a picture (``confusion_picture``: counts in the cells, a colour
    bar of the row shares, class names on the axes)."""
    from .confusion_picture import confusion_picture

    if not cv2.imwrite(str(path), confusion_picture(confusion(s.scores, s.labels, len(s.classes)), s.classes)):
        raise ScoreError(f"{path}: could not write the confusion picture")


def fuse(streams: list[Scores], weights: list[float], use_softmax: bool = False) -> Scores:
    """Weighted sum of the streams' scores (or of their softmax probabilities).

    The streams must hold the same videos with the same labels (in any order; the first file's
    order is kept) and the same classes.
    """
    if len(weights) != len(streams):
        raise ScoreError(f"{len(streams)} score files but {len(weights)} weights")
    first = streams[0]
    fused = np.zeros_like(first.scores, dtype=np.float64)
    for n, (s, w) in enumerate(zip(streams, weights)):
        name = s.settings.get("source", f"score file {n + 1}")
        if s.classes != first.classes:
            raise ScoreError(f"{name}: its classes differ from {first.settings.get('source', 'the first file')}'s")
        missing = sorted(set(first.video_ids) - set(s.video_ids))
        extra = sorted(set(s.video_ids) - set(first.video_ids))
        if missing or extra:
            raise ScoreError(f"{name}: video ids disagree with the first file: {len(missing)} missing "
                             f"({', '.join(missing[:3])}), {len(extra)} extra ({', '.join(extra[:3])})")
        pos = {v: i for i, v in enumerate(s.video_ids)}
        order = np.array([pos[v] for v in first.video_ids])
        if not np.array_equal(s.labels[order], first.labels):
            bad = [v for v, a, b in zip(first.video_ids, first.labels, s.labels[order]) if a != b]
            raise ScoreError(f"{name}: labels disagree with the first file for {len(bad)} videos "
                             f"({', '.join(bad[:3])})")
        part = s.scores[order].astype(np.float64)
        fused += w * (softmax(part) if use_softmax else part)
    settings = {"fusion": [st.settings.get("source") for st in streams], "weights": list(weights),
                "softmax": use_softmax}
    return Scores(list(first.video_ids), first.labels.copy(), fused.astype(np.float32),
                  list(first.classes), settings)
