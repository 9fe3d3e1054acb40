"""RGB and RGB difference straight from video files (``--videos``): the same frame counts and
sampled frame numbers as a store of the same videos, the frames extract-frames would store before
JPEG (so the store's images are exactly those frames through its JPEG), jumps to keyframes that
change no pixel, the index cached beside the list, bad videos named, a killed run that resumes
bit for bit, and ``test`` on videos equal to ``test`` on the store within the JPEG error."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.conftest import CLIPS, REPO, VIDEOS, cli, fit_killed_at, link_videos, train_cli
from tsn_core.codec import decode_image, encode_jpeg
from tsn_core.lists import ListError, Record
from tsn_prep.video import VideoReader
from tsn_train import checkpoint
from tsn_train.config import REFERENCE
from tsn_train.dataset import StoreImages, VideoDataset
from tsn_train.lists import validated
from tsn_train.protocol import run_test
from tsn_train.sources import SourceSpec
from tsn_train.transforms import TrainAugment
from tsn_train.video_frames import FrameError, _skips, read_frames
from tsn_train.video_index import VideoIndex, build_index, index_path, scan_video
from tsn_train.video_source import FrameSettings, VideoSource
from tsn_core.store import Store
from tsn_core.video_files import list_videos

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (112, 84)
QUALITY = 95  # tsn-prep extract-frames' default --jpeg-quality


def encode_clip(path: Path, codec: str, gop: int, bframes: int, frames: int = 72) -> Path:
    """``frames`` frames of poolcleaning re-encoded with a keyframe every ``gop`` frames (and
    ``bframes`` B-frames): a clip where decoding jumps from keyframe to keyframe."""
    src = list(VideoReader(VIDEOS / "poolcleaning.mp4", size=(160, 120), max_frames=frames).frames())
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.gop_size = gop
        stream.max_b_frames = bframes
        if codec == "libx264":
            stream.options = {"keyint_min": str(gop), "sc_threshold": "0", "bf": str(bframes)}
        for f in src:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """The five real clips, and two re-encodings of one with keyframes every few frames."""
    root = tmp_path_factory.mktemp("video_source")
    folder = link_videos(root / "videos", {f"{c}{next(VIDEOS.glob(c + '.*')).suffix}":
                                           next(VIDEOS.glob(c + ".*")).name for c in CLIPS})
    encode_clip(folder / "gop8_h264.mp4", "libx264", 8, 2)
    encode_clip(folder / "gop5_mpeg4.avi", "mpeg4", 5, 0)
    (root / "train.txt").write_text("".join(f"{item.id} {i % 3}\n" for i, item in
                                            enumerate(list_videos(folder).items)))
    return folder


@pytest.fixture(scope="module")
def store(clips) -> Path:
    out = clips.parent / "store"
    cli("extract-frames", clips, out, "--size", f"{SIZE[0]}x{SIZE[1]}", "--workers", "1")
    return out


def records_of(clips: Path) -> list[Record]:
    lines = (clips.parent / "train.txt").read_text().split()
    return [Record(v, int(label)) for v, label in zip(lines[::2], lines[1::2])]


def source_of(clips: Path, decoders=("opencv", "pyav")) -> VideoSource:
    return VideoSource(clips, FrameSettings(SIZE, None, decoders), progress=False)


def test_the_seekable_clips_have_keyframes_to_jump_to(clips):
    for name in ("gop8_h264.mp4", "gop5_mpeg4.avi"):
        scan = scan_video(clips / name)
        assert scan.frames == 72 and scan.uniform and not scan.error
        assert len(scan.keyframes) >= 72 // 8, scan.keyframes  # jumps are really taken
    # frames known by their times in MP4 (skipped unless wanted), counted in AVI, whose times
    # FFmpeg makes up
    assert _skips("opencv", scan_video(clips / "gop8_h264.mp4"))
    assert _skips("opencv", scan_video(clips / "armwrestling_kinetics.mp4"))
    assert not _skips("opencv", scan_video(clips / "gop5_mpeg4.avi"))
    assert not _skips("pyav", scan_video(clips / "eyemakeup_ucf101like.avi"))


def test_frame_counts_and_sampled_frames_equal_the_stores(clips, store):
    records = records_of(clips)
    videos = source_of(clips).checked(records, "rgb", 3, "train list")
    assert not videos.left_out
    stored = validated(records, Store(store), "rgb", 3)
    assert videos.videos.counts.tolist() == stored.counts.tolist()
    for modality in ("rgb", "rgbdiff"):
        aug = TrainAugment(64, REFERENCE[modality].scales, False)
        for train, segments in ((True, 3), (False, 25)):
            a = VideoDataset(StoreImages(store), stored, None, modality, segments, train, aug, seed=7)
            b = VideoDataset(None, videos.videos, None, modality, segments, train, aug, seed=7)
            for epoch in range(3):
                for i in range(len(records)):
                    assert a.sample((epoch, i))[2] == b.sample((epoch, i))[2]


@pytest.mark.parametrize("decoders", [("opencv", "pyav"), ("pyav",)])
def test_frames_are_extractions_before_jpeg_and_the_store_holds_them_through_jpeg(clips, store, decoders):
    """Every frame of every clip: equal to extract-frames' decoding before JPEG, bit for bit;
    the store's JPEG of it decodes to exactly the store's image. How far the store's images lie
    from the video's frames (the JPEG error) is measured and bounded."""
    source = source_of(clips, decoders)
    records = records_of(clips)
    source.checked(records, "rgb", 3, "l")
    files = source.images()
    reader = Store(store)
    worst, mean = 0, []
    for r in records:
        whole = list(VideoReader(next(clips.glob(r.video_id + ".*")), size=SIZE, decoders=decoders).frames())
        rng = np.random.default_rng(len(whole))
        some = sorted(rng.choice(len(whole), min(9, len(whole)), replace=False).tolist())
        picked = files.frames(r.video_id, "rgb", some + some[:2])  # repeated numbers: decoded once
        assert all(np.array_equal(p, whole[n]) for p, n in zip(picked, some + some[:2]))
        everything = files.frames(r.video_id, "rgb", list(range(len(whole))))
        assert all(np.array_equal(a, b) for a, b in zip(everything, whole))
        if decoders == ("opencv", "pyav"):  # the store was extracted with the default decoders
            images = [decode_image(b) for b in reader.read(r.video_id, "img", list(range(len(whole))))]
            assert all(np.array_equal(decode_image(encode_jpeg(f, QUALITY)), s) for f, s in zip(everything, images))
            diff = np.abs(np.stack(everything).astype(int) - np.stack(images))
            worst, mean = max(worst, int(diff.max())), mean + [float(diff.mean())]
    if mean:
        # the JPEG error at quality 95 (measured: 2.2 levels on average, 92 at the sharpest edge)
        print(f"store vs video frames: mean |difference| {np.mean(mean):.2f}, largest {worst}")
        assert 0 < np.mean(mean) < 3.0 and worst < 128, (np.mean(mean), worst)


