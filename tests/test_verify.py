"""`tsn-prep verify` on stores damaged behind the store's back: a bit flipped in data.mdb on disk,
and with lmdb orphans, wrong shards, missing checksums, bad metadata; recorded failures; stores
written before checksums were recorded; checking on read."""
import json
import shutil
import zlib

import lmdb
import pytest

from tsn_prep.verify import EXIT_DAMAGED, EXIT_FAILURES, EXIT_OK
from tsn_core.store import CHECK_ENV, ChecksumError, Store
from tsn_core.store.keys import checksums_key, entry_key, image_key
from tsn_core.store.shards import shard_name, shard_of

from .conftest import cli, decode, link_videos

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


def images_db(store, shard, change, db=b"images"):
    """Apply ``change(txn, db)`` to one shard's database ``db`` in one transaction, as raw lmdb."""
    Store(store).close()  # release this process's read handles before writing behind their back
    env = lmdb.open(str(store / shard_name(shard, SHARDS)), max_dbs=5)
    try:
        handle = env.open_db(db, create=False)
        with env.begin(write=True) as txn:
            return change(txn, handle)
    finally:
        env.close()


def verify(store):
    r = cli("verify", store, "--quiet", expect=None)
    problems = sorted(line for line in r.stderr.splitlines() if line.startswith("problem: "))
    return r.exit_code, problems, r.stdout.strip()


def test_clean_store_verifies(clean):
    assert verify(clean) == (EXIT_OK, [], "3 entries checked, 0 problems, 0 recorded failures: OK")


def test_every_image_has_its_checksum(clean, tmp_path):
    """Extraction (the engine) and import-frames both record a CRC-32 per image, as documented:
    4 big-endian bytes per image of a channel under ``<id>|<channel>``, and ``checksum`` in meta."""
    folders = tmp_path / "folders"
    cli("export", clean, folders, "--quiet")
    cli("import-frames", folders, tmp_path / "imported", "--quiet")
    for root in (clean, tmp_path / "imported"):
        s = Store(root)
        assert sorted(s.index) == [(v, "rgb") for v in IDS]
        for vid in IDS:
            assert s.entry(vid, "rgb").meta.checksum == "crc32"
            jpegs = s.read(vid, "img", [0, 1, 2])
            assert s.checksums(vid, "img") == b"".join(zlib.crc32(j).to_bytes(4, "big") for j in jpegs)
        s.close()


def flip_a_bit(store, video_id, channel, index):
    """Flip one bit in the middle of the entropy-coded data of a stored JPEG, in the shard's
    data.mdb on disk, as a failing disk or copy would; returns the JPEG (before, after)."""
    s = Store(store, check=False)
    jpeg = s.get(video_id, channel, index)
    s.close()
    sos = jpeg.index(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big"), jpeg.rindex(b"\xff\xd9")
    pos = (start + end) // 2
    while 0xFF in jpeg[pos - 1:pos + 1] or jpeg[pos] ^ 0x04 == 0xFF:  # no marker made or broken
        pos += 1
    damaged = jpeg[:pos] + bytes([jpeg[pos] ^ 0x04]) + jpeg[pos + 1:]
    path = store / shard_name(shard_of(video_id, SHARDS), SHARDS) / "data.mdb"
    raw = path.read_bytes()
    assert raw.count(jpeg) == 1  # the image's one copy in the file
    with open(path, "r+b") as f:
        f.seek(raw.index(jpeg) + pos)
        f.write(damaged[pos:pos + 1])
    assert (decode(damaged) != decode(jpeg)).any()  # still decodes, to other pixels: silent
    return jpeg, damaged


def test_a_flipped_bit_that_still_decodes_is_damage(store):
    jpeg, damaged = flip_a_bit(store, "car", "img", 1)
    car = shard_name(shard_of("car", SHARDS), SHARDS)
    assert verify(store) == (EXIT_DAMAGED, [
        f"problem: {car}: car img 1: checksum mismatch (crc32 {zlib.crc32(damaged):08x}, "
        f"recorded {zlib.crc32(jpeg):08x} when written): the stored bytes have changed",
    ], "3 entries checked, 1 problems, 0 recorded failures: DAMAGED")


def test_checking_readers_refuse_the_damaged_image(store, monkeypatch):
    monkeypatch.delenv(CHECK_ENV, raising=False)
    jpeg, damaged = flip_a_bit(store, "car", "img", 1)
    where = rf"{shard_name(shard_of('car', SHARDS), SHARDS)}: car img 1: checksum mismatch"
    s = Store(store, check=False)
    assert s.get("car", "img", 1) == damaged
    with pytest.raises(ChecksumError, match=where):
        s.get("car", "img", 1, check=True)
    checking = Store(store)  # checking, by default
    with pytest.raises(ChecksumError, match=where):
        checking.read("car", "img", [0, 1, 2])
    assert checking.read("car", "img", [2, 0]) == s.read("car", "img", [2, 0])  # the good ones
    assert checking.get("car", "img", 1, check=False) == damaged
    assert [checking.get(v, "img", 1) for v in ("arm", "eye")] == [s.get(v, "img", 1) for v in ("arm", "eye")]
    monkeypatch.setenv(CHECK_ENV, "0")  # e.g. TSN_STORE_CHECK=0 tsn-train fit ...
    assert Store(store).read("car", "img", [1]) == [damaged]
    with pytest.raises(ChecksumError, match=where):
        Store(store, check=True).read("car", "img", [1])


def test_a_recorded_failure_alone_is_not_damage(tmp_path):
    videos = link_videos(tmp_path / "videos", {"arm.mp4": "armwrestling_kinetics.mp4"})
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 100)
    cli("extract-frames", videos, tmp_path / "store", "--max-frames", 3, "--size", "112x84", "--quiet",
        expect=None)
    r = cli("verify", tmp_path / "store", "--quiet", expect=EXIT_FAILURES)
    assert [line.split(": ")[0] for line in r.stderr.splitlines()] == ["failed extraction"]
    assert "broken.mp4 [rgb]" in r.stderr
    assert r.stdout.splitlines()[-1] == \
        "1 entries checked, 0 problems, 1 recorded failures: FAILURES RECORDED, no damage"


