"""Video lists, the UCF101/HMDB51 split converters, and validation against a real store."""
import pytest

from tests.conftest import CLIPS, train_cli
from tsn_prep.store import Store
from tsn_train.lists import ListError, Record, hmdb51_lists, read_list, ucf101_lists, validate


def test_read_list_formats_and_errors(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("# comment\nA/v_a 3\n\nmy clip 0\nB/v_b 120 7\n")
    assert read_list(p) == [Record("A/v_a", 3), Record("my clip", 0), Record("B/v_b", 7)]
    p.write_text("A/v_a 3\nA/v_b three\n")
    with pytest.raises(ListError, match=r"l.txt:2: expected 'video_id label'"):
        read_list(p)
    with pytest.raises(ListError, match="no such list file"):
        read_list(tmp_path / "missing.txt")


def test_ucf101_converter(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n")
    (tmp_path / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nYoYo/v_YoYo_g25_c05.avi 3\r\n")
    (tmp_path / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nHandStandPushups/v_HandStandPushups_g01_c01.avi\r\n")
    train, test, names = ucf101_lists(tmp_path, 1)
    assert names == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert train == [Record("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 0), Record("YoYo/v_YoYo_g25_c05", 2)]
    assert test == [Record("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 0),
                    Record("HandStandPushups/v_HandStandPushups_g01_c01", 1)]
    out = tmp_path / "lists"
    train_cli("lists", "ucf101", tmp_path, out, "--split", "1")
    assert (out / "ucf101_train_split1.txt").read_text() == (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 0\nYoYo/v_YoYo_g25_c05 2\n")
    assert (out / "ucf101_classes.txt").read_text().split() == names
    result = train_cli("lists", "ucf101", tmp_path, out, "--split", "2", expect=1)
    assert "trainlist02.txt: no such file" in result.output


def test_hmdb51_converter(tmp_path):
    (tmp_path / "wave_test_split1.txt").write_text("w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    (tmp_path / "clap_test_split1.txt").write_text("c1.avi 2 \nc2.avi 1 \n")
    (tmp_path / "clap_test_split2.txt").write_text("c1.avi 1 \n")
    train, test, names = hmdb51_lists(tmp_path, 1)
    assert names == ["clap", "wave"]
    assert train == [Record("clap/c2", 0), Record("wave/w1", 1)]
    assert test == [Record("clap/c1", 0), Record("wave/w2", 1)]
    assert hmdb51_lists(tmp_path, 1, class_folders=False)[0] == [Record("c2", 0), Record("w1", 1)]
    with pytest.raises(ListError, match="_test_split3.txt"):
        hmdb51_lists(tmp_path, 3)


def test_validation_names_missing_videos_and_bad_labels(train_store):
    store = Store(train_store)
    good = [Record(c, i) for i, c in enumerate(CLIPS)]
    counts = validate(good, store, "flow", 5)
    assert counts == {c: 15 for c in CLIPS}  # 16 frames -> 15 flow fields
    assert validate(good, store, "rgbdiff", 5)["tree"] == 40  # rgbdiff reads the rgb frames
    missing = good + [Record(f"nope/{i}", 0) for i in range(7)]
    with pytest.raises(ListError) as err:
        validate(missing, store, "rgb", 5, "train list x.txt")
    msg = str(err.value)
    assert msg.startswith("train list x.txt: 7 of 12 videos have no rgb in ")
    assert "nope/0, nope/1, nope/2, nope/3, nope/4, ... (7 in all)" in msg
    with pytest.raises(ListError, match=r"1 of 6 videos have no warped_flow .*nope/x \(1\); "
                                        r"the store has flow, rgb, warped_flow$"):
        validate(good + [Record("nope/x", 0)], store, "warped_flow", 5)
    with pytest.raises(ListError, match=r"labels must be in 0..3; out of range: carphone=4 \(1\)"):
        validate(good, store, "rgb", 4)