def test_jumping_to_keyframes_and_skipping_frames_change_no_pixel(clips):
    """Frames read in small sets (each set jumps to the keyframe before it, and in MP4 leaves the
    frames nothing refers to undecoded) equal decoding the whole clip forward, with both
    decoders, on clips with a keyframe every 5 and 8 frames and on the real clips."""
    for name in ("gop8_h264.mp4", "gop5_mpeg4.avi", "armwrestling_kinetics.mp4", "poolcleaning.mp4",
                 "carphone.mp4", "eyemakeup_ucf101like.avi"):
        scan = scan_video(clips / name)
        whole = list(VideoReader(clips / name, size=SIZE).frames())
        rng = np.random.default_rng(3)
        for decoders in (("opencv",), ("pyav",)):
            for _ in range(6):
                some = sorted(rng.choice(scan.frames, 5, replace=False).tolist())
                got = read_frames(clips / name, some, scan, SIZE, None, decoders)
                assert all(np.array_equal(got[n], whole[n]) for n in some), (name, decoders, some)


def test_the_index_is_cached_beside_the_list_and_a_changed_file_is_scanned_again(clips, tmp_path):
    items = list_videos(clips).items
    cache = index_path(tmp_path / "train.txt")
    assert cache == tmp_path / "train.txt.videoindex.npz"
    first = build_index(items, cache)
    stamp = cache.stat().st_mtime_ns
    again = build_index(items, cache)  # everything from the cache: the file is not rewritten
    assert cache.stat().st_mtime_ns == stamp
    assert [again.scan(r) for r in range(len(again))] == [first.scan(r) for r in range(len(first))]
    # a video replaced by another: its scan is made again
    moved = tmp_path / "moved"
    link_videos(moved, {"a.mp4": "carphone.mp4"})
    one = build_index(list_videos(moved).items, tmp_path / "m.npz")
    (moved / "a.mp4").unlink()
    (moved / "a.mp4").symlink_to(VIDEOS / "poolcleaning.mp4")
    two = build_index(list_videos(moved).items, tmp_path / "m.npz")
    assert (one.frames(0), two.frames(0)) == (120, 300)
    # a damaged cache is made again, never trusted
    cache.write_bytes(b"not an index")
    assert VideoIndex.load(cache) is None
    assert build_index(items, cache).frames(0) == first.frames(0)


