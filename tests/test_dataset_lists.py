"""tsn-train lists kinetics|ssv2|activitynet|thumos14: the converters of tsn_train/dataset_lists.py,
run through the CLI on small files in the official formats, with their quirks."""
import json

from tests.conftest import train_cli
from tsn_core.lists import MultiRecord, Record, read_classes, read_list, read_multilabel_list


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _touch(folder, *names):
    for name in names:
        _write(folder / name, "")


def _read(folder, name):
    return (folder / name).read_text(encoding="utf-8")


# --- Kinetics ---------------------------------------------------------------------------------

KINETICS_TRAIN = (
    "label,youtube_id,time_start,time_end,split,is_cc\n"
    "abseiling,--07WQ2iBlw,1,11,train,0\n"
    "café au lait,-0A8ngNVpl0,14.0,24.0,train,0\n"          # unicode label, float-looking times
    "abseiling,-3B32lodo2M,59,69,train,0\n"
    "跳舞,-3B32lodo2M,200,210,train,1\n"                      # same YouTube id, other times: 2 clips
    "\"passing American football (in game)\",0AB1x_xyz12,5,15,train,0\n"
)
KINETICS_VAL = (
    "label,youtube_id,time_start,time_end,split\n"
    "跳舞,--07WQ2iBlw,1,11,val\n"                            # the same clip as in train (other label)
    "abseiling,zzz_9999999,3,13,val\n"
    "\"passing American football (in game)\",0AB1x_xyz12,5,15,val\n"  # the same clip as in train
)
KINETICS_TEST = "youtube_id,time_start,time_end,split\n--65_UAU7ao,0,10,test\n"  # no label column


def test_kinetics_flat_lists_classes_duplicates_and_unlabelled_test(tmp_path):
    train = _write(tmp_path / "train.csv", KINETICS_TRAIN)
    val = _write(tmp_path / "val.csv", KINETICS_VAL)
    test = _write(tmp_path / "test.csv", KINETICS_TEST)
    out = tmp_path / "lists"
    r = train_cli("lists", "kinetics", train, val, out, "--test", test)
    classes = ["abseiling", "café au lait", "passing American football (in game)", "跳舞"]
    assert _read(out, "kinetics4_classes.txt") == "".join(f"{c}\n" for c in classes)
    assert _read(out, "kinetics4_train.txt") == (
        "--07WQ2iBlw_000001_000011 0\n-0A8ngNVpl0_000014_000024 1\n-3B32lodo2M_000059_000069 0\n"
        "-3B32lodo2M_000200_000210 3\n0AB1x_xyz12_000005_000015 2\n")
    assert _read(out, "kinetics4_val.txt") == (
        "--07WQ2iBlw_000001_000011 3\nzzz_9999999_000003_000013 0\n0AB1x_xyz12_000005_000015 2\n")
    assert not (out / "kinetics4_test.txt").exists()
    assert "test.csv: no 'label' column (an unlabelled test set): no test list written" in r.output
    assert ("warning: 2 videos are in both train and val (the first: '--07WQ2iBlw_000001_000011'); "
            "kept in both") in r.output
    assert "train: 5 listed\n" in r.output and "val: 3 listed\n" in r.output
    # read back by the list readers, with the right classes
    names = read_classes(out / "kinetics4_classes.txt")
    assert names == classes
    assert [(x.video_id, names[x.label]) for x in read_list(out / "kinetics4_train.txt")][1] == (
        "-0A8ngNVpl0_000014_000024", "café au lait")


