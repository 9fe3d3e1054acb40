"""`tsn-prep verify` at dataset scale: --workers, array tasks (--shard-index/--num-shards, SLURM's
variables), --checksums-only; the same findings, in the same order, however the work is split."""
import re
import shutil
import zlib

import pytest

from tsn_core.store import Store
from tsn_core.store.keys import checksums_key, image_key
from tsn_core.store.shards import shard_name, shard_of

from .conftest import cli, link_videos
from .test_verify import flip_a_bit, images_db

SHARDS = 2  # as test_verify's helpers expect
CLIPS = {"armwrestling_kinetics.mp4": "arm", "carphone.mp4": "car", "eyemakeup_ucf101like.avi": "eye",
         "poolcleaning.mp4": "pool", "tree.avi": "tree"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """rgb of ten videos (the five real clips twice; 3 frames, 112x84) in a 2-shard store."""
    root = tmp_path_factory.mktemp("verify_scale")
    videos = link_videos(root / "videos", {f"{name}{k}{clip[clip.rindex('.'):]}": clip
                                           for clip, name in CLIPS.items() for k in (1, 2)})
    for k in range(SHARDS):
        cli("extract-frames", videos, root / "store", "--max-frames", 3, "--size", "112x84",
            "--num-shards", SHARDS, "--shard-index", k, "--quiet")
    return root / "store"


def run(store, *args, expect=None):
    r = cli("verify", store, "--quiet", *args, expect=expect)
    return r.exit_code, [line for line in r.stderr.splitlines() if line.startswith("problem: ")], r.stdout


@pytest.fixture(scope="module")
def damaged(clean, tmp_path_factory):
    """A bit flipped in car1's frame 1; an orphan image; pool2's frame 2 moved to the other shard;
    tree1's checksums deleted; eye2's frame 0 replaced by bytes that do not decode, with their
    checksum recorded as if they had been written so."""
    store = shutil.copytree(clean, tmp_path_factory.mktemp("damaged") / "store")
    flip_a_bit(store, "car1", "img", 1)
    arm = shard_of("arm1", SHARDS)
    jpeg = images_db(store, arm, lambda txn, db: txn.get(image_key("arm1", "img", 0), db=db))
    images_db(store, arm, lambda txn, db: txn.put(image_key("arm1", "flow_x", 0), jpeg, db=db))
    right = shard_of("pool2", SHARDS)
    moved = images_db(store, right, lambda txn, db: txn.pop(image_key("pool2", "img", 2), db=db))
    images_db(store, 1 - right, lambda txn, db: txn.put(image_key("pool2", "img", 2), moved, db=db))
    images_db(store, shard_of("tree1", SHARDS), lambda txn, db: txn.delete(checksums_key("tree1", "img"), db=db),
              db=b"checksums")
    eye = shard_of("eye2", SHARDS)
    garbage = b"not a jpeg at all" * 40
    images_db(store, eye, lambda txn, db: txn.put(image_key("eye2", "img", 0), garbage, db=db))
    sums = images_db(store, eye, lambda txn, db: txn.get(checksums_key("eye2", "img"), db=db), db=b"checksums")
    fixed = zlib.crc32(garbage).to_bytes(4, "big") + bytes(sums)[4:]
    images_db(store, eye, lambda txn, db: txn.put(checksums_key("eye2", "img"), fixed, db=db), db=b"checksums")
    return store


def test_workers_find_the_same_damage_in_the_same_order(damaged):
    code, problems, out = run(damaged)
    assert code == 1 and out.strip() == "10 entries checked, 5 problems, 0 recorded failures: DAMAGED"
    bare = [re.sub(r"^problem: (shard-\d+-of-\d+: )?", "", p) for p in problems]
    assert sorted(bare) == sorted([
        "arm1 flow_x 0: image without a complete entry (orphan)",
        re.search(r"car1 img 1: checksum mismatch .*", "\n".join(bare)).group(0),
        "eye2 img 0: does not decode as an image",
        f"pool2 img 2: stored in the wrong shard (entry in shard {shard_of('pool2', SHARDS)})",
        "tree1 img: 0 crc32 checksums stored, metadata says 3 images",
    ])
    for workers in (2, 3):
        assert run(damaged, "--workers", workers) == (code, problems, out)


def test_array_tasks_split_the_shards_and_add_up(damaged, monkeypatch):
    _, problems, _ = run(damaged)
    found, entries = [], 0
    for task in range(SHARDS):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))  # as an array job's task sees them
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", str(SHARDS))
        r = cli("verify", damaged, "--quiet", "--workers", 2, expect=1)
        assert f"task {task} of {SHARDS}: checking shard(s) {task} of {SHARDS}" in r.stderr
        lines = [line for line in r.stderr.splitlines() if line.startswith("problem: ")]
        assert all(line.startswith(f"problem: {shard_name(task, SHARDS)}") or " img: " in line for line in lines)
        found += lines
        entries += int(r.stdout.split()[0])
    assert entries == 10
    # the frame moved to the other shard is read by the other task: its own shard's task finds
    # it missing as well (one process over the whole store counts it where its entry is)
    assert sorted(found) == sorted(problems + ["problem: pool2 img: 2 images, metadata says 3"])
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    r = cli("verify", damaged, "--quiet", expect=2)
    assert "task 2 of 3 has none to check; use --num-shards 2 or fewer" in r.output


def test_checksums_only_catches_changed_bytes_but_not_images_written_bad(damaged, clean):
    _, full, _ = run(damaged)
    code, problems, out = run(damaged, "--checksums-only", "--workers", 2)
    assert code == 1 and out.strip() == "10 entries checked, 4 problems, 0 recorded failures: DAMAGED"
    assert problems == [p for p in full if "does not decode" not in p]  # eye2's bytes match their checksum
    assert run(clean, "--checksums-only") == (0, [], "10 entries checked, 0 problems, 0 recorded failures: OK\n")
    assert "without decoding" in cli("verify", "--help").output


def test_a_store_written_before_checksums_is_only_counted_without_decoding(clean, tmp_path):
    store = shutil.copytree(clean, tmp_path / "old")
    for shard in range(SHARDS):
        for db in (b"checksums", b"entries", b"params"):  # nor had it the compact index
            images_db(store, shard, lambda txn, db: txn.drop(db, delete=False), db=db)
        metas = images_db(store, shard, lambda txn, db: list(txn.cursor(db=db)), db=b"meta")
        for key, value in metas:
            old = bytes(value).replace(b', "checksum": "crc32"', b"").replace(b'"checksum": "crc32", ', b"")
            images_db(store, shard, lambda txn, db, k=bytes(key), v=old: txn.put(k, v, db=db), db=b"meta")
    Store(store).close()
    code, problems, out = run(store, "--checksums-only")
    assert (code, problems) == (0, [])
    assert "note: 10 of 10 entries carry no checksums" in out and "only counted their images" in out
