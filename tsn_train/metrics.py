"""Ranking metrics for untrimmed, multi-label video: ActivityNet classification mAP and hit@k,
THUMOS14 recognition mAP. Pure numpy; docs/untrimmed.md states the rules and their sources.

(Top-k and mean class accuracy, the trimmed-video metrics, are in ``scores.py``.)

Labels are one sequence of class indices per video: ``(3,)``, several ``(0, 7)``, or ``()`` for a
background video (``lists.read_multilabel_list`` reads them). Scores are ``(videos, classes)``;
to match the reference pipeline pass probabilities (``scores.softmax`` of the fused raw scores):
the AP of a class ranks videos against each other, so the softmax changes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class APResult:
    """Per-class AP (NaN for classes with no positive video: left out of the mean), the mean,
    each class's precision and recall after each ranked prediction (for a PR curve), and hit@k
    (ActivityNet only)."""

    ap: np.ndarray                 # (C,) float64
    mean_ap: float
    precision: list[np.ndarray]    # C arrays, one value per ranked prediction of that class
    recall: list[np.ndarray]
    hit_at_k: Optional[float] = None
    k: Optional[int] = None

    @property
    def evaluated(self) -> np.ndarray:
        """Indices of the classes the mean is over (those with at least one positive video)."""
        return np.flatnonzero(~np.isnan(self.ap))


def _label_sets(labels: Sequence[Sequence[int]], num_videos: int, num_classes: int) -> list[frozenset]:
    if len(labels) != num_videos:
        raise ValueError(f"{num_videos} videos have scores but {len(labels)} have labels")
    sets = [frozenset(int(c) for c in ls) for ls in labels]
    bad = sorted({c for s in sets for c in s if not 0 <= c < num_classes})
    if bad:
        raise ValueError(f"labels must be in 0..{num_classes - 1}; got {bad[:5]}")
    return sets


def _matrix(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected (videos, classes) scores, got shape {s.shape}")
    return s


def _mean(ap: np.ndarray) -> float:
    if np.isnan(ap).all():
        raise ValueError("no class has a positive video: the mean AP is undefined")
    return float(np.nanmean(ap))


def _curve(hits: np.ndarray, positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each prediction of a ranked 0/1 hit sequence."""
    tp = np.cumsum(hits, dtype=np.float64)
    return tp / np.arange(1, len(hits) + 1), tp / positives


# --- THUMOS14 ----------------------------------------------------------------------------------

def thumos14_map(scores: np.ndarray, labels: Sequence[Sequence[int]]) -> APResult:
    """THUMOS14 recognition mAP, as the official ``TH14evalRecog.m`` computes it.

    Per class, every video is ranked by its score for the class, highest first; ties keep list
    order (MATLAB's ``sort(-conf)`` is stable). A video is positive if the class is any of its
    labels; background videos are negatives. AP is non-interpolated: the mean, over the
    positives, of the precision at each positive's rank. A class with no positive video has AP
    NaN and is left out of the mean (the official code would return NaN for the mean; the
    official test set has positives for every class).
    """
    s = _matrix(scores)
    sets = _label_sets(labels, *s.shape)
    ap = np.full(s.shape[1], np.nan)
    prec, rec = [], []
    for c in range(s.shape[1]):
        order = np.argsort(-s[:, c], kind="stable")
        hits = np.array([c in sets[v] for v in order], dtype=bool)
        npos = int(hits.sum())
        p, r = _curve(hits, max(npos, 1))
        prec.append(p)
        rec.append(r if npos else np.full(len(hits), np.nan))
        if npos:
            ap[c] = float(p[hits].sum() / npos)
    return APResult(ap, _mean(ap), prec, rec)


# --- ActivityNet -------------------------------------------------------------------------------

def official_order(values: np.ndarray) -> np.ndarray:
    """Indices by value, highest first, as ActivityNet's ``values.argsort()[::-1]``: among equal
    values the later one comes first (numpy's sort is stable on the small arrays that code
    usually sorts; here it always is, so the order is deterministic)."""
    return np.argsort(np.asarray(values), kind="stable")[::-1]


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011 all-point interpolated AP: precision made non-increasing from the right (each
    point takes the best precision at any higher recall), summed over the steps in recall; the
    curve starts at (recall 0, precision 0) and ends at (recall 1, precision 0)."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    step = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[step] - r[step - 1]) * p[step]))