def test_kinetics_by_label_with_videos_reports_missing(tmp_path):
    train = _write(tmp_path / "train.csv", KINETICS_TRAIN)
    val = _write(tmp_path / "val.csv", KINETICS_VAL)
    videos = tmp_path / "videos"
    _touch(videos, "abseiling/--07WQ2iBlw_000001_000011.mp4", "café au lait/-0A8ngNVpl0_000014_000024.mkv",
           "跳舞/-3B32lodo2M_000200_000210.mp4", "跳舞/--07WQ2iBlw_000001_000011.webm",
           "abseiling/notes.txt")
    out = tmp_path / "lists"
    r = train_cli("lists", "kinetics", train, val, out, "--layout", "by-label", "--videos", videos,
                  "--name", "k")
    assert _read(out, "k_train.txt") == (
        "abseiling/--07WQ2iBlw_000001_000011 0\ncafé au lait/-0A8ngNVpl0_000014_000024 1\n"
        "跳舞/-3B32lodo2M_000200_000210 3\n")
    assert _read(out, "k_val.txt") == "跳舞/--07WQ2iBlw_000001_000011 3\n"
    assert _read(out, "k_train_missing.txt") == (
        "abseiling/-3B32lodo2M_000059_000069\n"
        "passing American football (in game)/0AB1x_xyz12_000005_000015\n")
    assert "train: 3 listed, 2 missing (40.0%)\n" in r.output
    assert "val: 1 listed, 2 missing (66.7%)\n" in r.output
    # the same clip in two class folders of two splits is still one clip in both
    assert "warning: 1 video is in both train and val" in r.output
    lines = read_list(out / "k_train.txt", {"abseiling/--07WQ2iBlw_000001_000011",
                                            "café au lait/-0A8ngNVpl0_000014_000024",
                                            "跳舞/-3B32lodo2M_000200_000210"})
    assert lines[1] == Record("café au lait/-0A8ngNVpl0_000014_000024", 1)

    # torchvision's folder names: spaces as '_', ' ( ) dropped
    _touch(videos, "passing_American_football_in_game/0AB1x_xyz12_000005_000015.mp4")
    train_cli("lists", "kinetics", train, val, out, "--layout", "by-label-torchvision",
              "--videos", videos, "--name", "tv")
    assert _read(out, "tv_val.txt") == ("跳舞/--07WQ2iBlw_000001_000011 3\n"
                                        "passing_American_football_in_game/0AB1x_xyz12_000005_000015 2\n")
    # a layout matching nothing is an error, not empty lists
    r = train_cli("lists", "kinetics", train, val, out, "--videos", videos, expect=1)
    assert r.output.count("\n") == 1
    assert "train.csv: none of its 5 videos is among the videos under" in r.output


def test_kinetics_duplicate_rows_and_malformed_lines(tmp_path):
    val = _write(tmp_path / "val.csv", KINETICS_VAL)
    train = _write(tmp_path / "train.csv", KINETICS_TRAIN + "abseiling,--07WQ2iBlw,1,11,train,0\n")
    r = train_cli("lists", "kinetics", train, val, tmp_path / "o")
    assert ("train.csv: 1 video is listed twice (the first: '--07WQ2iBlw_000001_000011', line 7, "
            "as on line 2); kept the first listing") in r.output
    assert _read(tmp_path / "o", "kinetics4_train.txt").count("--07WQ2iBlw") == 1
    for text, why in [
            (KINETICS_TRAIN + "abseiling,abc,1,eleven,train,0\n", "train.csv:7: time_end 'eleven' is not a number"),
            (KINETICS_TRAIN + "abseiling,abc,1,11\n", "train.csv:7: expected 6 fields"),
            ("youtube_id,start,end\nabc,1,2\n", "train.csv:1: expected a header naming label,youtube_id"),
            (KINETICS_TEST, "train.csv: no 'label' column")]:
        _write(train, text)
        r = train_cli("lists", "kinetics", train, val, tmp_path / "o", expect=1)
        assert r.output.startswith("Error: ") and r.output.count("\n") == 1 and why in r.output, r.output
    _write(train, KINETICS_TRAIN)
    _write(val, KINETICS_VAL + "dancing,abc,1,11,val\n")
    r = train_cli("lists", "kinetics", train, val, tmp_path / "o", expect=1)
    assert "val.csv:5: label 'dancing' is not a class of" in r.output


# --- Something-Something v2 ---------------------------------------------------------------------

SSV2_LABELS = {"Approaching something with your camera": "0",
               "Holding something next to something": "1",
               "Putting something into something": "2"}


def _ssv2(folder, train=None, val=None, labels=None):
    _write(folder / "labels.json", json.dumps(labels or SSV2_LABELS, indent=1))
    _write(folder / "train.json", json.dumps(train or [
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "42326", "label": "approaching a café with your camera",
         "template": "Approaching [something] with your camera", "placeholders": ["a café"]}]))
    _write(folder / "validation.json", json.dumps(val or [
        {"id": "74225", "label": "putting 咖啡 into a cup", "template": "Putting [something] into [something]",
         "placeholders": ["咖啡", "a cup"]}], ensure_ascii=False))
    _write(folder / "test.json", json.dumps([{"id": "1420"}]))


def test_ssv2_strips_brackets_and_skips_test(tmp_path):
    _ssv2(tmp_path / "labels")
    out = tmp_path / "lists"
    r = train_cli("lists", "ssv2", tmp_path / "labels", out)
    assert _read(out, "ssv2_train.txt") == "78687 1\n42326 0\n"
    assert _read(out, "ssv2_val.txt") == "74225 2\n"
    assert read_classes(out / "ssv2_classes.txt") == list(SSV2_LABELS)
    assert read_list(out / "ssv2_val.txt") == [Record("74225", 2)]
    assert "test.json: the test set has no labels: no test list written" in r.output


