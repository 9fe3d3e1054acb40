"""Every name is a video or a recorded failure, whatever its bytes (issue 38, items 3 and 6): file
names that are not UTF-8 or hold a line break, failures recorded with absolute sources, images
that do not decode, class files read like lists, and --resume refusing other classes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tsn_core.text import shown
from tsn_core.store import Store
from tsn_prep.writer import ShardWriter

from .conftest import DATA, VIDEOS, cli, cli_subprocess, train_cli

LATIN1 = os.fsdecode(b"caf\xe9")  # a file name of Latin-1 bytes, as Python holds it


@pytest.fixture()
def odd_names(tmp_path) -> Path:
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(VIDEOS / "carphone.mp4", videos / "good.mp4")
    shutil.copy(VIDEOS / "tree.avi", videos / "ok é.avi")  # UTF-8 with a space: a video
    for name in (f"{LATIN1}.avi", "new\nline.avi", "pi|pe.avi"):
        shutil.copy(VIDEOS / "tree.avi", videos / name)
    return videos


def test_names_of_any_bytes_are_failures_named_on_one_line_and_the_others_finish(odd_names, tmp_path):
    out = tmp_path / "out"
    r = cli_subprocess("extract-frames", odd_names, out, "--max-frames", "3", "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(errors) == sorted([
        f"error: {odd_names}/caf\\xe9.avi: the name is not valid UTF-8 (its id caf\\xe9 shows the "
        "other bytes as \\xNN); rename it",
        f"error: {odd_names}/new\\nline.avi: video id new\\nline holds '|' or a line break, which "
        "the store reserves; rename it",
        f"error: {odd_names}/pi|pe.avi: video id pi|pe holds '|' or a line break, which the store "
        "reserves; rename it"])
    assert "2 extracted, 0 already complete, 3 failed, of 5 videos" in r.stderr
    assert Store(out).videos("rgb") == ["good", "ok é"]

    failures = {f["video_id"]: f for f in json.loads(cli("info", out, "--json").output)["failures"]}
    assert set(failures) == {LATIN1, "new\nline", "pi|pe"}  # the ids themselves, round-tripped
    assert failures[LATIN1]["source"] == str(odd_names / f"{LATIN1}.avi")  # absolute
    text = cli("info", out).output
    assert f"  {odd_names}/caf\\xe9.avi [rgb]: the name is not valid UTF-8" in text
    assert f"  {odd_names}/new\\nline.avi [rgb]: video id new\\nline" in text
    v = cli_subprocess("verify", out, "--quiet")
    assert v.returncode == 3, v.stderr
    assert len([line for line in v.stderr.splitlines() if line.startswith("failed extraction: ")]) == 3

    # fixed by renaming: the re-run extracts it; the record of the old name stays until cleared
    os.rename(odd_names / "new\nline.avi", odd_names / "newline.avi")
    r = cli("extract-frames", odd_names, out, "--max-frames", "3", "--quiet", expect=1)
    assert "1 extracted, 2 already complete, 2 failed" in r.stderr
    r = cli("clear-failures", out, "--gone")
    assert "1 failure record(s) forgotten, 2 left" in r.output
    assert "forgot: new\\nline [rgb]" in r.stderr


def test_clear_failures_gone_means_gone_from_anywhere(tmp_path, monkeypatch):
    videos = tmp_path / "data" / "videos"
    videos.mkdir(parents=True)
    (videos / "broken.mp4").write_bytes(b"not a video")
    shutil.copy(VIDEOS / "carphone.mp4", videos / "good.mp4")
    monkeypatch.chdir(tmp_path / "data")
    cli("extract-frames", "videos", "out", "--max-frames", "2", "--quiet", expect=1)  # relative paths
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    store = tmp_path / "data" / "out"
    r = cli("clear-failures", store, "--gone")  # the video still exists: nothing forgotten
    assert "0 failure record(s) forgotten, 1 left" in r.output
    v = cli("verify", store, "--quiet", expect=3)
    assert "the source is gone" not in v.stderr
    (videos / "broken.mp4").unlink()
    r = cli("clear-failures", store, "--gone")
    assert "1 failure record(s) forgotten, 0 left" in r.output


def test_gone_refuses_a_relative_source_written_by_an_older_version(tmp_path):
    out = tmp_path / "out"
    writer = ShardWriter(out)
    writer.put_failure("old", "rgb", "videos/old.mp4", "OpenCV failed")  # as older versions wrote
    writer.close()
    r = cli("clear-failures", out, "--gone", expect=1)
    assert r.stderr.strip().splitlines()[-1] == (
        "error: 1 failure record(s) name their source relative to the folder their extraction ran "
        "in (e.g. videos/old.mp4), which tsn-prep did not record before it recorded absolute "
        "paths: --gone cannot tell whether they still exist; forget them by id, or with --all")
    assert cli("clear-failures", out, "old").exit_code == 0


def test_import_frames_records_a_folder_whose_image_does_not_decode(tmp_path):
    frames = DATA / "tsn_frames"
    tree = tmp_path / "frames"
    for name, count in (("ok", 3), ("empty_jpeg", 3), ("truncated", 3)):
        (tree / name).mkdir(parents=True)
        for i in range(1, count + 1):
            shutil.copy(frames / f"img_{i:05d}.jpg", tree / name / f"img_{i:05d}.jpg")
    (tree / "empty_jpeg" / "img_00002.jpg").write_bytes(b"")
    (tree / "truncated" / "img_00003.jpg").write_bytes((frames / "img_00003.jpg").read_bytes()[:100])
    (tree / LATIN1).mkdir()
    shutil.copy(frames / "img_00001.jpg", tree / LATIN1 / "img_00001.jpg")
    r = cli_subprocess("import-frames", tree, tmp_path / "out", "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"error: {tree}/empty_jpeg: img_00002.jpg does not decode as an image" in r.stderr
    assert f"error: {tree}/caf\\xe9: the name is not valid UTF-8" in r.stderr
    assert "imported 1 videos, 3 failed" in r.stderr
    s = Store(tmp_path / "out")
    assert s.videos("rgb") == ["ok"]
    assert {f.video_id for f in s.failures()} == {"empty_jpeg", "truncated", LATIN1}
    assert all(os.path.isabs(f.source) for f in s.failures())


def test_a_class_file_is_read_like_a_list(train_store, tmp_path):
    lst = train_store.parent / "train.txt"
    latin = tmp_path / "classes.txt"
    latin.write_bytes(b"a\nb\ncaf\xe9\nd\ne\n")
    r = train_cli("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst,
                  "--classes", latin, "--out", tmp_path / "run", expect=1)
    assert r.output.strip() == f"Error: {latin}:3: not UTF-8 (byte 0xe9: invalid continuation byte)"
    twice = tmp_path / "twice.txt"
    twice.write_text("a\nb\n a \nd\ne\n")
    r = train_cli("fit", "--modality", "rgb", "--store", train_store, "--train-list", lst,
                  "--classes", twice, "--out", tmp_path / "run", expect=1)
    assert r.output.strip() == (f"Error: {twice}:3: class 'a' again (line 1 names it too): each "
                                "label needs a name of its own")


def test_resume_refuses_other_classes_or_another_order(train_store, tmp_path):
    lst = train_store.parent / "train.txt"
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\nc\nd\ne\n")
    args = ["fit", "--modality", "rgb", "--store", train_store, "--train-list", lst, "--out",
            tmp_path / "run", "--arch", "resnet18", "--epochs", "2", "--max-steps", "1",
            "--batch-size", "5", "--accumulate", "1", "--workers", "0", "--segments", "1",
            "--input-size", "32", "--device", "cpu", "--log-every", "0"]
    train_cli(*args, "--classes", classes, "--epochs", "1")
    ckpt = tmp_path / "run" / "last.pt"
    classes.write_text("b\na\nc\nd\ne\n")
    r = train_cli(*args, "--classes", classes, "--resume", expect=1)
    assert r.output.strip() == (
        f"Error: {ckpt} was trained on other classes than the class file {classes} give (the same "
        "names in another order: label 0 is 'a' in the checkpoint, 'b' now): --resume continues a "
        "run only with its classes in their order")
    classes.write_text("a\nb\nc\nd\ne\nf\n")
    r = train_cli(*args, "--classes", classes, "--resume", expect=1)
    assert r.output.strip() == (
        f"Error: {ckpt} was trained on 5 classes, but the class file {classes} give 6: --resume "
        "continues a run only with its own classes; train a new run (another --out) for other classes")
    classes.write_text("a\nb\nc\nd\ne\n")
    train_cli(*args, "--classes", classes, "--resume")


def test_shown_escapes_what_would_break_a_line():
    assert shown(LATIN1 + ".avi") == "caf\\xe9.avi"
    assert shown("a\nb\tc\x7f") == "a\\nb\\tc\\x7f"
    assert shown("été ok") == "été ok"
    assert shown(Path("/x") / LATIN1) == "/x/caf\\xe9"
