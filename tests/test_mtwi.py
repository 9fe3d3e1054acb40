"""M-TWI and untrimmed snippet positions, pinned by hand-computed values (docs/untrimmed.md)."""
import numpy as np
import pytest

from tsn_train.mtwi import combine_crops, mtwi_scores, snippet_positions, top_k, windows

# One class over 5 snippets; used by several tests. Hand-computed window maxima are in comments.
FIVE = np.array([[1.0], [5.0], [2.0], [0.0], [3.0]])


def test_snippet_positions_centre_of_each_slot():
    # 75 frames at 25 fps = 3 s -> slots [0,1) [1,2) [2,3) s, centres 0.5 1.5 2.5 s = frames 12.5 37.5 62.5
    assert snippet_positions(75, 25) == [12, 37, 62]
    # 80 frames = 3.2 s -> a fourth, partial slot; its centre (3.5 s = frame 87.5) is clamped to 79
    assert snippet_positions(80, 25) == [12, 37, 62, 79]
    # rate 2: slots of 0.5 s, centres 0.25 s and 0.75 s = frames 7.5 and 22.5
    assert snippet_positions(30, 30, rate=2) == [7, 22]
    # 30 frames at 29.97 fps last 1.001 s: two slots; 1.5 s is frame 44.955 -> clamped to 29
    assert snippet_positions(30, 29.97) == [14, 29]
    # a video shorter than one slot still has one snippet
    assert snippet_positions(1, 25) == [0]
    # exact arithmetic: 3 frames at 0.1 fps is 30 s -> 3 slots at rate 0.1 (float would make 3.0000000000000004 -> 4)
    assert snippet_positions(3, 0.1, rate=0.1) == [0, 1, 2]


def test_snippet_positions_of_longer_snippets_are_centred_and_fit():
    # flow, 5 images a snippet: start = centre - 2, at most 80 - 5 = 75
    assert snippet_positions(80, 25, length=5) == [10, 35, 60, 75]
    # fewer images than a snippet: every start is 0
    assert snippet_positions(3, 25, length=5) == [0]


def test_snippet_positions_errors():
    with pytest.raises(ValueError, match="zero snippets"):
        snippet_positions(0, 25)
    with pytest.raises(ValueError, match="positive"):
        snippet_positions(10, 0)
    with pytest.raises(ValueError, match="positive"):
        snippet_positions(10, 25, rate=-1)


def test_combine_crops_max_or_mean():
    s = np.array([[[1.0, 4.0], [3.0, 0.0]], [[2.0, 2.0], [0.0, 6.0]]])  # (2 snippets, 2 crops, 2 classes)
    np.testing.assert_array_equal(combine_crops(s), [[3.0, 4.0], [2.0, 6.0]])
    np.testing.assert_array_equal(combine_crops(s, "mean"), [[2.0, 2.0], [1.0, 4.0]])
    with pytest.raises(ValueError, match="'max' or 'mean'"):
        combine_crops(s, "median")
    with pytest.raises(ValueError, match="crops"):
        combine_crops(s[0])


