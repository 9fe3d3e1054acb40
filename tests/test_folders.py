"""export to TSN-style folders and import-frames back, byte for byte."""
import shutil

from tsn_prep.store import Store

from .conftest import DATA, cli, cli_subprocess, link_videos


def test_export_then_import_is_lossless(tmp_path):
    videos = link_videos(tmp_path / "videos", {"A/arm.mp4": "armwrestling_kinetics.mp4", "car.mp4": "carphone.mp4"})
    out = tmp_path / "out"
    cli("extract-frames", videos, out, "--max-frames", 3, "--size", "170x128", "--quiet")
    cli("extract-flow", videos, out, "--modality", "flow", "--modality", "warped_flow",
        "--max-frames", 3, "--size", "170x128", "--quiet")
    folders = tmp_path / "folders"
    cli("export", out, folders, "--quiet")
    assert sorted(p.name for p in (folders / "A" / "arm").iterdir()) == [
        "flow_x_00001.jpg", "flow_x_00002.jpg", "flow_y_00001.jpg", "flow_y_00002.jpg",
        "img_00001.jpg", "img_00002.jpg", "img_00003.jpg",
        "warp_x_00001.jpg", "warp_x_00002.jpg", "warp_y_00001.jpg", "warp_y_00002.jpg"]
    src = Store(out)
    assert (folders / "car" / "img_00003.jpg").read_bytes() == src.get("car", "img", 2)
    assert (folders / "car" / "warp_y_00001.jpg").read_bytes() == src.get("car", "warped_flow_y", 0)

    back = tmp_path / "back"
    cli("import-frames", folders, back, "--quiet")
    dst = Store(back)
    assert sorted(dst.index) == sorted(src.index)
    assert {(v, c, i): d for _, v, c, i, d in dst.iter_images()} == \
           {(v, c, i): d for _, v, c, i, d in src.iter_images()}
    assert cli("verify", back, "--quiet").exit_code == 0
    # importing again changes nothing
    r = cli("import-frames", folders, back, "--quiet")
    assert "imported 0 videos" in r.output


def test_import_denseflow_zero_based_and_mmaction_folders(tmp_path):
    """mmaction2's test frames (img_00001.., x_00001..) and a denseflow-style 0-based copy."""
    tree = tmp_path / "tree"
    mm = tree / "mm" / "clip"
    mm.mkdir(parents=True)
    for f in (DATA / "tsn_frames").iterdir():
        shutil.copy(f, mm / f.name)
    dense = tree / "dense" / "clip"
    dense.mkdir(parents=True)
    for i in range(1, 6):  # x_00001 -> x_00000 ...
        for c in "xy":
            shutil.copy(DATA / "tsn_frames" / f"{c}_{i:05d}.jpg", dense / f"{c}_{i - 1:05d}.jpg")
    cli("import-frames", tree, tmp_path / "out", "--flow-prefix", "", "--quiet")
    s = Store(tmp_path / "out")
    assert s.entry("mm/clip", "rgb").meta["count"] == 10
    assert s.entry("mm/clip", "flow").meta["count"] == 5
    assert s.entry("dense/clip", "flow").meta["count"] == 5
    for i in range(5):
        assert s.get("dense/clip", "flow_x", i) == (DATA / "tsn_frames" / f"x_{i + 1:05d}.jpg").read_bytes()
        assert s.get("mm/clip", "flow_y", i) == s.get("dense/clip", "flow_y", i)
    assert s.get("mm/clip", "img", 9) == (DATA / "tsn_frames" / "img_00010.jpg").read_bytes()


def test_import_reports_broken_folders_and_keeps_going(tmp_path):
    tree = tmp_path / "tree"
    gap, bad, ok = tree / "gap", tree / "bad", tree / "ok"
    for d in (gap, bad, ok):
        d.mkdir(parents=True)
    for i in (1, 2, 4):
        shutil.copy(DATA / "tsn_frames" / f"img_{i:05d}.jpg", gap / f"img_{i:05d}.jpg")
    shutil.copy(DATA / "tsn_frames" / "img_00001.jpg", bad / "img_00001.jpg")
    (bad / "img_00002.jpg").write_bytes(b"truncated")
    for i in (1, 2):
        shutil.copy(DATA / "tsn_frames" / f"img_{i:05d}.jpg", ok / f"img_{i:05d}.jpg")
    r = cli_subprocess("import-frames", tree, tmp_path / "out", "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {gap}: img_ numbering is not contiguous" in r.stderr and "missing [3]" in r.stderr
    assert f"error: {bad}: img_00002.jpg does not decode" in r.stderr
    s = Store(tmp_path / "out")
    assert s.videos("rgb") == ["ok"]
    assert {f["video_id"] for f in s.failures()} == {"gap", "bad"}
