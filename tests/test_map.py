"""ActivityNet and THUMOS14 mAP, hit@k and multi-label lists, against hand-computed values."""
import numpy as np
import pytest

from tsn_core.lists import ListError, MultiRecord, read_list, read_multilabel_list
from tsn_train.metrics import (activitynet_map, activitynet_map_from_submissions, submissions,
                               thumos14_map, voc_ap)

# Four videos, three classes: v0 {0}, v1 background, v2 {0, 1}, v3 {1}; class 2 has no positive.
LABELS = [(0,), (), (0, 1), (1,)]
SCORES = np.array([[0.6, 0.3, 0.1],
                   [0.7, 0.2, 0.1],
                   [0.5, 0.1, 0.4],
                   [0.2, 0.9, 0.8]])


def test_thumos14_non_interpolated_ap():
    r = thumos14_map(SCORES, LABELS)
    # class 0 ranks v1 (-) v0 (+) v2 (+) v3 (-): (1/2 + 2/3) / 2 = 7/12
    # class 1 ranks v3 (+) v0 (-) v1 (-) v2 (+): (1 + 2/4) / 2 = 3/4 ; class 2: no positive -> NaN
    assert r.ap[:2] == pytest.approx([7 / 12, 3 / 4])
    assert np.isnan(r.ap[2])
    assert r.mean_ap == pytest.approx((7 / 12 + 3 / 4) / 2)
    assert list(r.evaluated) == [0, 1]
    np.testing.assert_allclose(r.precision[0], [0, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(r.recall[0], [0, 0.5, 1, 1])
    assert r.hit_at_k is None


def test_activitynet_interpolated_ap_and_hit():
    r = activitynet_map(SCORES, LABELS)
    # class 0: precision 0, 1/2, 2/3, 2/4 at recall 0, .5, 1, 1; made monotone: 2/3 up to recall 1
    #   -> .5 * 2/3 + .5 * 2/3 = 2/3 (THUMOS's non-interpolated: 7/12)
    # class 1: precision 1, 1/2, 1/3, 2/4 at recall .5, .5, .5, 1 -> .5 * 1 + .5 * 1/2 = 3/4
    assert r.ap[:2] == pytest.approx([2 / 3, 3 / 4])
    assert np.isnan(r.ap[2])
    assert r.mean_ap == pytest.approx(17 / 24)
    assert r.hit_at_k == 1.0 and r.k == 3


def test_voc_ap_is_all_point_interpolated():
    assert voc_ap(np.array([0, 0.5, 2 / 3]), np.array([0, 0.5, 1])) == pytest.approx(2 / 3)
    # recall never reaches 1: the missing part counts 0
    assert voc_ap(np.array([1.0]), np.array([0.5])) == pytest.approx(0.5)
    assert voc_ap(np.array([]), np.array([])) == 0.0


def test_activitynet_top_k_submissions():
    v, c, s = submissions(SCORES, top_k=1)
    assert v.tolist() == [0, 1, 2, 3] and c.tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(s, [0.6, 0.7, 0.5, 0.9])
    r = activitynet_map(SCORES, LABELS, top_k=1)
    # class 0: v1 (-) v0 (+) v2 (+) -> 2/3 ; class 1: only v3 (+) submitted -> recall .5 at precision 1 -> 1/2
    assert r.ap[:2] == pytest.approx([2 / 3, 1 / 2])
    assert r.mean_ap == pytest.approx(7 / 12)
    # a class with positives but no submission scores 0
    r = activitynet_map(np.array([[0.9, 0.1]]), [(1,)], top_k=1)
    assert r.ap[1] == 0.0 and np.isnan(r.ap[0]) and r.mean_ap == 0.0 and r.hit_at_k == 0.0


def test_activitynet_duplicates_are_false_positives():
    labels = [(0,), (0,)]
    # v0 submits class 0 twice: the second one is a false positive
    r = activitynet_map_from_submissions([0, 0, 1], [0, 0, 0], [0.9, 0.8, 0.7], labels, 1)
    # precision 1, 1/2, 2/3 at recall .5, .5, 1 -> .5 * 1 + .5 * 2/3 = 5/6
    assert r.ap[0] == pytest.approx(5 / 6)
    np.testing.assert_allclose(r.precision[0], [1, 1 / 2, 2 / 3])
    r = activitynet_map_from_submissions([0, 1], [0, 0], [0.9, 0.7], labels, 1)
    assert r.ap[0] == pytest.approx(1.0)


def test_ties():
    # THUMOS keeps list order among equal scores (MATLAB's stable sort); ActivityNet puts the later
    # submission first (argsort()[::-1])
    assert thumos14_map(np.array([[0.5], [0.5], [0.1]]), [(0,), (), ()]).ap[0] == pytest.approx(1.0)
    assert thumos14_map(np.array([[0.5], [0.5], [0.1]]), [(), (0,), ()]).ap[0] == pytest.approx(0.5)
    assert activitynet_map(np.array([[0.5], [0.5]]), [(0,), ()]).ap[0] == pytest.approx(0.5)
    assert activitynet_map(np.array([[0.5], [0.5]]), [(), (0,)]).ap[0] == pytest.approx(1.0)
    # hit@1 among tied classes: the higher class index is ranked first
    assert activitynet_map(np.array([[0.5, 0.5]]), [(1,)], hit_k=1).hit_at_k == 1.0
    assert activitynet_map(np.array([[0.5, 0.5]]), [(0,)], hit_k=1).hit_at_k == 0.0


def test_hit_at_3_ignores_background_videos_and_multi_labels_count():
    labels = [(4,), (), (0, 3)]
    scores = np.array([[0.5, 0.4, 0.3, 0.2, 0.1],     # top 3 {0, 1, 2}: miss
                       [0.1, 0.2, 0.3, 0.4, 0.5],     # background: not counted
                       [0.1, 0.2, 0.9, 0.8, 0.7]])    # top 3 {2, 3, 4}: 3 is a label -> hit
    assert activitynet_map(scores, labels).hit_at_k == pytest.approx(1 / 2)
    # a labelled video with no submission at all is a miss
    r = activitynet_map_from_submissions([2], [3], [0.8], labels, 5)
    assert r.hit_at_k == pytest.approx(1 / 2)


def test_background_videos_are_negatives():
    # class 0: v0 background scores highest -> precision 1/2 at the single positive
    labels = [(), (0,)]
    scores = np.array([[0.9], [0.8]])
    assert thumos14_map(scores, labels).ap[0] == pytest.approx(0.5)
    assert activitynet_map(scores, labels).ap[0] == pytest.approx(0.5)


def test_metric_errors():
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        thumos14_map(SCORES, [(0,), (), (3,), ()])
    with pytest.raises(ValueError, match="4 videos have scores but 3"):
        activitynet_map(SCORES, LABELS[:3])
    with pytest.raises(ValueError, match="no class has a positive"):
        thumos14_map(SCORES, [(), (), (), ()])


def test_read_multilabel_list(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("# untrimmed\nv1 3\nv2 7,0,7\n\nv3 -\nv4\nmy clip 2\nmy other clip -\nB/v_b 120 1,2\n")
    ids = {"v1", "v2", "v3", "v4", "my clip", "my other clip", "B/v_b"}  # 'B/v_b 120' is not one
    assert read_multilabel_list(p, ids) == [
        MultiRecord("v1", (3,)), MultiRecord("v2", (0, 7)), MultiRecord("v3", ()), MultiRecord("v4", ()),
        MultiRecord("my clip", (2,)), MultiRecord("my other clip", ()), MultiRecord("B/v_b", (1, 2))]
    # read_list's files read the same, one label each
    q = tmp_path / "single.txt"
    q.write_text("A/v_a 3\nB/v_b 120 7\n")
    assert [(r.video_id, (r.label,)) for r in read_list(q, ids | {"A/v_a"})] == [
        (r.video_id, r.labels) for r in read_multilabel_list(q, ids | {"A/v_a"})]
    p.write_text("v1 3\nmy clip\n")
    with pytest.raises(ListError, match=r"l.txt:2: expected 'video_id label\[,label...\]'"):
        read_multilabel_list(p)
    p.write_text("v1 1,,2\n")
    with pytest.raises(ListError, match="l.txt:1"):
        read_multilabel_list(p)
    with pytest.raises(ListError, match="no such list file"):
        read_multilabel_list(tmp_path / "missing.txt")


def test_evaluate_command_prints_map_and_writes_csv_and_curves(tmp_path):
    """The command on a real score file: softmax first, then the metric (values worked by hand:
    per class the ranking of the four videos is fixed by the raw scores below)."""
    import csv

    import cv2

    from tsn_train.scores import Scores

    from .conftest import TRAIN, cli_subprocess, train_cli

    raw = np.array([[5, 0, 0], [0, 4, 4], [2, 0, 3], [1, 3, 0]], np.float32)
    Scores(["v0", "v1", "v2", "v3"], np.zeros(4, np.int64), raw, ["a", "b", "c"], {}).save(tmp_path / "s.npz")
    (tmp_path / "gt.txt").write_text("v0 0\nv1 1,2\nv2 -\nv3 0\n")
    # class a: v0 + v2 - v3 + v1 -  -> AP (1 + 2/3) / 2 = 5/6; classes b and c: positive second -> 1/2
    # the real command in its own process: no OpenCV warning (C++, on stderr) from the picture
    r = cli_subprocess("evaluate", tmp_path / "s.npz", "--labels", tmp_path / "gt.txt", "--metric", "thumos14",
                       module=TRAIN)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines()[0] == "thumos14 mAP 0.6111 over 3 classes (4 videos, 1 background)"
    rows = list(csv.DictReader(open(tmp_path / "s-thumos14" / "per_class_ap.csv")))
    assert [(x["class"], x["positives"], x["ap"]) for x in rows] == [
        ("a", "2", "0.833333"), ("b", "1", "0.500000"), ("c", "1", "0.500000")]
    picture = cv2.imread(str(tmp_path / "s-thumos14" / "pr_curve.png"))
    assert picture is not None and (picture < 60).all(axis=2).sum() > 500  # axes, text, mean curve
    r = train_cli("evaluate", tmp_path / "s.npz", "--labels", tmp_path / "gt.txt", "--metric", "activitynet",
                  "--out", tmp_path / "anet")
    # interpolated AP gives the same values here; with three classes the top 3 always hit
    assert r.output.splitlines()[0] == "activitynet mAP 0.6111 over 3 classes, hit@3 1.0000 (4 videos, 1 background)"
    r = train_cli("evaluate", tmp_path / "s.npz", "--labels", tmp_path / "gt.txt", "--metric", "accuracy")
    # top-1: v0 right, v1 (a tie of b and c, both its labels) right, v3 wrong; v2 is background
    assert r.output == "accuracy: top-1 66.67%, top-5 100.00% over 3 labelled videos\n"
    (tmp_path / "short.txt").write_text("v0 0\nv1 7\n")
    r = train_cli("evaluate", tmp_path / "s.npz", "--labels", tmp_path / "short.txt", "--metric", "thumos14",
                  expect=1)
    assert "2 videos of" in r.output and "have no line (v2, v3)" in r.output
