"""Video lists, the UCF101/HMDB51 split converters, and validation against a real store."""
import pytest

from tests.conftest import CLIPS, train_cli
from tsn_core.meta import EntryMeta
from tsn_core.store import Store
from tsn_core.lists import ListError, Record, read_list
from tsn_train.lists import hmdb51_lists, ucf101_lists, validate


def test_read_list_formats_and_errors(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("# comment\nA/v_a 3\n\nmy clip 0\nB/v_b 120 7\n")
    # the legacy line reads as 'B/v_b 120' or 'B/v_b' (frame count 120): the known ids decide
    assert read_list(p, {"A/v_a", "my clip", "B/v_b"}) == [
        Record("A/v_a", 3), Record("my clip", 0), Record("B/v_b", 7)]
    p.write_text("# comment\nA/v_a 3\n\nmy clip 0\n")
    assert read_list(p) == [Record("A/v_a", 3), Record("my clip", 0)]  # no store: one reading each
    p.write_text("A/v_a 3\nA/v_b three\n")
    with pytest.raises(ListError, match=r"l.txt:2: expected 'video_id label'"):
        read_list(p)
    with pytest.raises(ListError, match="no such list file"):
        read_list(tmp_path / "missing.txt")
    # reading pauses the cyclic garbage collector (a list makes no cycles) and restores it, even
    # after an error; a caller that had it off keeps it off
    import gc
    assert gc.isenabled()
    with pytest.raises(ListError):
        read_list(p)
    assert gc.isenabled()
    gc.disable()
    try:
        p.write_text("A/v_a 3\n")
        assert read_list(p, {"A/v_a"}) == [Record("A/v_a", 3)] and not gc.isenabled()
    finally:
        gc.enable()


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


# --- every line names exactly one stored video ------------------------------------------------

import unicodedata  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from tsn_prep.writer import ShardWriter# noqa: E402
from tsn_core.lists import (Known, ListLine, MultiRecord, Reading, parse_list,  # noqa: E402
                            parse_multilabel_list, read_multilabel_list)
from tsn_train.lists import store_known  # noqa: E402

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
assert CAFE_NFC != CAFE_NFD
# ids that a careless reading confuses: a legacy 3-column line, a separator of two spaces, a '#'
ODD_IDS = ["x/take 2", "x/take", "#take", "clip ", CAFE_NFD, "plain"]


def write_store(root, ids):
    """A real store at ``root``: rgb of each id, 3 small JPEG frames."""
    rng = np.random.default_rng(0)
    jpegs = [cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), np.uint8))[1].tobytes()
             for _ in range(3)]
    w = ShardWriter(root)
    for vid in ids:
        w.put_video(vid, "rgb", {"img": jpegs}, EntryMeta(num_frames=3, fps=25.0, parameters={}))
    w.close()
    return root


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory):
    """ODD_IDS in a real store, 'café' spelled NFD."""
    return write_store(tmp_path_factory.mktemp("odd") / "store", ODD_IDS)