def test_ssv2_malformed(tmp_path):
    folder = tmp_path / "labels"
    _ssv2(folder, val=[{"id": "1", "template": "Juggling [something]"}])
    r = train_cli("lists", "ssv2", folder, tmp_path / "o", expect=1)
    assert ("validation.json: video 1 (id '1'): template 'Juggling [something]' (without brackets "
            "'Juggling something') is not in") in r.output and r.output.count("\n") == 1
    _write(folder / "train.json", '[{"id": "1",\n "template": }]')
    r = train_cli("lists", "ssv2", folder, tmp_path / "o", expect=1)
    assert "train.json:2: not valid JSON" in r.output and r.output.count("\n") == 1
    _ssv2(folder, labels={"A": "0", "B": "2"})
    r = train_cli("lists", "ssv2", folder, tmp_path / "o", expect=1)
    assert "labels.json: the indices are not 0..1: 1 is missing" in r.output


# --- ActivityNet ----------------------------------------------------------------------------------

def _anet(path, database, version="VERSION 1.3"):
    return _write(path, json.dumps({"version": version, "taxonomy": [{"nodeName": "Root"}],
                                    "database": database}, ensure_ascii=False))


def _video(subset, *annotations):
    return {"subset": subset, "duration": 82.73, "resolution": "1280x720",
            "url": "https://www.youtube.com/watch?v=x",
            "annotations": [{"segment": list(seg), "label": label} for seg, label in annotations]}


ANET = {
    "sJFgo9H6zNo": _video("training", ((12.3, 45.6), "Mowing the lawn")),
    "-kWMnmcRTm8": _video("training", ((50.0, 60.0), "Préparer un café"), ((3.0, 9.5), "Mowing the lawn"),
                          ((70.0, 75.0), "Préparer un café")),           # two labels, one repeated
    "V1dbbtJGczo": _video("validation", ((1.0, 2.0), "Zumba"), ((5.0, 6.0), "Zumba")),  # repeated label
    "a3kJ2XkxJmc": _video("validation", ((9.0, 20.0), "Zumba"), ((4.0, 8.0), "Préparer un café")),
    "zz_testing1": {"subset": "testing", "duration": 10.0, "annotations": []},
}


def test_activitynet_multilabel_lists(tmp_path):
    js = _anet(tmp_path / "activity_net.v1-3.min.json", ANET)
    out = tmp_path / "lists"
    r = train_cli("lists", "activitynet", js, out)
    assert _read(out, "activitynet13_classes.txt") == "Mowing the lawn\nPréparer un café\nZumba\n"
    assert _read(out, "activitynet13_train_labels.txt") == "v_sJFgo9H6zNo 0\nv_-kWMnmcRTm8 0,1\n"
    assert _read(out, "activitynet13_train.txt") == "v_sJFgo9H6zNo 0\nv_-kWMnmcRTm8 0\n"  # earliest segment
    assert _read(out, "activitynet13_val_labels.txt") == "v_V1dbbtJGczo 2\nv_a3kJ2XkxJmc 1,2\n"
    assert _read(out, "activitynet13_val.txt") == "v_V1dbbtJGczo 2\nv_a3kJ2XkxJmc 1\n"
    assert "testing: 1 video not listed" in r.output
    assert "val: 2 listed (1 with several labels, 0 background)" in r.output
    assert read_multilabel_list(out / "activitynet13_val_labels.txt") == [
        MultiRecord("v_V1dbbtJGczo", (2,)), MultiRecord("v_a3kJ2XkxJmc", (1, 2))]
    assert read_classes(out / "activitynet13_classes.txt")[1] == "Préparer un café"


def test_activitynet_prefix_videos_and_errors(tmp_path):
    js = _anet(tmp_path / "a.json", ANET, version="VERSION 1.2")
    videos = tmp_path / "videos"
    _touch(videos, "sJFgo9H6zNo.mp4", "V1dbbtJGczo.mkv", "a3kJ2XkxJmc.webm")
    out = tmp_path / "lists"
    r = train_cli("lists", "activitynet", js, out, "--prefix", "", "--videos", videos)
    assert _read(out, "activitynet12_train_labels.txt") == "sJFgo9H6zNo 0\n"
    assert _read(out, "activitynet12_train_missing.txt") == "-kWMnmcRTm8\n"
    assert "train: 1 listed, 1 missing (50.0%) (0 with several labels, 0 background)" in r.output
    bad = dict(ANET, x={"subset": "training", "annotations": [{"segment": [1, 2]}]})
    _anet(js, bad)
    r = train_cli("lists", "activitynet", js, out, expect=1)
    assert "a.json: database['x']: annotation 1 has no 'label'" in r.output and r.output.count("\n") == 1
    _write(js, '{"database": {"x": {"subset": "training",\n "annotations": [}}}')
    r = train_cli("lists", "activitynet", js, out, expect=1)
    assert "a.json:2: not valid JSON" in r.output


# --- THUMOS14 ---------------------------------------------------------------------------------