def submissions(scores: np.ndarray, top_k: Optional[int] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A score matrix as an ActivityNet result file would hold it: ``(video, class, score)``
    triples, video by video in list order, each video's ``top_k`` classes (all with ``None``)
    in class order. Which classes a video submits is decided by ``official_order`` (on ties the
    higher class index wins)."""
    s = _matrix(scores)
    k = s.shape[1] if top_k is None else min(top_k, s.shape[1])
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    videos, classes = [], []
    for v in range(s.shape[0]):
        chosen = np.sort(official_order(s[v])[:k])
        videos.extend([v] * k)
        classes.extend(chosen.tolist())
    videos, classes = np.array(videos, dtype=np.int64), np.array(classes, dtype=np.int64)
    return videos, classes, s[videos, classes]


def activitynet_map_from_submissions(videos: np.ndarray, classes: np.ndarray, scores: np.ndarray,
                                     labels: Sequence[Sequence[int]], num_classes: int,
                                     hit_k: int = 3) -> APResult:
    """ActivityNet classification mAP and hit@k, as the official ``eval_classification.py``
    computes them, from submitted ``(video, class, score)`` triples (``videos`` index
    ``labels``).

    AP of class c: c's submissions ranked by ``official_order`` (highest score first, the later
    submission first among ties); a submission is a true positive if its video has c among its
    labels and no earlier submission matched that (video, c), else a false positive (so
    duplicates and background videos count as false positives); precision and recall after each
    submission, recall over the number of videos labelled c; ``voc_ap``. A class with positives
    but no submission has AP 0. The mean is over the classes present in the ground truth (others
    get NaN; the official code fails on a submitted class absent from the ground truth).

    hit@k: over the videos with at least one label (background videos are not counted), the
    fraction whose ``hit_k`` best submissions (``official_order``; duplicates take places) include
    one of its labels; a labelled video with no submission is a miss.
    """
    videos = np.asarray(videos, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    values = np.asarray(scores, dtype=np.float64)
    if not videos.shape == classes.shape == values.shape or videos.ndim != 1:
        raise ValueError("videos, classes and scores must be 1-D arrays of the same length")
    sets = _label_sets(labels, len(labels), num_classes)
    if len(videos) and not (0 <= videos.min() and videos.max() < len(sets)):
        raise ValueError(f"submitted video indices must be in 0..{len(sets) - 1}")
    if len(classes) and not (0 <= classes.min() and classes.max() < num_classes):
        raise ValueError(f"submitted classes must be in 0..{num_classes - 1}")
    ap = np.full(num_classes, np.nan)
    prec, rec = [], []
    for c in range(num_classes):
        mine = np.flatnonzero(classes == c)
        ranked = videos[mine[official_order(values[mine])]]
        npos = sum(c in s for s in sets)
        matched: set[int] = set()
        hits = np.zeros(len(ranked), dtype=bool)
        for i, v in enumerate(ranked.tolist()):
            if c in sets[v] and v not in matched:
                hits[i] = True
                matched.add(v)
        p, r = _curve(hits, max(npos, 1))
        prec.append(p)
        rec.append(r if npos else np.full(len(hits), np.nan))
        if npos:
            ap[c] = voc_ap(p, r)
    labelled = [v for v, s in enumerate(sets) if s]
    hit = 0
    for v in labelled:
        mine = np.flatnonzero(videos == v)
        best = classes[mine[official_order(values[mine])[:hit_k]]]
        hit += bool(sets[v].intersection(best.tolist()))
    hit_at_k = hit / len(labelled) if labelled else float("nan")
    return APResult(ap, _mean(ap), prec, rec, hit_at_k, hit_k)


def activitynet_map(scores: np.ndarray, labels: Sequence[Sequence[int]], top_k: Optional[int] = None,
                    hit_k: int = 3) -> APResult:
    """ActivityNet classification mAP and hit@k of a ``(videos, classes)`` score matrix: each
    video submits its ``top_k`` best classes (all with ``None``; ``submissions``), then
    ``activitynet_map_from_submissions``."""
    s = _matrix(scores)
    _label_sets(labels, *s.shape)
    videos, classes, values = submissions(s, top_k)
    return activitynet_map_from_submissions(videos, classes, values, labels, s.shape[1], hit_k)


def multilabel_accuracy(scores: np.ndarray, labels: Sequence[Sequence[int]], k: int = 1) -> float:
    """Fraction of labelled videos with any of their labels among their ``k`` best-scored classes
    (background videos are left out; ties broken by class index)."""
    s = _matrix(scores)
    sets = _label_sets(labels, *s.shape)
    keep = [v for v in range(len(sets)) if sets[v]]
    if not keep:
        raise ValueError("no labelled video: accuracy is undefined")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean([bool(sets[v] & set(top[v].tolist())) for v in keep]))


# --- reports -----------------------------------------------------------------------------------

def write_ap_csv(result: APResult, classes: Sequence[str], labels: Sequence[Sequence[int]], path) -> None:
    """Per-class AP as CSV: label, class, positive videos, AP (empty where there is none)."""
    import csv

    positives = np.zeros(len(classes), np.int64)
    for labs in labels:
        for c in set(labs):
            positives[c] += 1
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "class", "positives", "ap"])
        for i, name in enumerate(classes):
            w.writerow([i, name, int(positives[i]), "" if np.isnan(result.ap[i]) else f"{result.ap[i]:.6f}"])

