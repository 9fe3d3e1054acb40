"""Runs that used to be silently wrong: other settings over a store, half a video, an id too long
for LMDB, a video the store refuses, a failure whose video is gone, two writers of one shard."""
import json
import shutil
from fractions import Fraction
import subprocess

import av
import pytest

import tsn_core.store.keys
from tsn_core.store import Store
from tsn_core.store.keys import MAX_KEY_ID_BYTES
from tsn_prep.writer import ShardWriter

from .conftest import VIDEOS, cli, decode, start_cli


def small_videos(dest, **clips):
    dest.mkdir(parents=True, exist_ok=True)
    for name, clip in clips.items():
        shutil.copy(VIDEOS / clip, dest / name)
    return dest


def test_other_settings_stop_the_run_and_recompute_replaces_atomically(tmp_path):
    videos = small_videos(tmp_path / "v", **{"car.mp4": "carphone.mp4", "tree.avi": "tree.avi"})
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 3, "--size", "64x48", "--quiet")
    before = {v: Store(out).read(v, "img", [0, 1, 2]) for v in ("car", "tree")}

    r = cli("extract-frames", videos, out, "--max-frames", 3, "--size", "32x24", "--quiet", expect=1)
    assert r.output.splitlines() == [
        f"Error: {out}: 2 stored video entries are of other settings than this command's, so this "
        "run would not make them:",
        "  size: stored [64, 48], asked [32, 24]: car [rgb], tree [rgb]",
        "Extract into a new OUT, or add --recompute to replace those videos (each one atomically, "
        "once its new images are complete)."]
    assert {v: Store(out).read(v, "img", [0, 1, 2]) for v in ("car", "tree")} == before  # untouched

    # fewer frames and another size: the new entry replaces the old, and no image of it is left
    r = cli("extract-frames", videos, out, "--max-frames", 2, "--size", "32x24", "--recompute", "--quiet")
    assert "2 extracted, 0 already complete, 0 failed, of 2 videos in this shard, 2 entries replaced" in r.stderr
    store = Store(out)
    assert [store.entry(v, "rgb").meta.count for v in ("car", "tree")] == [2, 2]
    assert decode(store.get("car", "img", 1)).shape == (24, 32, 3)
    with pytest.raises(KeyError):
        store.read("car", "img", [2])
    assert cli("verify", out, "--quiet").stdout.endswith(": OK\n")  # counts, checksums, no orphans
    r = cli("extract-frames", videos, out, "--max-frames", 2, "--size", "32x24", "--quiet")
    assert "0 extracted, 2 already complete" in r.stderr  # the same settings again: nothing to do


