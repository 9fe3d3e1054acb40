"""Where the rows of localization features sit in a video, and how a video's rows become 100.

Pure functions over frame counts and arrays (no I/O), written after the recipe of the ActivityNet
feature files that BSN, BMN and G-TAD read:

- :func:`snippet_centres`: one row every ``interval`` frames, centred as mmaction2 1.2's
  ``UntrimmedSampleFrames(clip_interval=interval)`` centres them: frames ``interval // 2``,
  ``interval // 2 + interval``, ... below the video's frame count (0-based). A video of at most
  ``interval // 2`` frames has no row (mmaction2 gives it none either).
- :func:`snippet_frames`: the images one stream reads for each row, ``length`` of them centred on
  the row's centre as ``UntrimmedSampleFrames(clip_len=length)`` places them, clamped to the
  stream's own images (a video has N frames but N-1 flows), so rows align across streams.
- :func:`rescale_rows`: mmaction2's ``pool_feature`` (``activitynet_feature_postprocessing.py``):
  linear interpolation over the rows, the mean of 3 samples per output row, 100 output rows.
- :func:`csv100_text`: the CSV those tools write: a header ``f0,...`` and 4 decimals.
"""
from __future__ import annotations

import numpy as np

OUT_ROWS = 100   # the temporal length BSN and BMN read
SAMPLE_BINS = 3  # samples averaged per output row (pool_feature's num_sample_bins)


def snippet_centres(num_frames: int, interval: int = 16) -> np.ndarray:
    """0-based centre frames of the rows of a ``num_frames``-frame video (int64, maybe empty)."""
    if interval < 1:
        raise ValueError(f"interval must be at least 1, not {interval}")
    return np.arange(interval // 2, max(num_frames, 0), interval, dtype=np.int64)


def snippet_frames(centres: np.ndarray, length: int, count: int) -> np.ndarray:
    """``(rows, length)`` indices of the images a stream reads per row: ``centre - length // 2``
    to ``centre + length - length // 2 - 1``, clamped to ``0 .. count - 1`` (``count``: the
    stream's images, e.g. N - 1 flows of an N-frame video)."""
    if count < 1:
        raise ValueError("a stream with no images has no snippets")
    offsets = np.arange(-(length // 2), length - length // 2, dtype=np.int64)
    return np.clip(np.asarray(centres, dtype=np.int64)[:, None] + offsets[None, :], 0, count - 1)


def rescale_rows(rows: np.ndarray, out_rows: int = OUT_ROWS, bins: int = SAMPLE_BINS) -> np.ndarray:
    """``(n, dims)`` rows -> ``(out_rows, dims)`` float64: the video's rows seen as samples of a
    line, each output row the mean of ``bins`` points of its stretch (``pool_feature``'s mean
    pooling; one input row is repeated)."""
    rows = np.asarray(rows, dtype=np.float64)
    n = len(rows)
    if n == 0:
        raise ValueError("no rows to rescale (the video is shorter than half an interval)")
    if n == 1:
        return np.repeat(rows, out_rows, axis=0)
    eps = 1e-4
    start, end = eps, n - 1 - eps
    step = (end - start) / out_rows
    points, ptr = [], start
    for _ in range(out_rows):  # accumulated as pool_feature does, so the points are its floats
        points.extend(ptr + i / bins * step for i in range(bins))
        ptr += step
    x = np.asarray(points)
    lo = np.clip(np.floor(x).astype(np.int64), 0, n - 2)
    slope = rows[lo + 1] - rows[lo]
    y = rows[lo] + slope * (x - lo)[:, None]
    return y.reshape(out_rows, bins, -1).mean(axis=1)


def csv100_text(rows: np.ndarray) -> str:
    """The CSV of ``rows`` as the ActivityNet feature files are written: header ``f0,f1,...``,
    one line per row, 4 decimals, lines joined by newlines with none after the last."""
    rows = np.asarray(rows)
    lines = [",".join(f"f{i}" for i in range(rows.shape[1]))]
    lines += [",".join(f"{x:.4f}" for x in row) for row in rows.tolist()]
    return "\n".join(lines)
