"""`tsn-prep verify` on stores damaged behind the store's back with lmdb: orphans, wrong shards."""
import shutil

import lmdb
import pytest

from tsn_prep.store import image_key, shard_name, shard_of

from .conftest import cli, link_videos

IDS = ["arm", "car", "eye"]
SHARDS = 2


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """rgb of three real clips (3 frames, 112x84) in a 2-shard store, both shards extracted."""
    root = tmp_path_factory.mktemp("verify")
    videos = link_videos(root / "videos", {"arm.mp4": "armwrestling_kinetics.mp4",
                                           "car.mp4": "carphone.mp4",
                                           "eye.avi": "eyemakeup_ucf101like.avi"})
    for k in range(SHARDS):
        cli("extract-frames", videos, root / "store", "--max-frames", 3, "--size", "112x84",
            "--num-shards", SHARDS, "--shard-index", k, "--quiet")
    assert {shard_of(v, SHARDS) for v in IDS} == {0, 1}  # both shards hold videos
    return root / "store"


@pytest.fixture
def store(clean, tmp_path):
    """A private copy of the clean store to damage."""
    return shutil.copytree(clean, tmp_path / "store")


def images_db(store, shard, change):
    """Apply ``change(txn, images_db)`` to one shard in one transaction, as raw lmdb."""
    env = lmdb.open(str(store / shard_name(shard, SHARDS)), max_dbs=4)
    try:
        db = env.open_db(b"images", create=False)
        with env.begin(write=True) as txn:
            return change(txn, db)
    finally:
        env.close()


def verify(store):
    r = cli("verify", store, "--quiet", expect=None)
    problems = sorted(line for line in r.stderr.splitlines() if line.startswith("problem: "))
    return r.exit_code, problems, r.stdout.strip()


def test_clean_store_verifies(clean):
    assert verify(clean) == (0, [], "3 entries checked, 0 problems, 0 recorded failures")


def test_orphan_images(store):
    """Images whose video has no complete entry for their modality: an unknown video, and flow of
    a video that has only rgb."""
    arm, ghost = shard_of("arm", SHARDS), shard_of("ghost", SHARDS)
    jpeg = images_db(store, arm, lambda txn, db: txn.get(image_key("arm", "img", 0), db=db))
    images_db(store, arm, lambda txn, db: txn.put(image_key("arm", "flow_x", 0), jpeg, db=db))
    images_db(store, ghost, lambda txn, db: txn.put(image_key("ghost", "img", 0), jpeg, db=db))
    assert verify(store) == (1, sorted([
        f"problem: {shard_name(arm, SHARDS)}: arm flow_x 0: image without a complete entry (orphan)",
        f"problem: {shard_name(ghost, SHARDS)}: ghost img 0: image without a complete entry (orphan)",
    ]), "3 entries checked, 2 problems, 0 recorded failures")


def test_image_in_the_wrong_shard(store):
    """car's second frame moved to the other shard: the count still matches, the shard does not."""
    right = shard_of("car", SHARDS)
    wrong = 1 - right
    key = image_key("car", "img", 1)
    jpeg = images_db(store, right, lambda txn, db: txn.pop(key, db=db))
    assert jpeg is not None
    images_db(store, wrong, lambda txn, db: txn.put(key, jpeg, db=db))
    assert verify(store) == (1, [
        f"problem: {shard_name(wrong, SHARDS)}: car img 1: stored in the wrong shard "
        f"(entry in shard {right})",
    ], "3 entries checked, 1 problems, 0 recorded failures")
