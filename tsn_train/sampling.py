"""Which stored images a TSN sample reads: segment-based sparse sampling as pure functions.

Indices are 0-based positions in a video's stored series (frames for ``rgb`` and ``rgbdiff``,
flow fields for ``flow`` and ``warped_flow``). A snippet of length ``L`` (the modality's
``snippet_length`` in ``tsn_core.modalities``) starting at ``s`` reads ``s, s+1, ..., s+L-1``.

Rule for short videos: a start can only be a position where a whole snippet fits, so there are
``P = count - L + 1`` of them. With ``P >= K`` every segment holds at least one start. With
``1 <= P < K`` segments share starts (they are spread evenly and repeat). With ``P < 1`` (a video
shorter than one snippet) every snippet starts at 0 and positions past the end repeat the last
image. No video with at least one image raises an error.
"""
from __future__ import annotations

import numpy as np


def num_starts(count: int, length: int) -> int:
    """Positions where a whole snippet of ``length`` fits in ``count`` images."""
    return max(count - length + 1, 0)


def train_starts(count: int, length: int, segments: int, rng: np.random.Generator) -> list[int]:
    """Training: split the valid starts into ``segments`` equal parts, one random start in each.

    Segment ``k`` covers starts ``[k*P//K, (k+1)*P//K)``: every position belongs to exactly one
    segment (tsn-pytorch drops the last ``P mod K`` positions; we do not).
    """
    _check(count, segments)
    p = num_starts(count, length)
    if p < 1:
        return [0] * segments
    if p < segments:
        return [k * p // segments for k in range(segments)]
    lo = [k * p // segments for k in range(segments)]
    hi = [(k + 1) * p // segments for k in range(segments)]
    return [int(a + rng.integers(b - a)) for a, b in zip(lo, hi)]


def center_starts(count: int, length: int, segments: int) -> list[int]:
    """Validation and test: the centre of each of ``segments`` equal parts of the valid starts.

    Used with ``segments=K`` for validation and ``segments=25`` for the paper's test protocol
    (evenly spaced snippets over the whole video).
    """
    _check(count, segments)
    p = num_starts(count, length)
    if p < 1:
        return [0] * segments
    return [int((2 * k + 1) * p // (2 * segments)) for k in range(segments)]


def snippet_indices(start: int, length: int, count: int) -> list[int]:
    """The ``length`` consecutive images from ``start``, clamped to the last image."""
    return [min(start + i, count - 1) for i in range(length)]


def sample_indices(starts: list[int], length: int, count: int) -> list[list[int]]:
    """Per-snippet image indices for a list of starts."""
    return [snippet_indices(s, length, count) for s in starts]


def _check(count: int, segments: int) -> None:
    if count < 1:
        raise ValueError(f"a video needs at least one image to sample from, got {count}")
    if segments < 1:
        raise ValueError(f"segments must be at least 1, got {segments}")