def _vfr_mkv(path):
    """12 real frames at irregular times (a variable frame rate): OpenCV's frame count for it is
    its duration times the highest rate, 73."""
    with av.open(str(VIDEOS / "carphone.mp4")) as src:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(12), src.decode(video=0))]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for pts, image in zip([0, 33, 66, 100, 500, 900, 933, 966, 1500, 2000, 2033, 2400], frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, stream.time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def test_half_a_video_is_a_warning_counted_everywhere_and_strict_makes_it_a_failure(tmp_path):
    videos = tmp_path / "v"
    videos.mkdir()
    whole = (VIDEOS / "eyemakeup_ucf101like.avi").read_bytes()
    (videos / "half.avi").write_bytes(whole[:len(whole) // 2])  # 164 frames, 6.56 s, cut in half
    _vfr_mkv(videos / "vfr.mkv")
    out = tmp_path / "out"
    r = cli("extract-frames", videos, out, "--size", "32x24", "--quiet")
    warning = "decoded 77 frames, up to 3.08 s of the 6.56 s the container declares: the file looks truncated"
    assert f"warning: {videos / 'half.avi'}: {warning} (stored; --strict makes this a failure)" in r.stderr
    assert "2 extracted (1 with warnings), 0 already complete, 0 failed" in r.stderr
    store = Store(out)
    assert store.entry("half", "rgb").meta.warning == warning
    assert store.entry("vfr", "rgb").meta.count == 12 and store.entry("vfr", "rgb").meta.warning is None
    assert json.loads(cli("info", out, "--json").stdout)["warnings"] == [
        {"video_id": "half", "modality": "rgb", "warning": warning}]
    v = cli("verify", out, "--quiet", expect=4)
    assert v.stdout.endswith("0 recorded failures, 1 stored with warnings: WARNINGS RECORDED, no damage\n")
    assert f"warning: half [rgb]: {warning}" in v.stderr

    strict = tmp_path / "strict"
    r = cli("extract-frames", videos, strict, "--size", "32x24", "--strict", "--quiet", expect=1)
    assert f"error: {videos / 'half.avi'}: {warning} (--strict: not stored)" in r.stderr
    assert Store(strict).videos("rgb") == ["vfr"]
    assert cli("verify", strict, "--quiet", expect=3).stdout.endswith("FAILURES RECORDED, no damage\n")


def test_an_id_too_long_for_an_lmdb_key_is_stored_under_a_short_form(tmp_path):
    videos = tmp_path / "v"
    deep = videos / ("d" * 200) / ("é" * 100) / ("x" * 200)  # 602 bytes with the file name
    deep.mkdir(parents=True)
    shutil.copy(VIDEOS / "carphone.mp4", deep / "car.mp4")
    shutil.copy(VIDEOS / "tree.avi", deep / "car.avi.mp4")  # the same first 354 bytes of key
    shutil.copy(VIDEOS / "tree.avi", videos / "tree.avi")
    long_id = f"{'d' * 200}/{'é' * 100}/{'x' * 200}/car"
    assert len(long_id.encode()) > 511 > MAX_KEY_ID_BYTES
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 3, "--size", "32x24", "--quiet")
    store = Store(out)
    assert store.videos("rgb") == sorted([long_id, long_id + ".avi", "tree"])
    assert store.read(long_id, "img", [0, 1, 2]) != store.read(long_id + ".avi", "img", [0, 1, 2])
    assert long_id in cli("info", out, "--videos").stdout
    assert cli("verify", out, "--quiet").stdout.endswith("3 entries checked, 0 problems, 0 recorded failures: OK\n")
    assert "0 extracted, 3 already complete" in cli("extract-frames", videos, out, "--max-frames", 3,
                                                    "--size", "32x24", "--quiet").stderr


def test_a_video_the_store_refuses_fails_alone(tmp_path, monkeypatch):
    # Keys of a 503-byte id: LMDB takes its failure record (507 bytes) but refuses its image keys
    # (514 > 511 bytes) when ids are not shortened: the real MDB_BAD_VALSIZE of such a video.
    monkeypatch.setattr(tsn_core.store.keys, "MAX_KEY_ID_BYTES", 1000)
    videos = tmp_path / "v"
    name = "n" * 250 + "/" + "o" * 100 + "/" + "m" * 151  # 503 bytes
    small_videos(videos / name.rsplit("/", 1)[0], **{name.rsplit("/", 1)[1] + ".mp4": "carphone.mp4"})
    small_videos(videos, **{"a.mp4": "carphone.mp4", "z.avi": "tree.avi"})
    assert len(name.encode()) + len("|img|000000") > 511 >= len(name.encode()) + len("|rgb")
    r = cli("extract-frames", videos, tmp_path / "out", "--max-frames", 2, "--size", "32x24", "--quiet",
            expect=1)
    assert f"error: {videos / name}.mp4: could not be stored (BadValsizeError: " in r.stderr
    assert "2 extracted, 0 already complete, 1 failed, of 3 videos" in r.stderr
    store = Store(tmp_path / "out")
    assert store.videos("rgb") == ["a", "z"]
    assert [f.video_id for f in store.failures()] == [name]


def test_failures_of_deleted_videos_can_be_forgotten(tmp_path):
    videos = small_videos(tmp_path / "v", **{"car.mp4": "carphone.mp4"})
    (videos / "junk.mp4").write_bytes(b"not a video" * 100)
    (videos / "junk2.avi").write_bytes(b"nor this" * 100)
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 2, "--quiet", expect=1)
    (videos / "junk.mp4").unlink()  # removed from the dataset: it will never be extracted
    v = cli("verify", out, "--quiet", expect=3)
    assert (f"failed extraction: {videos / 'junk.mp4'} [rgb]: not a readable video") in v.stderr
    assert f"(the source is gone: `tsn-prep clear-failures {out} --gone` forgets such records)" in v.stderr
    r = cli("clear-failures", out, "--gone")
    assert r.stdout == f"1 failure record(s) forgotten, 1 left in {out}\n"
    assert [f.video_id for f in Store(out).failures()] == ["junk2"]
    r = cli("clear-failures", out, "junk2", "nothing/here", expect=1)
    assert "no failure is recorded for nothing/here" in r.stderr
    assert Store(out).failures() == []
    assert cli("verify", out, "--quiet").stdout.endswith(": OK\n")
    assert Store(out).videos("rgb") == ["car"]


def test_a_second_writer_of_a_shard_waits_and_skips_what_the_first_stored(tmp_path):
    videos = small_videos(tmp_path / "v", **{"car.mp4": "carphone.mp4"})
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 2, "--quiet")
    first = ShardWriter(out)  # another writer of shard 0, holding it
    second = start_cli("extract-frames", videos, out, "--max-frames", "2", "--quiet", stdout=None,
                       stderr=subprocess.PIPE, text=True)
    try:
        line = second.stderr.readline()  # blocks until the second one says why it waits
        assert line.endswith("another process is writing this shard (a second tsn-prep run with the "
                             "same OUT and shard?); waiting for it to finish, then the videos it "
                             "stored are skipped\n")
        assert second.poll() is None  # still waiting
    finally:
        first.close()
    rest = second.communicate(timeout=60)[1]
    assert second.returncode == 0
    assert "0 extracted, 1 already complete" in rest
