"""tools/make_untrimmed_demo.py: actions where the action list says, labels in the formats that
`tsn-train evaluate --labels` and `tsn-train test --list` read."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np

from tsn_core.lists import read_list, read_multilabel_list

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_untrimmed_demo.py"


def _tool():
    spec = importlib.util.spec_from_file_location("make_untrimmed_demo", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod           # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_actions_only_inside_their_intervals():
    mod = _tool()
    vids = list(mod.make_set(seed=3, videos=3, two_action=1, background_only=1, frames=40,
                             size=(64, 48), action_frames=(6, 9), speed=2.0, drift=1.0))
    assert [len(v.actions) for v in vids] == [0, 2, 1]
    two = vids[1]
    assert len(set(two.labels)) == 2                          # two different classes
    a, b = sorted(two.actions, key=lambda x: x.start)
    assert a.end + 2 <= b.start                                # disjoint, separated
    for v in vids:
        inside = np.zeros(40, bool)
        for act in v.actions:
            assert 6 <= act.end - act.start <= 9 and 0 <= act.start and act.end <= 40
            inside[act.start:act.end] = True
        for t in range(40):
            differs = np.any(v.frames[t] != v.background[t])
            assert differs == inside[t], (v.video_id, t)
    # the background drifts: consecutive background frames are not all the same image
    assert any(np.any(vids[0].background[t] != vids[0].background[t + 1]) for t in range(39))
    # deterministic
    again = list(mod.make_set(seed=3, videos=3, two_action=1, background_only=1, frames=40,
                              size=(64, 48), action_frames=(6, 9), speed=2.0, drift=1.0))
    assert all(np.array_equal(x, y) for v, w in zip(vids, again) for x, y in zip(v.frames, w.frames))


def test_files_and_lists(tmp_path):
    mod = _tool()
    mod.main([str(tmp_path / "videos"), "--lists", str(tmp_path / "lists"), "--videos", "3",
              "--two-action", "1", "--background-only", "1", "--seconds", "3", "--fps", "10",
              "--action-frames", "5,8", "--size", "64x48", "--seed", "1"])
    lists = tmp_path / "lists"
    multi = read_multilabel_list(lists / "untrimmed_labels.txt")
    assert [r.video_id for r in multi] == [f"untrimmed/video_{i:03d}" for i in range(3)]
    assert multi[0].labels == () and len(multi[1].labels) == 2 and len(multi[2].labels) == 1
    lines = (lists / "untrimmed_labels.txt").read_text().splitlines()
    assert lines[0] == "untrimmed/video_000 -"
    assert lines[1].split()[1] == ",".join(map(str, multi[1].labels))   # "a,b", sorted
    single = read_list(lists / "untrimmed_test.txt")
    assert single[0].label == 0                                   # background: 0
    assert single[1].label in multi[1].labels and single[2].label == multi[2].labels[0]
    actions = [l.split() for l in (lists / "untrimmed_actions.txt").read_text().splitlines()]
    assert sorted(int(a[1]) for a in actions if a[0].endswith("001")) == list(multi[1].labels)
    for i in range(3):
        cap = cv2.VideoCapture(str(tmp_path / "videos" / "untrimmed" / f"video_{i:03d}.mp4"))
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
        assert abs(cap.get(cv2.CAP_PROP_FPS) - 10) < 1e-6
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)
        cap.release()
    assert (lists / "untrimmed_classes.txt").read_text().split() == mod.CLASSES
