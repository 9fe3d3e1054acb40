"""Rows of localization features: centres, each stream's snippet, and the rescaling to 100 rows."""
import numpy as np
import pytest

from tsn_train.feature_rows import csv100_text, rescale_rows, snippet_centres, snippet_frames


@pytest.mark.parametrize("frames, centres", [
    (1, []), (8, []), (9, [8]), (15, [8]), (16, [8]), (17, [8]), (24, [8]), (25, [8, 24]),
])
def test_centres_of_short_videos(frames, centres):
    assert snippet_centres(frames, 16).tolist() == centres


def test_centres_of_a_1000_frame_video():
    c = snippet_centres(1000, 16)
    # 8, 24, ..., 984: the next, 1000, is past the last frame (999)
    assert len(c) == 62 and c[0] == 8 and c[-1] == 984 and set(np.diff(c)) == {16}
    assert snippet_centres(1000, 5).tolist()[:3] == [2, 7, 12] and snippet_centres(1000, 5)[-1] == 997


def test_each_stream_reads_its_snippet_clamped_to_its_own_images():
    # a 17-frame video: one row at frame 8; rgb reads 1 frame, flow 5 of its 16 flows, rgbdiff 6 frames
    c = snippet_centres(17, 16)
    assert snippet_frames(c, 1, 17).tolist() == [[8]]
    assert snippet_frames(c, 5, 16).tolist() == [[6, 7, 8, 9, 10]]
    assert snippet_frames(c, 6, 17).tolist() == [[5, 6, 7, 8, 9, 10]]
    # clamped at both ends: interval 2 puts a centre at frame 1 and at the last frame
    c = snippet_centres(6, 2)
    assert c.tolist() == [1, 3, 5]
    assert snippet_frames(c, 5, 5).tolist() == [[0, 0, 1, 2, 3], [1, 2, 3, 4, 4], [3, 4, 4, 4, 4]]
    assert snippet_frames(c, 1, 6).tolist() == [[1], [3], [5]]


def independent_rescale(rows, out=100, bins=3):
    """pool_feature written again with np.interp, column by column."""
    n = len(rows)
    if n == 1:
        return np.repeat(rows, out, axis=0)
    start, end = 1e-4, n - 1 - 1e-4
    size = (end - start) / out
    x = np.array([start + k * size + i / bins * size for k in range(out) for i in range(bins)])
    cols = [np.interp(x, np.arange(n), rows[:, d]) for d in range(rows.shape[1])]
    return np.stack(cols, axis=1).reshape(out, bins, -1).mean(axis=1)


@pytest.mark.parametrize("n", [1, 2, 3, 62, 100, 101, 977])
def test_rescaling_to_100_rows_matches_an_independent_implementation(n):
    rows = np.random.default_rng(n).normal(size=(n, 7)).astype(np.float32)
    got = rescale_rows(rows)
    assert got.shape == (100, 7)
    np.testing.assert_allclose(got, independent_rescale(rows.astype(np.float64)), rtol=0, atol=1e-12)


def test_rescaling_a_ramp_gives_the_means_of_its_points():
    # rows 0..4 of the line y = x: output row k is the mean of its 3 points, which lie on the line
    rows = np.arange(5, dtype=float)[:, None]
    got = rescale_rows(rows, out_rows=4)
    step = (4 - 2e-4) / 4
    want = [1e-4 + k * step + step / 3 for k in range(4)]  # mean of ptr, ptr + s/3, ptr + 2s/3
    np.testing.assert_allclose(got[:, 0], want, atol=1e-12)


def test_no_rows_is_an_error_not_an_empty_file():
    with pytest.raises(ValueError, match="no rows"):
        rescale_rows(np.zeros((0, 4)))


def test_csv100_text():
    text = csv100_text(np.array([[0.123456, -1.0], [2.5, 1e-5]]))
    assert text == "f0,f1\n0.1235,-1.0000\n2.5000,0.0000"
