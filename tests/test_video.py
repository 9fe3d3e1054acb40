"""tsn_prep.video: the decoders (OpenCV's FFmpeg, PyAV's) and their order, the fallback when
OpenCV cannot read a file, and a video read from a pipe.

No test relies on which codecs an OpenCV or PyAV release happens to decode: "OpenCV cannot read
this" is made so, by ``decoders`` or by OpenCV's own switch that turns off its FFmpeg backend.
"""
import os
import re
import subprocess
import sys
import threading

import av
import cv2
import numpy as np
import pytest

from tsn_core.codec import encode_jpeg
from tsn_core.store import Store
from tsn_prep.video import VideoError, VideoReader, parse_decoders

from .conftest import VIDEOS, cli, cli_subprocess, link_videos, read_frames

# H.264 in MP4 and Cinepak in AVI: two codecs and containers
CLIPS = ("carphone.mp4", "tree.avi")


def pyav_decode(path) -> list[np.ndarray]:
    """Every frame as PyAV decodes it, independently of VideoReader."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.mark.parametrize("clip", CLIPS)
def test_pyav_alone_decodes_a_real_file_frame_by_frame(clip):
    """``decoders=("pyav",)`` is the condition "OpenCV cannot read this file", made deterministic:
    whatever codecs the installed OpenCV has, PyAV decodes and the reader says so."""
    path = VIDEOS / clip
    expected = pyav_decode(path)
    reader = VideoReader(path, decoders=("pyav",))
    frames = list(reader.frames())
    assert reader.info.backend == "pyav" and reader.decoders == ("pyav",)
    assert len(frames) == len(expected) > 50
    for got, want in zip(frames, expected):
        np.testing.assert_array_equal(got, want)
    h, w = expected[0].shape[:2]
    assert reader.info.source_size == reader.out_size == (w, h)
    # the same pictures in the same order as OpenCV's decode: each frame matches its own index
    # (colour conversions may round differently), and matches it better than its neighbour
    cv_frames = read_frames(path, len(expected) + 5)
    assert len(cv_frames) == len(expected)
    own = [np.abs(a.astype(int) - b).mean() for a, b in zip(frames, cv_frames)]
    nxt = [np.abs(a.astype(int) - b).mean() for a, b in zip(frames, cv_frames[1:])]
    assert max(own) <= 1.0 and all(o < n for o, n in zip(own, nxt))
    # it honours --max-frames and the resize like the OpenCV path
    small = VideoReader(path, size=(112, 84), max_frames=5, decoders=("pyav",))
    frames = list(small.frames())
    assert len(frames) == 5 and small.info.backend == "pyav"
    for got, want in zip(frames, expected):
        np.testing.assert_array_equal(got, cv2.resize(want, (112, 84), interpolation=cv2.INTER_LINEAR))


def test_decoders_are_tried_in_the_order_given():
    path = VIDEOS / "carphone.mp4"
    for decoders, used in [(None, "opencv"), (("opencv",), "opencv"), (("pyav", "opencv"), "pyav"),
                           ("pyav,opencv", "pyav"), (" OpenCV , pyav ", "opencv")]:
        reader = VideoReader(path, max_frames=2) if decoders is None else \
            VideoReader(path, max_frames=2, decoders=decoders)
        assert len(list(reader.frames())) == 2 and reader.info.backend == used, decoders
    assert parse_decoders("pyav,pyav,opencv") == ("pyav", "opencv")
    for bad in ("", "ffmpeg", "opencv,gstreamer", ","):
        with pytest.raises(ValueError, match="decoders must be one or more of opencv, pyav"):
            VideoReader(path, decoders=bad)


def test_a_file_no_decoder_reads_says_why(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"\x00\x01 not a video " * 100)
    for decoders, words in [(("opencv",), "OpenCV cannot open it"),
                            (("opencv", "pyav"), "not a readable video (FFmpeg: "),
                            (("pyav", "opencv"), "OpenCV cannot open it")]:
        with pytest.raises(VideoError, match=re.escape(words)):
            list(VideoReader(bad, decoders=decoders).frames())


def test_extract_frames_honours_decoders_and_records_them(tmp_path, monkeypatch):
    videos = link_videos(tmp_path / "videos", {"carphone.mp4": "carphone.mp4", "tree.avi": "tree.avi"})
    expected = pyav_decode(VIDEOS / "carphone.mp4")
    for name, args, env in [("default", (), None), ("option", ("--decoders", "pyav"), None),
                            ("env", (), "pyav")]:
        if env:
            monkeypatch.setenv("TSN_DECODERS", env)
        out = tmp_path / name
        r = cli("extract-frames", videos, out, "--size", "112x84", "--max-frames", "8", "--quiet", *args)
        assert "2 extracted, 0 already complete, 0 failed" in r.output
        s = Store(out)
        used = "opencv" if name == "default" else "pyav"
        for vid in ("carphone", "tree"):
            assert s.entry(vid, "rgb").meta.decoder == used, (name, vid)
        e = s.entry("carphone", "rgb")
        assert e.meta.count == 8 and e.meta.source_size == (176, 144)
        assert e.meta.stored_size == (112, 84)
        for i, frame in enumerate(expected[:8]):  # the same bytes as encoding PyAV's own decode
            resized = cv2.resize(frame, (112, 84), interpolation=cv2.INTER_LINEAR)
            assert s.get("carphone", "img", i) == encode_jpeg(resized, 95)
    monkeypatch.setenv("TSN_DECODERS", "ffmpeg")
    r = cli("extract-frames", videos, tmp_path / "bad", "--quiet", expect=2)
    assert "decoders must be one or more of opencv, pyav" in r.output and "'ffmpeg'" in r.output
    assert not (tmp_path / "bad").exists()


def test_an_opencv_without_ffmpeg_falls_back_to_pyav(tmp_path):
    """The dense_flow trap: an OpenCV without its FFmpeg backend (OpenCV's documented switch
    OPENCV_VIDEOIO_PRIORITY_FFMPEG=0) opens only its own MJPEG AVIs. Every other video is
    decoded by PyAV, not stored empty; with --decoders opencv it is a failure that says why."""
    videos = link_videos(tmp_path / "videos", {"carphone.mp4": "carphone.mp4"})
    mjpg = videos / "blocks.avi"
    writer = cv2.VideoWriter(str(mjpg), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 30 * i, np.uint8))
    writer.release()
    env = dict(os.environ, OPENCV_VIDEOIO_PRIORITY_FFMPEG="0", TSN_TORCH_COMPILE="0")
    probe = subprocess.run([sys.executable, "-c", "import cv2, sys; c = cv2.VideoCapture(sys.argv[1]); "
                            "print(c.isOpened())", str(VIDEOS / "carphone.mp4")],
                           env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "False", "the premise: this OpenCV cannot open an MP4"
    out = tmp_path / "out"
    r = cli_subprocess("extract-frames", videos, out, "--size", "112x84", "--max-frames", "6",
                       "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    r = cli_subprocess("extract-flow", videos, out, "--size", "112x84", "--max-frames", "6",
                       "--backend", "torch", "--quiet", env=env)  # the batching engine's workers
    assert r.returncode == 0, r.stderr
    s = Store(out)
    for m in ("rgb", "flow"):
        assert s.entry("carphone", m).meta.decoder == "pyav", m
        assert s.entry("blocks", m).meta.decoder == "opencv", m
    assert s.entry("carphone", "rgb").meta.count == 6 and s.entry("carphone", "flow").meta.count == 5
    expected = pyav_decode(VIDEOS / "carphone.mp4")
    assert s.get("carphone", "img", 3) == encode_jpeg(
        cv2.resize(expected[3], (112, 84), interpolation=cv2.INTER_LINEAR), 95)
    r = cli_subprocess("extract-frames", videos, tmp_path / "strict", "--decoders", "opencv",
                       "--quiet", env=env)
    assert r.returncode == 1
    assert "carphone.mp4: OpenCV cannot open it" in r.stderr
    assert "1 extracted, 0 already complete, 1 failed" in r.stderr


def test_a_named_pipe_is_decoded_like_the_file(tmp_path):
    """A video streamed through a FIFO (size 0 on disk) is decoded, not called an empty file."""
    source = VIDEOS / "eyemakeup_ucf101like.avi"
    fifo = tmp_path / "stream.avi"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(source.read_bytes())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    reader = VideoReader(fifo)
    streamed = list(reader.frames())
    feeder.join(timeout=60)
    assert not feeder.is_alive()
    expected = list(VideoReader(source).frames())
    assert len(streamed) == len(expected) == 164
    assert reader.info.backend == "opencv"
    for got, want in zip(streamed, expected):
        np.testing.assert_array_equal(got, want)