def test_reference_windows_truncated_or_divisible():
    # span 2, step ceil(1.6) = 2: the last window of 5 snippets is truncated, never padded
    assert windows(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert windows(4, 2) == [(0, 2), (2, 4)]
    # maxima 5, 2, 3 -> k = min(max(15, 0), 3) = 3 -> 10/3 ; divisible: 5, 2 -> 3.5
    assert mtwi_scores(FIVE, lengths=(2,)) == pytest.approx([10 / 3])
    assert mtwi_scores(FIVE[:4], lengths=(2,)) == pytest.approx([3.5])


def test_video_shorter_than_a_window_is_one_window():
    assert windows(3, 8) == [(0, 3)]
    assert windows(3, 8, rule="paper") == [(0, 3)]
    assert mtwi_scores(FIVE[:3], lengths=(8,)) == pytest.approx([5.0])
    assert mtwi_scores(FIVE[:3], lengths=(8,), rule="paper") == pytest.approx([5.0])


def test_default_lengths_on_a_short_video_two_classes():
    # T = 5 <= 15, so every length keeps all its windows. Class 0 / class 1 snippet scores:
    s = np.array([[1.0, 4.0], [5.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 2.0]])
    # l=1: 5 windows, mean 11/5 | 7/5    l=2: maxima (5,2,3) | (4,1,2): 10/3 | 7/3
    # l=4: step ceil(3.2) = 4, maxima (5,3) | (4,2): 4 | 3    l=8, l=16: one window: 5 | 4
    # video: (11/5 + 10/3 + 4 + 5 + 5) / 5 = 293/75 ; (7/5 + 7/3 + 3 + 4 + 4) / 5 = 221/75
    assert mtwi_scores(s) == pytest.approx([293 / 75, 221 / 75])


def test_float_rounding_of_the_step():
    # 4 * 0.8 = 3.2000000000000006 in floats; the step is 4 either way
    assert windows(9, 4) == [(0, 4), (4, 8), (8, 9)]
    # 10 * (1 - 0.7) = 3.0000000000000004 in floats: ceil would give 4; exactly it is 3
    assert windows(7, 10, overlap=0.7) == [(0, 7), (3, 7), (6, 7)]
    s = np.array([[0.0], [0.0], [0.0], [9.0], [0.0], [0.0], [0.0]])
    # windows (0,7) (3,7) (6,7): maxima 9, 9, 0 -> 6 (a step of 4 would give 9, 0 -> 4.5)
    assert mtwi_scores(s, lengths=(10,), overlap=0.7) == pytest.approx([6.0])


def test_overlap_zero_and_k_floor_versus_ceil():
    # overlap 0, length 1: one window per snippet. 67 windows: reference k = max(15, floor(67/4)) = 16,
    # paper k = max(15, ceil(67/4)) = 17
    assert top_k(67) == 16 and top_k(67, "paper") == 17
    assert top_k(64) == 16 and top_k(64, "paper") == 16
    assert top_k(10) == 10 and top_k(20) == 15
    s = np.arange(67, dtype=np.float64)[:, None]        # snippet i scores i
    assert windows(67, 1, overlap=0) == [(i, i + 1) for i in range(67)]
    # top 16 = 51..66 -> 58.5 ; top 17 = 50..66 -> 58
    assert mtwi_scores(s, lengths=(1,), overlap=0) == pytest.approx([58.5])
    assert mtwi_scores(s, lengths=(1,), overlap=0, rule="paper") == pytest.approx([58.0])


def test_ties_at_the_top_k_cut():
    # 20 windows -> k = 15: ten 3s and five of the ten 1s -> 35 / 15
    s = np.array([[3.0]] * 10 + [[1.0]] * 10)
    assert mtwi_scores(s, lengths=(1,), overlap=0) == pytest.approx([7 / 3])
    assert mtwi_scores(s[::-1], lengths=(1,), overlap=0, rule="paper") == pytest.approx([7 / 3])


def test_rate_two():
    # rate 2: a 1 s window is 2 snippets, step 2 -> maxima 5, 2, 3 -> 10/3
    assert windows(5, 1, rate=2) == [(0, 2), (2, 4), (4, 5)]
    assert mtwi_scores(FIVE, rate=2, lengths=(1,)) == pytest.approx([10 / 3])
    # paper: M = 2.5 s, stride 0.8 s, N = floor(3.125) = 3; [0,1) [0.8,1.8) [1.6,2.6) s
    # = snippets [0,2) [ceil(1.6), ceil(3.6)) = [2,4) [ceil(3.2), 5) = [4,5)
    assert windows(5, 1, rate=2, rule="paper") == [(0, 2), (2, 4), (4, 5)]
    # rate 0.5: 1 s is half a snippet -> span 1 (at least one), step 1
    assert windows(3, 1, rate=0.5) == [(0, 1), (1, 2), (2, 3)]


def test_paper_rule_windows():
    # l = 1, rate 1: stride 0.8 s, M = 5, N = floor(6.25) = 6; [4.0, 5.0) holds snippet 4 again
    assert windows(5, 1, rule="paper") == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (4, 5)]
    # (1 + 5 + 2 + 0 + 3 + 3) / 6 = 7/3 ; the reference: 11/5
    assert mtwi_scores(FIVE, lengths=(1,), rule="paper") == pytest.approx([7 / 3])
    assert mtwi_scores(FIVE, lengths=(1,)) == pytest.approx([11 / 5])
    # l = 4, T = 9: stride 3.2, N = floor(2.8125) = 2: [0,4) [3.2,7.2) -> snippet 8 is in no window
    assert windows(9, 4, rule="paper") == [(0, 4), (4, 8)]
    s = np.array([[0.0]] * 8 + [[9.0]])
    assert mtwi_scores(s, lengths=(4,), rule="paper") == pytest.approx([0.0])
    assert mtwi_scores(s, lengths=(4,)) == pytest.approx([3.0])   # reference: maxima 0, 0, 9
    # a window shorter than a snippet (l * rate < 1) still takes one snippet:
    # l = 1 at rate 0.5, stride 0.8 s, M = 4 s, N = 5: in snippet units [0, .5) [.4, .9) [.8, 1.3)
    # [1.2, 1.7) [1.6, 2.1); only the 1st and 3rd hold a slot start, the others take the slot
    # they start in (snippet floor(start))
    assert windows(2, 1, rate=0.5, rule="paper") == [(0, 1), (0, 1), (1, 2), (1, 2), (1, 2)]


def test_errors():
    with pytest.raises(ValueError, match="zero snippets"):
        mtwi_scores(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="snippets, classes"):
        mtwi_scores(np.zeros(5))
    with pytest.raises(ValueError, match="rule"):
        mtwi_scores(FIVE, rule="other")
    with pytest.raises(ValueError, match="overlap"):
        windows(5, 1, overlap=1)
