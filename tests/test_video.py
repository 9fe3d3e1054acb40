"""tsn_prep.video: the PyAV fallback on a file OpenCV cannot decode, and a video read from a pipe."""
import os
import threading

import av
import cv2
import numpy as np
import pytest

from tsn_prep.extract import encode_jpeg
from tsn_prep.store import Store
from tsn_prep.video import VideoReader

from .conftest import VIDEOS, cli, link_videos, read_frames

N = 12


def pyav_decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def av1_dir(tmp_path_factory):
    """A folder with clip.mkv: the first N frames of carphone as AV1 in Matroska, written by PyAV
    (SVT-AV1), beside carphone.mp4 itself.

    OpenCV's bundled FFmpeg opens the file, but its native AV1 decoder needs hardware acceleration
    and returns no frame; PyAV's FFmpeg decodes it with dav1d.
    """
    d = tmp_path_factory.mktemp("av1")
    with av.open(str(d / "clip.mkv"), "w") as out:
        stream = out.add_stream("libsvtav1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        for frame in read_frames(VIDEOS / "carphone.mp4", N):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode())
    link_videos(d, {"carphone.mp4": "carphone.mp4"})
    return d


def test_opencv_cannot_decode_the_av1_clip(av1_dir):
    """The premise of the fallback tests: if this fails, pick a codec this OpenCV lacks."""
    cap = cv2.VideoCapture(str(av1_dir / "clip.mkv"))
    ok, _ = cap.read()
    cap.release()
    assert not ok
    assert len(pyav_decode(av1_dir / "clip.mkv")) == N


def test_reader_falls_back_to_pyav(av1_dir):
    expected = pyav_decode(av1_dir / "clip.mkv")
    reader = VideoReader(av1_dir / "clip.mkv")
    frames = list(reader.frames())
    assert len(frames) == N
    for got, want in zip(frames, expected):
        np.testing.assert_array_equal(got, want)
    assert reader.info.backend == "pyav"
    assert reader.info.source_size == (176, 144) and reader.info.fps == 25.0
    assert reader.out_size == (176, 144)
    # the fallback honours --max-frames and the resize like the OpenCV path
    small = VideoReader(av1_dir / "clip.mkv", size=(112, 84), max_frames=5)
    frames = list(small.frames())
    assert len(frames) == 5 and small.info.backend == "pyav"
    for got, want in zip(frames, expected):
        np.testing.assert_array_equal(got, cv2.resize(want, (112, 84), interpolation=cv2.INTER_LINEAR))


def test_extract_frames_records_the_decoder(av1_dir, tmp_path):
    out = tmp_path / "out"
    r = cli("extract-frames", av1_dir, out, "--size", "112x84", "--quiet")
    assert "2 extracted, 0 already complete, 0 failed" in r.output
    s = Store(out)
    e = s.entry("clip", "rgb")
    assert e.meta["decoder"] == "pyav" and s.entry("carphone", "rgb").meta["decoder"] == "opencv"
    assert e.meta["count"] == e.meta["num_frames"] == N
    assert e.meta["source_size"] == [176, 144] and e.meta["stored_size"] == [112, 84]
    expected = pyav_decode(av1_dir / "clip.mkv")
    for i, frame in enumerate(expected):  # the same bytes as encoding PyAV's own decode
        resized = cv2.resize(frame, (112, 84), interpolation=cv2.INTER_LINEAR)
        assert s.get("clip", "img", i) == encode_jpeg(resized, 95)


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
