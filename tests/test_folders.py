"""export to TSN-style folders and import-frames back, byte for byte."""
import shutil

import pytest

from tsn_core import modalities
from tsn_core.store import Store
from tsn_core.store.shards import shard_name, shard_of

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
        assert s.entry(vid, "rgb").meta.count == k + 2
        assert s.get(vid, "img", k + 1) == (FRAMES / f"img_{k + 2:05d}.jpg").read_bytes()
    assert cli("verify", out, "--quiet").exit_code == 0


def make_folder(d, spec):
    """A frame folder from mmaction2's real test images: ``spec`` maps a name pattern such as
    ``"flow_x_{:05d}.jpg"`` to (first number, count); x/y patterns copy the real x_/y_ images,
    others the RGB frames. Returns {pattern: [source files in order]}."""
    d.mkdir(parents=True)
    sources = {}
    for pattern, (first, count) in spec.items():
        kind = "x" if "x_" in pattern else "y" if "y_" in pattern else "img"
        sources[pattern] = []
        for i in range(count):
            src = FRAMES / f"{kind}_{i + 1:05d}.jpg"
            shutil.copy(src, d / pattern.format(first + i))
            sources[pattern].append(src)
    return sources


# (folder, {pattern: (first number, count)}, {modality: (channels' patterns, start)}) for each
# convention the tools write; counts as they write them for a 5-frame video where they differ.
CONVENTIONS = [
    ("dense_flow", {"img_{:05d}.jpg": (1, 4), "flow_x_{:05d}.jpg": (1, 4), "flow_y_{:05d}.jpg": (1, 4)},
     {"rgb": (["img_{:05d}.jpg"], 1), "flow": (["flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg"], 1)}),
    ("denseflow", {"img_{:05d}.jpg": (0, 5), "flow_x_{:05d}.jpg": (0, 4), "flow_y_{:05d}.jpg": (0, 4)},
     {"rgb": (["img_{:05d}.jpg"], 0), "flow": (["flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg"], 0)}),
    ("mmaction2_rawframes", {"img_{:05d}.jpg": (1, 10), "x_{:05d}.jpg": (1, 5), "y_{:05d}.jpg": (1, 5)},
     {"rgb": (["img_{:05d}.jpg"], 1), "flow": (["x_{:05d}.jpg", "y_{:05d}.jpg"], 1)}),
    # mmaction2's flow_extraction.py numbers its x_/y_ from 0 beside 1-based frames
    ("mixed", {"img_{:05d}.jpg": (1, 5), "x_{:05d}.jpg": (0, 4), "y_{:05d}.jpg": (0, 4),
               "warp_x_{:05d}.jpg": (1, 3), "warp_y_{:05d}.jpg": (1, 3)},
     {"rgb": (["img_{:05d}.jpg"], 1), "flow": (["x_{:05d}.jpg", "y_{:05d}.jpg"], 0),
      "warped_flow": (["warp_x_{:05d}.jpg", "warp_y_{:05d}.jpg"], 1)}),
    ("dense_flow_readme", {"image_{:05d}.jpg": (1, 3)}, {"rgb": (["image_{:05d}.jpg"], 1)}),
]


def test_import_detects_every_convention_per_folder(tmp_path):
    tree = tmp_path / "tree"
    sources = {name: make_folder(tree / "cls" / name, spec) for name, spec, _ in CONVENTIONS}
    r = cli("import-frames", tree, tmp_path / "out", "--quiet")
    # what was detected is said, grouped; then the total
    assert r.stderr.splitlines() == [
        "found flow flow_x_/flow_y_ from 0: 1 folder",
        "found flow flow_x_/flow_y_ from 1: 1 folder",
        "found flow x_/y_ from 0: 1 folder",
        "found flow x_/y_ from 1: 1 folder",
        "found rgb image_ from 1: 1 folder",
        "found rgb img_ from 0: 1 folder",
        "found rgb img_ from 1: 3 folders",
        "found warped_flow warp_x_/warp_y_ from 1: 1 folder",
        f"imported 5 videos, 0 failed -> {tmp_path / 'out'}",
    ]
    s = Store(tmp_path / "out")
    for name, spec, expected in CONVENTIONS:
        vid = f"cls/{name}"
        assert sorted(m for v, m in s.index if v == vid) == sorted(expected)
        for modality, (patterns, start) in expected.items():
            meta = s.entry(vid, modality).meta
            assert meta.naming == {"prefixes": [p.split("{")[0] for p in patterns], "start": start}
            assert meta.count == spec[patterns[0]][1]
            for channel, pattern in zip(modalities.get(modality).channels, patterns):
                stored = [s.get(vid, channel, i, modality) for i in range(meta.count)]
                assert stored == [src.read_bytes() for src in sources[name][pattern]], (vid, channel)
    assert cli("verify", tmp_path / "out", "--quiet").exit_code == 0


