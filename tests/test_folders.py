"""export to TSN-style folders and import-frames back, byte for byte."""
import shutil

import pytest

from tsn_prep.store import Store, shard_name, shard_of

from .conftest import DATA, cli, link_videos

FRAMES = DATA / "tsn_frames"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """rgb (3 frames), flow and warped flow (2 each) of two real clips at 112x84."""
    root = tmp_path_factory.mktemp("extracted")
    videos = link_videos(root / "videos", {"A/arm.mp4": "armwrestling_kinetics.mp4",
                                           "car.mp4": "carphone.mp4"})
    out = root / "out"
    cli("extract-frames", videos, out, "--max-frames", 3, "--size", "112x84", "--quiet")
    cli("extract-flow", videos, out, "--modality", "flow", "--modality", "warped_flow",
        "--max-frames", 3, "--size", "112x84", "--quiet")
    return out


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def images(store):
    return {(v, c, i): d for _, v, c, i, d in store.iter_images()}


def test_export_then_import_is_lossless(extracted, tmp_path):
    folders = tmp_path / "folders"
    assert cli("export", extracted, folders, "--quiet").output == f"wrote 22 images to {folders}\n"
    per_video = ["flow_x_00001.jpg", "flow_x_00002.jpg", "flow_y_00001.jpg", "flow_y_00002.jpg",
                 "img_00001.jpg", "img_00002.jpg", "img_00003.jpg",
                 "warp_x_00001.jpg", "warp_x_00002.jpg", "warp_y_00001.jpg", "warp_y_00002.jpg"]
    assert files(folders) == [f"{v}/{f}" for v in ("A/arm", "car") for f in per_video]
    src = Store(extracted)
    assert (folders / "car" / "img_00003.jpg").read_bytes() == src.get("car", "img", 2)
    assert (folders / "car" / "warp_y_00001.jpg").read_bytes() == src.get("car", "warped_flow_y", 0)

    back = tmp_path / "back"
    cli("import-frames", folders, back, "--quiet")
    dst = Store(back)
    assert sorted(dst.index) == sorted(src.index)
    assert images(dst) == images(src)
    assert cli("verify", back, "--quiet").exit_code == 0
    # importing again changes nothing
    r = cli("import-frames", folders, back, "--quiet")
    assert "imported 0 videos" in r.output


def test_export_only_the_chosen_modalities(extracted, tmp_path):
    src = Store(extracted)
    flow = tmp_path / "flow"
    assert cli("export", extracted, flow, "--modality", "flow", "--quiet").output == \
        f"wrote 8 images to {flow}\n"
    assert files(flow) == [f"{v}/flow_{c}_0000{i}.jpg" for v in ("A/arm", "car") for c in "xy"
                           for i in (1, 2)]
    for v in ("A/arm", "car"):
        for c in "xy":
            for i in (1, 2):
                assert (flow / v / f"flow_{c}_0000{i}.jpg").read_bytes() == src.get(v, f"flow_{c}", i - 1)

    # denseflow's names: no flow prefix, numbered from 0; rgb and warped flow only
    dense = tmp_path / "dense"
    cli("export", extracted, dense, "--modality", "warped_flow", "--modality", "rgb",
        "--warp-prefix", "w_", "--img-prefix", "frame", "--start-index", 0, "--quiet")
    assert files(dense) == [f"{v}/{f}" for v in ("A/arm", "car") for f in
                            ["frame00000.jpg", "frame00001.jpg", "frame00002.jpg",
                             "w_x_00000.jpg", "w_x_00001.jpg", "w_y_00000.jpg", "w_y_00001.jpg"]]
    assert (dense / "car" / "frame00000.jpg").read_bytes() == src.get("car", "img", 0)
    assert (dense / "A/arm" / "w_y_00001.jpg").read_bytes() == src.get("A/arm", "warped_flow_y", 1)