def test_bad_videos_are_named_left_out_or_refused(clips, tmp_path):
    folder = link_videos(tmp_path / "videos", {"carphone.mp4": "carphone.mp4", "tree.avi": "tree.avi"})
    (folder / "junk.mp4").write_bytes(b"no video here" * 100)
    (tmp_path / "l.txt").write_text("carphone 0\njunk 1\ntree 1\n")
    run = tmp_path / "run"
    result = train_cli("fit", "--modality", "rgb", "--videos", folder, "--train-list", tmp_path / "l.txt",
                       "--out", run, "--arch", "resnet18", "--input-size", "32", "--workers", "0",
                       "--batch-size", "2", "--accumulate", "1", "--epochs", "1", "--no-partial-bn")
    line = next(x for x in result.output.splitlines() if "could not be indexed" in x)
    assert line.startswith("train list: 1 video could not be indexed and is left out: junk: ")
    assert "2 train / 0 val videos" in result.output
    # a listed video without a file: the list is refused, as for a store
    (tmp_path / "m.txt").write_text("carphone 0\nmissing 1\n")
    result = train_cli("fit", "--modality", "rgb", "--videos", folder, "--train-list", tmp_path / "m.txt",
                       "--out", tmp_path / "r2", expect=1)
    assert result.output.count("\n") == 1 and "m.txt:2: 'missing' has no video file under" in result.output
    # flow is not read from videos; --store and --videos together are a usage error
    result = train_cli("fit", "--modality", "flow", "--videos", folder, "--train-list", tmp_path / "l.txt",
                       "--out", tmp_path / "r3", expect=1)
    assert result.output.startswith("Error: --videos reads rgb and rgbdiff; flow is computed ahead of time")
    result = train_cli("fit", "--modality", "rgb", "--videos", folder, "--store", clips, "--train-list",
                       tmp_path / "l.txt", "--out", tmp_path / "r4", expect=2)
    assert "--store and --videos both given" in result.output