def test_mmaction2_rawframes_with_default_options_keep_their_flow(tmp_path):
    """The folder mmaction2 itself ships (img_, x_, y_ from 1): flow is imported, not dropped."""
    shutil.copytree(FRAMES, tmp_path / "tree" / "clip")
    cli("import-frames", tmp_path / "tree", tmp_path / "out", "--quiet")
    s = Store(tmp_path / "out")
    assert (s.entry("clip", "rgb").meta.count, s.entry("clip", "flow").meta.count) == (10, 5)
    assert s.get("clip", "flow_y", 4) == (FRAMES / "y_00005.jpg").read_bytes()


def test_dense_flow_warp_tree_imported_as_warped_flow(tmp_path):
    """extract_warp_gpu names warped flow flow_x_ in a tree of its own."""
    make_folder(tmp_path / "flow" / "v", {"flow_x_{:05d}.jpg": (1, 3), "flow_y_{:05d}.jpg": (1, 3)})
    warp = make_folder(tmp_path / "warp" / "v", {"flow_x_{:05d}.jpg": (1, 2), "flow_y_{:05d}.jpg": (1, 2)})
    out = tmp_path / "out"
    cli("import-frames", tmp_path / "flow", out, "--quiet")
    r = cli("import-frames", tmp_path / "warp", out, "--flow-modality", "warped_flow", "--quiet")
    assert "found warped_flow flow_x_/flow_y_ from 1: 1 folder" in r.stderr
    s = Store(out)
    assert (s.entry("v", "flow").meta.count, s.entry("v", "warped_flow").meta.count) == (3, 2)
    assert s.get("v", "warped_flow_y", 1) == warp["flow_y_{:05d}.jpg"][1].read_bytes()
    assert cli("import-frames", tmp_path / "warp", out, "--flow-modality", "warped_flow",
               "--warp-prefix", "w_", "--quiet", expect=2).exit_code == 2


BROKEN = [
    ("unknown", {"img_{:05d}.jpg": (1, 3), "frame{:04d}.jpg": (1, 2)},
     "2 image files match no naming being imported (frame0001.jpg, frame0002.jpg); name their prefix "
     "with --img-prefix, --flow-prefix or --warp-prefix, or pass --ignore-unmatched to leave them out"),
    ("only_unknown", {"frame_{:03d}.png": (0, 4)},
     "4 image files match no naming being imported (frame_000.png, frame_001.png, frame_002.png and 1 more); "
     "name their prefix with --img-prefix, --flow-prefix or --warp-prefix, or pass --ignore-unmatched to "
     "leave them out"),
    ("xy_counts", {"x_{:05d}.jpg": (1, 5), "y_{:05d}.jpg": (1, 4)},
     "flow channels differ: x_00001..: 5, y_00001..: 4"),
    ("xy_starts", {"flow_x_{:05d}.jpg": (0, 3), "flow_y_{:05d}.jpg": (1, 3)},
     "flow channels differ: flow_x_00000..: 3, flow_y_00001..: 3"),
    ("no_y", {"img_{:05d}.jpg": (1, 2), "flow_x_{:05d}.jpg": (1, 2)}, "has flow_x_* images but no flow_y_* images"),
    ("two_namings", {"x_{:05d}.jpg": (1, 2), "y_{:05d}.jpg": (1, 2), "flow_x_{:05d}.jpg": (1, 2),
                     "flow_y_{:05d}.jpg": (1, 2)},
     "flow images in two namings (flow_x_/flow_y_ and x_/y_); name the one to import with its --*-prefix option"),
    ("gap", {"img_{:05d}.jpg": (1, 2), "img_0000{}.jpg": (4, 1)},
     "img_ numbering is not contiguous from 0 or 1 (starts at 1, missing [3])"),
    ("from_two", {"img_{:05d}.jpg": (2, 3)}, "img_ numbering is not contiguous from 0 or 1 (starts at 2, missing [])"),
]


