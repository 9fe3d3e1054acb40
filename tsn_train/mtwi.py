"""Untrimmed video: snippets at a fixed rate and Multi-scale Temporal Window Integration (M-TWI).

Pure numpy, no torch, no I/O; docs/untrimmed.md states every rule. The flow of one video:

    positions = snippet_positions(count, fps, rate, length)     # which images to score
    per_snippet = combine_crops(net_scores)                      # (snippets, crops, C) -> (T, C)
    video = mtwi_scores(per_snippet, rate)                       # (C,) raw scores

Streams are then fused by a weighted sum of these raw video scores (``scores.fuse``), and the
softmax comes last (``scores.softmax``), as the reference code does.

Arithmetic on rates, overlaps and fps is exact (``fractions.Fraction`` of the number as written,
``Fraction(repr(x))`` for a float), so ``ceil(10 * (1 - 0.7))`` is 3, not the 4 that float noise
gives (``10 * 0.3 == 3.0000000000000004``). With the default overlap 0.2 exact and float
arithmetic agree for every span below 100,000 snippets.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence, Union

import numpy as np

Number = Union[int, float, Fraction]

LENGTHS = (1, 2, 4, 8, 16)   # window lengths in seconds (the paper's and the reference code's)
OVERLAP = 0.2                # windows overlap by 20%: stride 0.8 l
MIN_K = 15                   # top-k pooling keeps at least 15 windows (capped at their number)
RULES = ("reference", "paper")


def exact(x: Number) -> Fraction:
    """``x`` as an exact fraction: a float is taken as its shortest decimal form (0.1 -> 1/10)."""
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"expected a finite number, got {x}")
        return Fraction(repr(x))
    return Fraction(x)


def snippet_positions(num_frames: int, fps: Number, rate: Number = 1.0, length: int = 1) -> list[int]:
    """Start positions of the snippets scored for one untrimmed video: ``rate`` per second.

    ``num_frames`` images (frames, or flow fields) at ``fps`` last ``num_frames / fps`` seconds.
    That time is cut into slots of ``1 / rate`` seconds from 0; there are
    ``ceil(num_frames * rate / fps)`` slots (the last one may be partial, so every image lies in a
    slot). Snippet ``i`` is centred on the image shown at its slot's centre, ``(i + 1/2) / rate``
    seconds: image ``c = floor((i + 1/2) * fps / rate)`` (image ``j`` is shown during
    ``[j / fps, (j + 1) / fps)``), clamped to the last image. A snippet of ``length`` images
    (``tsn_core.modalities``' snippet length: 1 for rgb, 5 for flow) starts at
    ``c - (length - 1) // 2``, clamped to ``[0, max(num_frames - length, 0)]`` so that it fits
    whenever the video is long enough (``sampling.snippet_indices`` repeats the last image
    otherwise). Zero images is a ValueError.
    """
    if num_frames < 1:
        raise ValueError(f"an untrimmed video needs at least one image to take snippets from, "
                         f"got {num_frames}: zero snippets")
    f, r = exact(fps), exact(rate)
    if f <= 0 or r <= 0:
        raise ValueError(f"fps and the snippet rate must be positive, got fps={fps}, rate={rate}")
    if length < 1:
        raise ValueError(f"a snippet has at least one image, got length {length}")
    slots = math.ceil(num_frames * r / f)
    last_start = max(num_frames - length, 0)
    out = []
    for i in range(slots):
        centre = min(math.floor((i + Fraction(1, 2)) * f / r), num_frames - 1)
        out.append(min(max(centre - (length - 1) // 2, 0), last_start))
    return out


def combine_crops(scores: np.ndarray, how: str = "max") -> np.ndarray:
    """``(snippets, crops, classes)`` -> ``(snippets, classes)``: each snippet's crops combined by
    ``max`` (the reference code's M-TWI) or ``mean`` (what the 25-snippet protocol does)."""
    scores = np.asarray(scores)
    if scores.ndim != 3:
        raise ValueError(f"expected (snippets, crops, classes) scores, got shape {scores.shape}")
    if how == "max":
        return scores.max(axis=1)
    if how == "mean":
        return scores.mean(axis=1)
    raise ValueError(f"crops are combined by 'max' or 'mean', not {how!r}")


def windows(num_snippets: int, length: Number, rate: Number = 1.0, overlap: Number = OVERLAP,
            rule: str = "reference") -> list[tuple[int, int]]:
    """The windows of ``length`` seconds over ``num_snippets`` snippets taken at ``rate`` per
    second, as ``[start, end)`` snippet ranges (never empty, never past the end).

    ``rule="reference"`` (the reference code, which produced the paper's numbers): span =
    ``max(1, floor(length * rate))`` snippets, step = ``ceil(span * (1 - overlap))`` snippets;
    windows start at ``0, step, 2 step, ...`` while the start is ``< num_snippets``, and each is
    ``[start, min(start + span, num_snippets))``: the last ones are truncated, never padded, and a
    video shorter than one span is one window.

    ``rule="paper"`` (the TPAMI paper's text, in seconds): the video lasts
    ``M = num_snippets / rate`` seconds (snippet ``i`` stands for the slot
    ``[i / rate, (i + 1) / rate)``); the stride is ``s = (1 - overlap) * length`` seconds
    (0.8 l); there are ``N = max(1, floor(M / s))`` windows; window ``j`` covers
    ``[j s, j s + length)`` seconds, i.e. the snippets whose slot starts inside it,
    ``i`` in ``[ceil(j s rate), ceil((j s + length) rate))``, cut at ``num_snippets``; a window
    that holds no slot start (only when ``length * rate < 1``) takes the snippet
    ``min(floor(j s rate), num_snippets - 1)``. Differences: the paper's count ``floor(M / s)``
    may leave the video's last ``(1 - 2 overlap) l`` seconds (0.6 l) out of every window, the
    reference's windows cover every snippet; the paper's stride is not rounded to whole snippets;
    and ``top_k`` rounds the quarter up instead of down.
    """
    _check_rule(rule)
    if num_snippets < 1:
        raise ValueError("M-TWI needs at least one snippet, got zero snippets")
    length_, rate_, overlap_ = exact(length), exact(rate), exact(overlap)
    if length_ <= 0 or rate_ <= 0 or not 0 <= overlap_ < 1:
        raise ValueError(f"window length and rate must be positive and overlap in [0, 1), got "
                         f"length={length}, rate={rate}, overlap={overlap}")
    if rule == "reference":
        span = max(1, math.floor(length_ * rate_))
        step = math.ceil(span * (1 - overlap_))  # >= 1: span >= 1, overlap < 1
        return [(s, min(s + span, num_snippets)) for s in range(0, num_snippets, step)]
    stride = (1 - overlap_) * length_
    n = max(1, math.floor(num_snippets / rate_ / stride))
    out = []
    for j in range(n):
        lo = min(math.ceil(j * stride * rate_), num_snippets)
        hi = min(math.ceil((j * stride + length_) * rate_), num_snippets)
        if hi <= lo:
            lo = min(math.floor(j * stride * rate_), num_snippets - 1)
            hi = lo + 1
        out.append((lo, hi))
    return out


def top_k(num_windows: int, rule: str = "reference") -> int:
    """How many of the best windows are averaged: ``max(15, floor(n / 4))`` (reference) or
    ``max(15, ceil(n / 4))`` (paper), never more than ``n``."""
    _check_rule(rule)
    quarter = num_windows // 4 if rule == "reference" else -(-num_windows // 4)
    return min(max(MIN_K, quarter), num_windows)


def mtwi_scores(snippet_scores: np.ndarray, rate: Number = 1.0, lengths: Sequence[Number] = LENGTHS,
                overlap: Number = OVERLAP, rule: str = "reference") -> np.ndarray:
    """One video's raw class scores ``(C,)`` from its snippets' scores ``(T, C)`` (snippets in
    time order at ``rate`` per second, crops already combined).

    For each window length ``l`` in ``lengths`` (seconds): the ``windows`` of that rule; a
    window's score is, per class, the max over its snippets; ``G_l`` is, per class, the mean of
    the ``top_k`` largest window scores. The video's score is the mean of ``G_l`` over the
    lengths. No softmax here: streams are fused on these raw scores, softmax last.
    """
    s = np.asarray(snippet_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected (snippets, classes) scores, got shape {s.shape}")
    if s.shape[0] == 0:
        raise ValueError("M-TWI needs at least one snippet, got zero snippets")
    if not lengths:
        raise ValueError("M-TWI needs at least one window length")
    per_length = []
    for length in lengths:
        spans = windows(s.shape[0], length, rate, overlap, rule)
        win = np.stack([s[a:b].max(axis=0) for a, b in spans])      # (n_windows, C)
        k = top_k(len(spans), rule)
        per_length.append(np.sort(win, axis=0)[-k:].mean(axis=0))
    return np.mean(per_length, axis=0)


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"the M-TWI rule is one of {', '.join(RULES)}, not {rule!r}")