def written_before_checksums(store):
    """Make the store what tsn-prep wrote before checksums were recorded (docs/format.md): the
    four databases images, meta, failures and info, and meta entries without ``checksum``."""
    for shard in range(SHARDS):
        for db in (b"checksums", b"entries", b"params"):  # nor the compact index (format 2)
            images_db(store, shard, lambda txn, db: txn.drop(db, delete=True), db=db)

        def strip(txn, db):
            for key, value in list(txn.cursor(db=db)):
                meta = json.loads(value)
                del meta["checksum"]
                txn.put(key, json.dumps(meta, sort_keys=True).encode(), db=db)
        images_db(store, shard, strip, db=b"meta")
        env = lmdb.open(str(store / shard_name(shard, SHARDS)), readonly=True, lock=False)
        with env.begin() as txn:
            assert sorted(bytes(k) for k, _ in txn.cursor()) == [b"failures", b"images", b"info", b"meta"]
        env.close()


def test_a_store_written_before_checksums_still_verifies(store):
    written_before_checksums(store)
    r = cli("verify", store, "--quiet", expect=EXIT_OK)
    assert r.stdout.splitlines() == [
        "note: 3 of 3 entries carry no checksums (written before tsn-prep recorded them): their "
        "images were decoded and counted, but a changed byte that still decodes goes unnoticed there",
        "3 entries checked, 0 problems, 0 recorded failures: OK",
    ]
    assert r.stderr == ""
    s = Store(store, check=True)  # nothing to check against: read as before
    assert s.read("car", "img", [0, 1, 2]) == Store(store, check=False).read("car", "img", [0, 1, 2])
    assert s.checksums("car", "img") is None


def test_missing_checksums_and_unreadable_metadata_are_damage(store):
    car, eye = shard_of("car", SHARDS), shard_of("eye", SHARDS)
    images_db(store, car, lambda txn, db: txn.delete(checksums_key("car", "img"), db=db), db=b"checksums")
    assert verify(store) == (EXIT_DAMAGED, [
        "problem: car img: 0 crc32 checksums stored, metadata says 3 images",
    ], "3 entries checked, 1 problems, 0 recorded failures: DAMAGED")
    images_db(store, eye, lambda txn, db: txn.put(entry_key("eye", "rgb"), b'{"count": 3, "chan', db=db),
              db=b"meta")
    got = verify(store)
    assert got[0] == EXIT_DAMAGED and got[1] == [
        f"problem: {store / shard_name(eye, SHARDS)}: damaged: the meta entry of eye rgb does not "
        "match its checksum: its bytes have changed; "
        'restore the shard from a copy, or re-extract its videos (docs/format.md, "A damaged shard")',
    ] and got[2].endswith(" entries checked, 1 problems, 0 recorded failures: DAMAGED")


def test_orphan_images(store):
    """Images whose video has no complete entry for their modality: an unknown video, and flow of
    a video that has only rgb."""
    arm, ghost = shard_of("arm", SHARDS), shard_of("ghost", SHARDS)
    jpeg = images_db(store, arm, lambda txn, db: txn.get(image_key("arm", "img", 0), db=db))
    images_db(store, arm, lambda txn, db: txn.put(image_key("arm", "flow_x", 0), jpeg, db=db))
    images_db(store, ghost, lambda txn, db: txn.put(image_key("ghost", "img", 0), jpeg, db=db))
    assert verify(store) == (EXIT_DAMAGED, sorted([
        f"problem: {shard_name(arm, SHARDS)}: arm flow_x 0: image without a complete entry (orphan)",
        f"problem: {shard_name(ghost, SHARDS)}: ghost img 0: image without a complete entry (orphan)",
    ]), "3 entries checked, 2 problems, 0 recorded failures: DAMAGED")


def test_image_in_the_wrong_shard(store):
    """car's second frame moved to the other shard: the count still matches, the shard does not."""
    right = shard_of("car", SHARDS)
    wrong = 1 - right
    key = image_key("car", "img", 1)
    jpeg = images_db(store, right, lambda txn, db: txn.pop(key, db=db))
    assert jpeg is not None
    images_db(store, wrong, lambda txn, db: txn.put(key, jpeg, db=db))
    assert verify(store) == (EXIT_DAMAGED, [
        f"problem: {shard_name(wrong, SHARDS)}: car img 1: stored in the wrong shard "
        f"(entry in shard {right})",
    ], "3 entries checked, 1 problems, 0 recorded failures: DAMAGED")