def test_a_video_damaged_after_indexing_is_named_in_one_line(tmp_path):
    """The index trusts a file with its recorded size and time; if the bytes are changed behind
    its back, the read that fails names the file, in one line, and fit stops (exit 1)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((VIDEOS / "poolcleaning.mp4").read_bytes())
    (tmp_path / "l.txt").write_text("a 0\n")
    args = ["fit", "--modality", "rgb", "--videos", folder, "--train-list", tmp_path / "l.txt", "--arch",
            "resnet18", "--input-size", "32", "--workers", "1", "--batch-size", "1", "--epochs", "1",
            "--accumulate", "1", "--no-partial-bn", "--num-classes", "2"]
    train_cli(*args, "--out", tmp_path / "ok")
    video = folder / "a.mp4"
    st = video.stat()
    data = bytearray(video.read_bytes())
    data[len(data) // 3:] = bytes(len(data) - len(data) // 3)  # zeros from a third on: same size
    video.write_bytes(bytes(data))
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    proc = subprocess.run([sys.executable, "-m", "tsn_train.cli", *map(str, args), "--out", str(tmp_path / "bad"),
                           "--segments", "25"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("Error")]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {video}: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_test_on_videos_equals_test_on_the_store_within_the_jpeg_error(clips, store, tmp_path):
    lst = clips.parent / "train.txt"
    run = tmp_path / "run"
    train_cli("fit", "--modality", "rgb", "--store", store, "--train-list", lst, "--out", run, "--arch",
              "resnet18", "--input-size", "64", "--workers", "0", "--batch-size", "7", "--accumulate", "1",
              "--epochs", "2", "--lr", "0.01", "--no-partial-bn")
    a = run_test(run / "last.pt", store, lst, segments=5, crops=3, workers=0, progress=False)
    b = run_test(run / "last.pt", SourceSpec(videos=clips), lst, segments=5, crops=3, workers=0, progress=False)
    assert a.video_ids == b.video_ids and a.labels.tolist() == b.labels.tolist()
    assert b.settings["videos"] == str(clips) and "store" not in b.settings
    diff = float(np.abs(a.scores - b.scores).max())
    spread = float(np.abs(a.scores).max())
    print(f"largest score difference, videos vs store: {diff:.5f} (scores up to {spread:.3f})")
    assert diff < 0.02 * spread, (diff, spread)
    assert (a.scores.argmax(1) == b.scores.argmax(1)).all()




def test_fit_on_videos_killed_mid_epoch_resumes_bit_for_bit(clips, tmp_path):
    lst = clips.parent / "train.txt"

    def args(out: Path) -> list[str]:
        return ["fit", "--modality", "rgbdiff", "--videos", str(clips), "--train-list", str(lst), "--out",
                str(out), "--arch", "resnet18", "--input-size", "32", "--workers", "1", "--batch-size", "2",
                "--accumulate", "1", "--epochs", "3", "--log-every", "1", "--lr", "0.01", "--segments", "2",
                "--no-partial-bn"]
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", fit_killed_at(2, 2), *args(killed)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint.load(killed / "last.pt").epoch == 1
    train_cli(*args(killed), "--resume")
    straight = tmp_path / "straight"
    train_cli(*args(straight))
    a, b = checkpoint.load(killed / "last.pt"), checkpoint.load(straight / "last.pt")
    assert a.epoch == b.epoch == 3
    assert all(torch.equal(a.model[k], b.model[k]) for k in b.model)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert a.extraction == {"size": [340, 256], "short_side": None, "max_frames": None, "decoded_from": "videos"}
    assert json.loads((straight / "config.json").read_text())["videos"] == str(clips)


def test_a_frame_past_the_end_is_an_error_naming_the_frame(clips):
    scan = scan_video(clips / "carphone.mp4")
    with pytest.raises(FrameError, match="frames 3..120 asked of 120"):
        read_frames(clips / "carphone.mp4", [3, 120], scan, SIZE, None)
    lying = scan.__class__(scan.frames + 5, scan.keyframes, scan.keyframe_pts, scan.uniform, scan.fps)
    with pytest.raises(FrameError, match=r"frame 123 of 125 could not be decoded \(OpenCV\)"):
        read_frames(clips / "carphone.mp4", [2, 123], lying, SIZE, None)
    with pytest.raises(ListError):
        source_of(clips).checked([Record("nothere", 0)], "rgb", 2, "l")


def test_predict_with_a_stream_trained_on_videos_is_testing_those_videos(clips, tmp_path):
    """A checkpoint of ``fit --videos`` records that its frames came from videos; predict then
    decodes the sampled frames as ``test --videos`` does (no extraction): the same probabilities."""
    lst = clips.parent / "train.txt"
    run = tmp_path / "run"
    train_cli("fit", "--modality", "rgb", "--videos", clips, "--train-list", lst, "--out", run, "--arch",
              "resnet18", "--input-size", "32", "--workers", "0", "--batch-size", "7", "--accumulate", "1",
              "--epochs", "1", "--no-partial-bn", "--video-size", "96x72")
    assert checkpoint.load(run / "last.pt").extraction["size"] == [96, 72]
    (tmp_path / "one.txt").write_text("carphone 1\n")
    s = run_test(run / "last.pt", SourceSpec(videos=clips), tmp_path / "one.txt", segments=7, crops=10,
                 workers=0, progress=False)
    expected = np.exp(s.scores[0] - s.scores[0].max())
    expected /= expected.sum()
    result = train_cli("predict", clips / "carphone.mp4", "--checkpoint", run / "last.pt", "--segments", "7",
                       "--json")
    top = json.loads(result.stdout.splitlines()[0])["top"]
    assert [t["class"] for t in top] == [str(i) for i in np.argsort(-expected)[:len(top)]]
    assert np.allclose([t["probability"] for t in top], np.sort(expected)[::-1][:len(top)], atol=1e-5)


def test_an_interrupted_scan_keeps_what_it_scanned_and_the_rerun_scans_the_rest(tmp_path):
    """Ctrl-C (a real SIGINT) in the middle of indexing: the index file holds the videos scanned
    so far, whole, and the same call then scans only the others."""
    folder = link_videos(tmp_path / "v", {f"c/v{i:03d}{p.suffix}": p.name for i, p in
                                          enumerate(sorted(VIDEOS.iterdir()) * 24)})
    items = list_videos(folder).items
    cache = tmp_path / "l.txt.videoindex.npz"
    scanned = []

    def interrupt_at_40(n):
        scanned.append(n)
        if len(scanned) == 40:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        build_index(items, cache, threads=2, progress=interrupt_at_40)
    kept = VideoIndex.load(cache)
    assert 40 <= len(kept) < len(items)  # the scans running at the signal may finish too
    scanned.clear()
    whole = build_index(items, cache, threads=2, progress=scanned.append)
    assert len(scanned) == len(items) - len(kept) and len(whole) == len(items) == 120
    assert [whole.frames(r) for r in range(len(whole))] == [scan_video(i.path).frames for i in
                                                            sorted(items, key=lambda i: i.id)]


def _torchcodec_loads() -> bool:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the system's FFmpeg)
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _torchcodec_loads(), reason="torchcodec (an extra) with the system's FFmpeg libraries")
def test_torchcodec_gives_extractions_frames_in_mp4_and_hands_avi_over(clips):
    """``--decoders torchcodec`` (an extra): in MP4 the frames extraction stores, frame for frame;
    an AVI (whose frame times FFmpeg makes up, and torchcodec numbers frames by them) goes to the
    next decoder, or is an error naming why when there is none."""
    for name in ("gop8_h264.mp4", "armwrestling_kinetics.mp4", "carphone.mp4"):
        scan = scan_video(clips / name)
        whole = list(VideoReader(clips / name, size=SIZE).frames())
        assert [f.shape for f in VideoReader(clips / name, size=SIZE, decoders=("torchcodec",)).frames()] == \
            [f.shape for f in whole]
        some = sorted(np.random.default_rng(1).choice(scan.frames, 6, replace=False).tolist())
        got = read_frames(clips / name, some, scan, SIZE, None, ("torchcodec",))
        assert all(np.array_equal(got[n], whole[n]) for n in some), name
    avi = clips / "eyemakeup_ucf101like.avi"
    scan = scan_video(avi)
    with pytest.raises(FrameError, match="MP4, MOV, MKV and WebM files only"):
        read_frames(avi, [1, 2], scan, SIZE, None, ("torchcodec",))
    whole = list(VideoReader(avi, size=SIZE).frames())
    got = read_frames(avi, [1, 2, 100], scan, SIZE, None, ("torchcodec", "pyav"))
    assert all(np.array_equal(got[n], whole[n]) for n in (1, 2, 100))


def test_converting_a_frame_starts_no_thread_a_fork_would_inherit(clips):
    """Loader workers are forked from the process that indexed the videos (and may have read
    them): a pool of swscale threads (PyAV 17+ converts on one by default, kept while the frame's
    converter lives) hung a forked worker for ever when it freed the pool. Every conversion of
    ours (``tsn_core.frames.bgr``) runs in the calling thread: no thread is started."""
    from tsn_core.frames import bgr

    def native_threads() -> int:
        return len(os.listdir("/proc/self/task"))

    for path in (clips / "armwrestling_kinetics.mp4", clips / "eyemakeup_ucf101like.avi"):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            frame = next(container.decode(stream))
            before = native_threads()
            pixels = bgr(frame)
            assert native_threads() == before  # with the frame and its converter alive
            assert pixels.shape == (frame.height, frame.width, 3)


RELEASE = """
import ctypes
from tsn_core.machine import return_free_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
blocks = [libc.malloc(4096) for _ in range(40000)]  # 160 MB of small blocks: glibc's heap, not mmap
for b in blocks:
    ctypes.memset(b, 1, 4096)
