"""Segment-based sampling: exact indices for train, validation and test, and the short-video rule."""
import numpy as np
import pytest

from tsn_core.modalities import MODALITIES
from tsn_train.sampling import center_starts, num_starts, sample_indices, snippet_indices, train_starts


def draws(count, length, segments, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([train_starts(count, length, segments, rng) for _ in range(n)])


def test_train_starts_stay_in_their_segment_and_cover_every_position():
    # 31 frames, K=3: segments [0,10), [10,20), [20,31) -- the last frame is not dropped.
    d = draws(31, 1, 3)
    assert [sorted(set(d[:, k])) for k in range(3)] == [list(range(0, 10)), list(range(10, 20)),
                                                        list(range(20, 31))]


def test_flow_snippets_fit_inside_the_video():
    # 20 flow fields, 5 per snippet: 16 starts, segments [0,5), [5,10), [10,16).
    d = draws(20, MODALITIES["flow"].snippet_length, 3)
    assert [(d[:, k].min(), d[:, k].max()) for k in range(3)] == [(0, 4), (5, 9), (10, 15)]
    assert (d + 4).max() == 19


def test_validation_and_test_take_segment_centres():
    assert center_starts(30, 1, 3) == [5, 15, 25]
    assert center_starts(250, 1, 25) == list(range(5, 250, 10))
    # RGB difference: 6 frames per snippet in a 10-frame video -> 5 starts, centres 0, 2, 4.
    assert sample_indices(center_starts(10, 6, 3), 6, 10) == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7],
                                                            [4, 5, 6, 7, 8, 9]]


def test_short_videos_share_starts_then_repeat_the_last_image():
    assert num_starts(6, 5) == 2
    assert train_starts(6, 5, 3, np.random.default_rng(0)) == [0, 0, 1]
    assert center_starts(6, 5, 3) == [0, 1, 1]
    assert train_starts(3, 5, 3, np.random.default_rng(0)) == [0, 0, 0]
    assert center_starts(3, 5, 25) == [0] * 25
    assert snippet_indices(0, 5, 3) == [0, 1, 2, 2, 2]
    # docs/coming-from.md's example: clamped, where mmaction2's default wraps to 0, 1, 0, 1, 0
    assert sample_indices(center_starts(2, 5, 25), 5, 2) == [[0, 1, 1, 1, 1]] * 25
    assert sample_indices(train_starts(2, 5, 3, np.random.default_rng(0)), 5, 2) == [[0, 1, 1, 1, 1]] * 3
    assert sample_indices(center_starts(1, 1, 3), 1, 1) == [[0], [0], [0]]


def test_train_sampling_is_a_function_of_the_generator():
    a = train_starts(300, 5, 7, np.random.default_rng([1, 2, 3]))
    b = train_starts(300, 5, 7, np.random.default_rng([1, 2, 3]))
    c = train_starts(300, 5, 7, np.random.default_rng([1, 2, 4]))
    assert a == b and a != c


@pytest.mark.parametrize("count, segments", [(0, 3), (10, 0)])
def test_impossible_requests_raise(count, segments):
    with pytest.raises(ValueError):
        center_starts(count, 1, segments)