def test_import_into_three_shards(tmp_path):
    """Six folders imported as three array jobs: each video in the shard shard_of names, every
    image byte-identical to its file, readers see every shard."""
    tree = tmp_path / "tree"
    ids = [f"cls{k % 2}/v{k}" for k in range(6)]
    assert {shard_of(v, 3) for v in ids} == {0, 1, 2}
    sources = {}  # (id, channel, index) -> file
    for k, vid in enumerate(ids):
        d = tree / vid
        d.mkdir(parents=True)
        for i in range(k + 2):  # 2..7 frames, so a mix-up of videos shows
            sources[(vid, "img", i)] = shutil.copy(FRAMES / f"img_{i + 1:05d}.jpg", d)
        for i in range(min(k + 1, 5)):
            for c in "xy":
                sources[(vid, f"flow_{c}", i)] = shutil.copy(FRAMES / f"{c}_{i + 1:05d}.jpg",
                                                             d / f"flow_{c}_{i + 1:05d}.jpg")
    out = tmp_path / "out"
    for k in range(3):
        mine = [v for v in ids if shard_of(v, 3) == k]
        r = cli("import-frames", tree, out, "--num-shards", 3, "--shard-index", k, "--quiet")
        assert f"imported {len(mine)} videos, 0 failed" in r.output
        s = Store(out)
        assert sorted(p.name for p in out.iterdir()) == [shard_name(j, 3) for j in range(k + 1)]
        assert s.videos("rgb") == s.videos("flow") == sorted(v for v in ids if shard_of(v, 3) <= k)

    s = Store(out)
    assert {(vid, mod): e.shard for (vid, mod), e in s.index.items()} == \
        {(vid, mod): shard_of(vid, 3) for vid in ids for mod in ("rgb", "flow")}
    stored = {}
    for shard, vid, channel, i, data in s.iter_images():
        assert shard == shard_of(vid, 3), (vid, channel, i)
        stored[(vid, channel, i)] = data
    assert stored == {key: open(path, "rb").read() for key, path in sources.items()}
    for k, vid in enumerate(ids):
        assert s.entry(vid, "rgb").meta["count"] == k + 2
        assert s.get(vid, "img", k + 1) == (FRAMES / f"img_{k + 2:05d}.jpg").read_bytes()
    assert cli("verify", out, "--quiet").exit_code == 0


def test_import_denseflow_zero_based_and_mmaction_folders(tmp_path):
    """mmaction2's test frames (img_00001.., x_00001..) and a denseflow-style 0-based copy."""
    tree = tmp_path / "tree"
    mm = tree / "mm" / "clip"
    mm.mkdir(parents=True)
    for f in FRAMES.iterdir():
        shutil.copy(f, mm / f.name)
    dense = tree / "dense" / "clip"
    dense.mkdir(parents=True)
    for i in range(1, 6):  # x_00001 -> x_00000 ...
        for c in "xy":
            shutil.copy(FRAMES / f"{c}_{i:05d}.jpg", dense / f"{c}_{i - 1:05d}.jpg")
    cli("import-frames", tree, tmp_path / "out", "--flow-prefix", "", "--quiet")
    s = Store(tmp_path / "out")
    assert s.entry("mm/clip", "rgb").meta["count"] == 10
    assert s.entry("mm/clip", "flow").meta["count"] == 5
    assert s.entry("dense/clip", "flow").meta["count"] == 5
    for i in range(5):
        assert s.get("dense/clip", "flow_x", i) == (FRAMES / f"x_{i + 1:05d}.jpg").read_bytes()
        assert s.get("mm/clip", "flow_y", i) == s.get("dense/clip", "flow_y", i)
    assert s.get("mm/clip", "img", 9) == (FRAMES / "img_00010.jpg").read_bytes()


def test_import_reports_broken_folders_and_keeps_going(tmp_path):
    tree = tmp_path / "tree"
    gap, bad, ok = tree / "gap", tree / "bad", tree / "ok"
    for d in (gap, bad, ok):
        d.mkdir(parents=True)
    for i in (1, 2, 4):
        shutil.copy(FRAMES / f"img_{i:05d}.jpg", gap / f"img_{i:05d}.jpg")
    shutil.copy(FRAMES / "img_00001.jpg", bad / "img_00001.jpg")
    (bad / "img_00002.jpg").write_bytes(b"truncated")
    for i in (1, 2):
        shutil.copy(FRAMES / f"img_{i:05d}.jpg", ok / f"img_{i:05d}.jpg")
    r = cli("import-frames", tree, tmp_path / "out", "--quiet", expect=1)
    assert r.stderr.splitlines() == [
        f"error: {bad}: img_00002.jpg does not decode as an image",
        f"error: {gap}: img_ numbering is not contiguous from 0 or 1 (starts at 1, missing [3])",
        f"imported 1 videos, 2 failed -> {tmp_path / 'out'}",
    ]
    s = Store(tmp_path / "out")
    assert s.videos("rgb") == ["ok"]
    assert {f["video_id"] for f in s.failures()} == {"gap", "bad"}