live = set(blocks[1::64])  # one live block in every 64: the freed pages lie between live ones
for b in blocks:
    if b not in live:
        libc.free(b)
before = rss()
return_free_memory()
print(before, rss())
"""


def test_freed_decoder_memory_is_handed_back(tmp_path):
    """What VideoFiles calls every TRIM_EVERY reads: pages freed among live ones (as decoders'
    buffers are) go back to the system, where glibc alone keeps them."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs Linux's /proc")
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True,
                         cwd=str(REPO)).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before - after > 100 * 2 ** 20, (before, after)


KEPT = """
import ctypes, random, sys
from pathlib import Path
from tsn_train.video_frames import read_frames
from tsn_train.video_index import scan_video

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
clips = [Path(p) for p in sys.argv[1:]]
scans = [(c, scan_video(c)) for c in clips]
rng = random.Random(0)
def reads(n):
    for k in range(n):
        clip, scan = scans[k % len(scans)]
        read_frames(clip, sorted(rng.sample(range(scan.frames), 3)), scan, (112, 84), None, ("pyav",), 1)
reads(90)  # the decoders' lasting allocations made (none after about 60 reads)
before = libc.mallinfo2().uordblks
reads(120)
print(before, libc.mallinfo2().uordblks)
"""


def test_reading_sampled_frames_keeps_no_native_memory():
    """Each read of a few sampled frames (PyAV: demuxing left unfinished at the last wanted frame,
    by both the skipping and the plain reader) leaves the C heap's in-use bytes where they were:
    PyAV's own ``container.decode`` kept about 160 bytes of every read for good, which at 100k
    videos an epoch is a loader worker creeping up by megabytes."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc 2.33's mallinfo2")
    out = subprocess.run([sys.executable, "-c", KEPT, *map(str, sorted(VIDEOS.iterdir()))], capture_output=True, text=True,
                         check=True, cwd=str(REPO)).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert after - before < 4096, f"120 reads kept {after - before} bytes of native memory"