def test_import_never_drops_images_silently(tmp_path):
    tree = tmp_path / "tree"
    for name, spec, _ in BROKEN:
        make_folder(tree / name, spec)
    make_folder(tree / "fine", {"img_{:05d}.jpg": (0, 2)})
    out = tmp_path / "out"
    r = cli("import-frames", tree, out, "--quiet", expect=1)
    expected = sorted((name, msg) for name, _, msg in BROKEN)
    assert r.stderr.splitlines() == [f"error: {tree / name}: {msg}" for name, msg in expected] + [
        "found rgb img_ from 0: 1 folder", f"imported 1 videos, {len(BROKEN)} failed -> {out}"]
    s = Store(out)
    assert sorted({v for v, _ in s.index}) == ["fine"]
    assert sorted(f.video_id for f in s.failures()) == sorted(name for name, _, _ in BROKEN)

    # leaving unknown files out is a choice the user makes, and the summary counts them
    r = cli("import-frames", tree / "unknown", tmp_path / "out2", "--ignore-unmatched", "--quiet")
    assert r.stderr.splitlines()[-2:] == [
        f"left out 2 unmatched image files in 1 folders (--ignore-unmatched), e.g. {tree / 'unknown'}/frame0001.jpg",
        f"imported 1 videos, 0 failed -> {tmp_path / 'out2'}"]
    assert Store(tmp_path / "out2").entry("unknown", "rgb").meta.count == 3
    # naming the prefix imports them; the one naming asked for claims only its files
    r = cli("import-frames", tree / "only_unknown", tmp_path / "out3", "--img-prefix", "frame_", "--quiet")
    assert "found rgb frame_ from 0: 1 folder" in r.stderr
    assert Store(tmp_path / "out3").entry("only_unknown", "rgb").meta.count == 4
    r = cli("import-frames", tree / "two_namings", tmp_path / "out4", "--flow-prefix", "", "--quiet", expect=1)
    assert "4 image files match no naming being imported (flow_x_00001.jpg, flow_x_00002.jpg, flow_y_00001.jpg and 1 more)" in r.stderr


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
        "found rgb img_ from 1: 1 folder",
        f"imported 1 videos, 2 failed -> {tmp_path / 'out'}",
    ]
    s = Store(tmp_path / "out")
    assert s.videos("rgb") == ["ok"]
    assert {f.video_id for f in s.failures()} == {"gap", "bad"}


def test_export_lists_give_each_modality_its_own_count(extracted, tmp_path):
    """mmaction2 reads frame i (1-based) of a rawframes line as <prefix>{i:05d}.jpg for i up to the
    line's count: every such file must exist, and no more (a flow list giving the frame count
    crashes its test pipeline on the last snippet)."""
    labels = tmp_path / "trainlist.txt"
    labels.write_text("car 1\nA/arm 0\nnot/stored 3\n")
    out = tmp_path / "folders"
    r = cli("export", extracted, out, "--lists", "--labels", labels, "--quiet")
    assert "warning: trainlist_rawframes_flow.txt: 1 listed videos are not in the store (not/stored); left out" \
        in r.stderr
    templates = {"rgb": ["img_{:05d}.jpg"], "flow": ["flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg"],
                 "warped_flow": ["warp_x_{:05d}.jpg", "warp_y_{:05d}.jpg"]}
    for modality, tmpls in templates.items():
        for name, labelled in ((f"rawframes_{modality}.txt", False), (f"trainlist_rawframes_{modality}.txt", True)):
            lines = [line.split() for line in (out / name).read_text().splitlines()]
            assert [f[0] for f in lines] == (["car", "A/arm"] if labelled else ["A/arm", "car"])
            for fields in lines:
                assert len(fields) == (3 if labelled else 2)
                frame_dir, total = out / fields[0], int(fields[1])
                for tmpl in tmpls:
                    assert all((frame_dir / tmpl.format(i)).is_file() for i in range(1, total + 1))
                    assert not (frame_dir / tmpl.format(total + 1)).exists()
            if labelled:
                assert [int(f[2]) for f in lines] == [1, 0]
    assert (out / "rawframes_flow.txt").read_text() == "A/arm 2\ncar 2\n"

    only = tmp_path / "only"
    cli("export", extracted, only, "--modality", "flow", "--lists", "--quiet")
    assert sorted(p.name for p in only.glob("*.txt")) == ["rawframes_flow.txt"]
    assert cli("export", extracted, only, "--labels", labels, expect=2).exit_code == 2


def test_info_lists_every_video_with_its_counts(extracted):
    import json

    info = json.loads(cli("info", extracted, "--json", "--videos").output)
    assert info["per_video"] == {v: {"rgb": 3, "flow": 2, "warped_flow": 2} for v in ("A/arm", "car")}
    assert "per_video" not in json.loads(cli("info", extracted, "--json").output)
    text = cli("info", extracted, "--videos").output.splitlines()
    assert text[-3].split() == ["video", "flow", "rgb", "warped_flow"]
    assert [line.split() for line in text[-2:]] == [["A/arm", "2", "3", "2"], ["car", "2", "3", "2"]]