def _thumos(root):
    index = _write(root / "Class Index_Detection.txt", "7 BaseballPitch\r\n22 CliffDiving\r\n26 Diving\r\n")
    ann = root / "annotation"
    _write(ann / "BaseballPitch_val.txt", "video_validation_0000051 67.5 75.9\nvideo_validation_0000051 80.1 82.0\n")
    _write(ann / "CliffDiving_val.txt", "video_validation_0000052 3.1 5.0 \n")
    _write(ann / "Diving_val.txt", "video_validation_0000052 3.1 5.0\nvideo_validation_0000053 1.0 2.0\n")
    _write(ann / "Ambiguous_val.txt", "video_validation_0000051 66.0 67.5\n")
    test = root / "test_annotation"
    _write(test / "Diving_test.txt", "video_test_0000004 9.0 10.0\nvideo_test_0000004 0.2 1.1\n")
    _write(test / "BaseballPitch_test.txt", "video_test_0000007 5.0 6.0\n")
    _write(test / "CliffDiving_test.txt", "video_test_0000004 4.0 5.0\n")
    return index, ann, test


def test_thumos14_background_videos_and_class_order(tmp_path):
    index, ann, test = _thumos(tmp_path)
    videos = tmp_path / "validation"
    _touch(videos, *(f"video_validation_00000{n}.mp4" for n in (50, 51, 52, 53)), "readme.txt")
    ids = _write(tmp_path / "test_ids.txt", "video_test_0000001.mp4\nvideo_test_0000004\nvideo_test_0000007\n")
    out = tmp_path / "lists"
    r = train_cli("lists", "thumos14", index, ann, test, out, "--videos", videos, "--all-ids", ids)
    assert _read(out, "thumos14_classes.txt") == "BaseballPitch\nCliffDiving\nDiving\n"
    assert _read(out, "thumos14_val_labels.txt") == (
        "video_validation_0000050 -\nvideo_validation_0000051 0\nvideo_validation_0000052 1,2\n"
        "video_validation_0000053 2\n")
    assert _read(out, "thumos14_val.txt") == (
        "video_validation_0000050 0\nvideo_validation_0000051 0\nvideo_validation_0000052 1\n"
        "video_validation_0000053 2\n")
    assert _read(out, "thumos14_test_labels.txt") == (
        "video_test_0000001 -\nvideo_test_0000004 1,2\nvideo_test_0000007 0\n")
    assert _read(out, "thumos14_test.txt") == (   # video 4: Diving at 0.2 s comes first
        "video_test_0000001 0\nvideo_test_0000004 2\nvideo_test_0000007 0\n")
    assert "Ambiguous_val.txt: ignored (not a class" in r.output
    assert "classes 0..2 are" in r.output and "(7 BaseballPitch -> 0, ..., 26 Diving -> 2)" in r.output
    assert "val: 4 listed, 0 missing (0.0%) (1 with several labels, 1 background)" in r.output
    assert read_multilabel_list(out / "thumos14_val_labels.txt")[0] == MultiRecord("video_validation_0000050", ())
    assert read_list(out / "thumos14_test.txt")[1] == Record("video_test_0000004", 2)


def test_thumos14_annotated_only_and_errors(tmp_path):
    index, ann, test = _thumos(tmp_path)
    out = tmp_path / "lists"
    r = train_cli("lists", "thumos14", index, ann, out)
    assert _read(out, "thumos14_val_labels.txt") == (
        "video_validation_0000051 0\nvideo_validation_0000052 1,2\nvideo_validation_0000053 2\n")
    assert not (out / "thumos14_test.txt").exists()
    assert "val: only the annotated videos are listed, no background videos" in r.output
    _write(ann / "Diving_val.txt", "video_validation_0000052 3.1 5.0\nvideo_test_0000053 1.0 2.0\n")
    r = train_cli("lists", "thumos14", index, ann, out, expect=1)
    assert r.output.count("\n") == 1 and "Diving_val.txt:2: expected 'video_validation_0000051" in r.output
    _write(ann / "Diving_val.txt", "video_validation_0000052 3.1 five\n")
    r = train_cli("lists", "thumos14", index, ann, out, expect=1)
    assert "Diving_val.txt:1: end 'five' is not a number of seconds" in r.output
    _write(ann / "Diving_val.txt", "")
    _write(ann / "Juggling_val.txt", "video_validation_0000052 3.1 5.0\n")
    r = train_cli("lists", "thumos14", index, ann, out, expect=1)
    assert "Juggling_val.txt: class 'Juggling' (from the file name) is not in" in r.output
    _write(index, "7 BaseballPitch\nCliffDiving\n")
    r = train_cli("lists", "thumos14", index, ann, out, expect=1)
    assert "Class Index_Detection.txt:2: expected 'index ClassName'" in r.output
    r = train_cli("lists", "thumos14", index, out, expect=2)   # no annotations given