def store_list(path, text, root, modality="rgb"):
    """Write ``text`` (str, or bytes verbatim) to ``path`` and read it against the store."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return read_list(path, store_known(Store(root), modality))


def test_parse_gives_every_reading_of_a_line(tmp_path):
    p = tmp_path / "l.txt"
    p.write_bytes("x/take 2 0\nclip  3\n#take 1\n# a comment\n  pad 4 \n\n \t\nv 5\r\n".encode())
    assert parse_list(p).lines == (
        ListLine(1, "x/take 2 0", (Reading("x/take 2"), Reading("x/take", 2)), (0,)),
        ListLine(2, "clip  3", (Reading("clip "), Reading("clip")), (3,)),
        ListLine(3, "#take 1", (Reading("#take"),), (1,), comment=True),
        ListLine(5, "  pad 4 ", (Reading("  pad"), Reading("pad")), (4,)),
        ListLine(8, "v 5", (Reading("v"),), (5,)))
    p.write_text("v1 3\nv2  -\nv3\n  v4  \nB/v_b 120 2,1\n")
    assert parse_multilabel_list(p).lines == (
        ListLine(1, "v1 3", (Reading("v1"),), (3,)),
        ListLine(2, "v2  -", (Reading("v2 "), Reading("v2")), ()),
        ListLine(3, "v3", (Reading("v3"),), ()),
        ListLine(4, "  v4  ", (Reading("  v4"), Reading("v4")), ()),
        ListLine(5, "B/v_b 120 2,1", (Reading("B/v_b 120"), Reading("B/v_b", 120)), (1, 2)))


def test_each_line_resolves_to_the_one_stored_reading(odd_store, tmp_path):
    p = tmp_path / "l.txt"
    text = ("\ufeffplain 0\r\n"       # a byte-order mark is not part of the first id
            "x/take 7 1\n"            # 'x/take 7' is not stored: the legacy reading, frame count 7
            "clip  2\n"               # 'clip ' (trailing space) is stored, 'clip' is not
            "# a comment\n"
            "#v_foo 3\n"              # a commented-out line naming no stored video: a comment
            "#take 4\n"               # '#take' is a stored video
            "\n")
    assert store_list(p, text, odd_store) == [
        Record("plain", 0), Record("x/take", 1), Record("clip ", 2), Record("#take", 4)]
    # rgbdiff reads the rgb entries
    assert store_list(p, "x/take 9 0\n", odd_store, "rgbdiff") == [Record("x/take", 0)]


def test_a_line_with_two_stored_readings_is_an_error(odd_store, tmp_path):
    p = tmp_path / "l.txt"
    with pytest.raises(ListError) as err:
        store_list(p, "plain 1\nx/take 2 0\n", odd_store)
    assert str(err.value) == (f"{p}:2: could be read as 'x/take 2' (label 0) or 'x/take' "
                              f"(frame count 2, label 0); both are in the store")
    # without a store the same line is ambiguous; a line with one reading is taken as it is
    p.write_text("plain 1\nx/take 2 0\n")
    with pytest.raises(ListError) as err:
        read_list(p)
    assert str(err.value) == (f"{p}:2: could be read as 'x/take 2' (label 0) or 'x/take' "
                              f"(frame count 2, label 0); without a store to check against, the "
                              f"line is ambiguous")


def test_missing_duplicate_and_respelled_ids_name_the_line(odd_store, tmp_path):
    p = tmp_path / "l.txt"
    root = Store(odd_store).root

    def error(text, modality="rgb"):
        with pytest.raises(ListError) as err:
            store_list(p, text, odd_store, modality)
        return str(err.value)

    # trailing spaces belong to the id: 'clip' is not 'clip '
    assert error("plain 0\nclip 1\n") == f"{p}:2: 'clip' has no rgb in {root}; the store has rgb"
    assert error("plain 0\nnope 5 1\n") == (
        f"{p}:2: 'nope 5' or 'nope' has no rgb in {root}; the store has rgb")
    assert error("plain 0\nplain 0\n") == f"{p}:2: 'plain' is listed twice, on lines 1 and 2"
    assert error("plain 0\nclip  1\nx/take 5 2\nplain 3\n") == (
        f"{p}:4: 'plain' is listed twice, on lines 1 and 4 (label 0, then label 3)")
    assert error(f"plain 0\n{CAFE_NFC} 1\n") == (
        f"{p}:2: {CAFE_NFC!r} is not in the store, but {CAFE_NFD!r} is, spelled with another Unicode "
        f"normalisation (NFD in the store, NFC in the list); write the list with the store's spelling")
    # many missing videos: one message, count, preview and the lines
    many = "plain 0\n" + "".join(f"nope/{i} 0\n" for i in range(7))
    assert error(many) == (
        f"{p}:2: 7 of 8 videos have no rgb in {root}: nope/0, nope/1, nope/2, nope/3, nope/4, ... "
        f"(7 in all), on lines 2, 3, 4, 5, 6, ... ; the store has rgb".replace(" ... ;", " ...;"))
    with pytest.raises(ListError) as err:
        read_list(p, store_known(Store(odd_store), "flow"), "train list l.txt")
    assert str(err.value).startswith(f"train list l.txt: 8 of 8 videos have no flow in {root}: "
                                     f"plain, nope/0, nope/1, nope/2, nope/3, ... (8 in all), "
                                     f"on lines 1, 2, 3, 4, 5, ... of {p}; the store has rgb")
    # a list of comments only names no video
    assert error("# nothing\n#v_foo 3\n") == f"{p}: the list is empty"
    assert error(b"plain 0\nbad \xff 1\n") == f"{p}:2: not UTF-8 (byte 0xff: invalid start byte)"


def test_fit_stops_on_an_ambiguous_line(odd_store, tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("plain 0\nx/take 2 1\n")
    r = train_cli("fit", "--store", odd_store, "--train-list", lst, "--out", tmp_path / "run",
                  "--modality", "rgb", "--arch", "resnet18", "--workers", "0", expect=1)
    assert r.output.splitlines() == [
        f"Error: {lst}:2: could be read as 'x/take 2' (label 1) or 'x/take' (frame count 2, label 1); "
        f"both are in the store"]


def test_test_command_scores_the_videos_the_lines_name(odd_store, tmp_path):
    """`tsn-train test` with an untrained tiny model: which videos it scores is what matters."""
    from tsn_train import checkpoint
    from tsn_train.config import resolve
    from tsn_train.models import build_model
    from tsn_train.scores import Scores
    from tsn_train.transforms import NORMS

    cfg = resolve({"modality": "rgb", "store": str(odd_store), "train_list": "t", "out": "o",
                   "arch": "resnet18", "segments": 1})
    ckpt = tmp_path / "c.pt"
    checkpoint.save(checkpoint.Checkpoint(
        model=build_model(cfg, 5).state_dict(), config=cfg, classes=list("abcde"),
        preprocessing=checkpoint.Preprocessing("rgb", 32, 36, NORMS["imagenet"]), extraction={},
        epoch=1), ckpt)
    lst = tmp_path / "test.txt"
    lst.write_text("x/take 3 0\nclip  1\n# comment\n#take 2\n")
    base = ("test", "--checkpoint", ckpt, "--store", odd_store, "--segments", "1", "--crops", "1",
            "--workers", "0", "--device", "cpu", "--no-amp")
    train_cli(*base, "--list", lst, "--out", tmp_path / "s.npz")
    s = Scores.load(tmp_path / "s.npz")
    assert s.video_ids == ["x/take", "clip ", "#take"] and list(s.labels) == [0, 1, 2]
    lst.write_text("plain 0\nx/take 2 0\n")
    r = train_cli(*base, "--list", lst, "--out", tmp_path / "t.npz", expect=1)
    assert r.output.splitlines()[-1] == (
        f"Error: {lst}:2: could be read as 'x/take 2' (label 0) or 'x/take' (frame count 2, "
        f"label 0); both are in the store")
    assert not (tmp_path / "t.npz").exists()


def test_multilabel_lines_resolve_against_the_score_file(tmp_path):
    from tsn_train.scores import Scores

    ids = ["x/take 2", "x/take", "clip ", CAFE_NFD]
    Scores(ids, np.zeros(4, np.int64), np.eye(4, 3, dtype=np.float32), ["a", "b", "c"], {}).save(
        tmp_path / "s.npz")
    p = tmp_path / "gt.txt"
    # with 'x/take' there too, 'x/take 2' is listed with a frame count (ignored) after it
    p.write_text(f"x/take 2 1 0\nx/take 1,2\nclip  -\n{CAFE_NFD}\n")
    known = Known(set(ids), "s.npz", "scores in s.npz")
    assert read_multilabel_list(p, known) == [
        MultiRecord("x/take 2", (0,)), MultiRecord("x/take", (1, 2)), MultiRecord("clip ", ()),
        MultiRecord(CAFE_NFD, ())]

    def evaluate(text):
        p.write_text(text)
        return train_cli("evaluate", tmp_path / "s.npz", "--labels", p, "--metric", "accuracy",
                         expect=None)

    r = evaluate(f"x/take 2 1 0\nx/take 1\nclip  -\n{CAFE_NFD}\n")
    assert r.exit_code == 0 and r.output.startswith("accuracy: top-1 ")
    s = tmp_path / "s.npz"
    r = evaluate(f"x/take 2 1\nclip  -\n{CAFE_NFD} 2\n")  # 'x/take 2 1': both are in the scores
    assert r.exit_code == 1 and r.output.splitlines() == [
        f"Error: {p}:1: could be read as 'x/take 2' (label 1) or 'x/take' (frame count 2, label 1); "
        f"both are in {s}"]
    r = evaluate(f"x/take 2 1 0\nx/take 1\nclip  -\n{CAFE_NFC} 2\n")
    assert r.exit_code == 1 and r.output.splitlines() == [
        f"Error: {p}:4: {CAFE_NFC!r} is not in {s}, but {CAFE_NFD!r} is, spelled with another Unicode "
        f"normalisation (NFD in {s}, NFC in the list); write the list with {s}'s spelling"]
    r = evaluate(f"x/take 2 1 0\nx/take 1\nclip  -\nclip  2\n{CAFE_NFD}\n")
    assert r.exit_code == 1 and r.output.splitlines() == [
        f"Error: {p}:4: 'clip ' is listed twice, on lines 3 and 4 (no label, then label 2)"]
    r = evaluate("x/take 2 1 0\nx/take 1\nclip  -\nother 2\n")
    assert r.exit_code == 1 and r.output.splitlines() == [f"Error: {p}:4: 'other' has no scores in {s}"]


def test_export_labels_resolve_against_the_store(odd_store, tmp_path):
    from tests.conftest import cli

    # mmaction2's lists cannot hold ids with whitespace: a store without them
    store = write_store(tmp_path / "store", ["x/take", "#take", "plain"])
    labels = tmp_path / "train.txt"
    labels.write_text("x/take 5 1\n#take 0\n# comment\nnot/stored 2\nplain 3\n")
    r = cli("export", store, tmp_path / "f", "--lists", "--labels", labels, "--quiet")
    assert (tmp_path / "f" / "train_rawframes_rgb.txt").read_text() == "x/take 3 1\n#take 3 0\nplain 3 3\n"
    assert "1 listed videos are not in the store (not/stored); left out" in r.stderr
    labels.write_text("plain 3\nplain 1\n")
    r = cli("export", store, tmp_path / "f", "--lists", "--labels", labels, "--quiet", expect=2)
    assert f"{labels}:2: 'plain' is listed twice, on lines 1 and 2 (label 3, then label 1)" in r.output
    labels.write_text("x/take 2 1\n")
    r = cli("export", odd_store, tmp_path / "g", "--lists", "--labels", labels, "--quiet", expect=2)
    assert (f"{labels}:1: could be read as 'x/take 2' (label 1) or 'x/take' (frame count 2, label 1); "
            f"both are in the store") in r.output
