"""The compact index (store format 2): a few thousand entries in at most 150 bytes each, no Python
object per entry; stores of format 1 (no ``entries``/``params``) read the same and are brought to
format 2 by the next writer or `tsn-prep upgrade`."""
import json
import shutil
import tracemalloc

import lmdb
import pytest

from tsn_core.meta import EntryMeta
from tsn_prep.report import store_info
from tsn_core.store import Store
from tsn_core.store.shards import shard_name
from tsn_prep.writer import ShardWriter

from .conftest import cli

SHARDS = 2
VIDEOS = 1500  # 3000 entries
TVL1 = {"tau": 0.25, "lambda": 0.15, "theta": 0.3, "scales": 5, "warps": 5, "epsilon": 0.01}


def meta_of(i: int, modality: str) -> EntryMeta:
    """Metadata shaped as extraction writes it; two parameter sets, some warnings, a long id."""
    params = {"size": [340, 256], "short_side": None, "max_frames": None, "jpeg_quality": 95,
              "tsn_prep_version": "0.1.0"}
    if modality == "flow":
        params.update(bound=20.0 if i % 3 else 15.0, algorithm="tvl1", flow_backend="opencv", tvl1=TVL1)
    return EntryMeta(source=f"/data/kinetics/train/label_{i % 7}/{i:011d}_000014_000024.mp4",
                     num_frames=4, fps=29.97, source_size=(640, 360), declared_frames=4, decoder="opencv",
                     stored_size=(340, 256), parameters=params,
                     warning="decoded 4 of the 9 frames the container declares" if i % 250 == 0 else None)


def video_id(i: int) -> str:
    return ("é" * 300 + f"-{i}") if i == 7 else f"label_{i % 7}/{i:011d}_000014_000024"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("index") / "store"
    writers = [ShardWriter(root, k, SHARDS) for k in range(SHARDS)]
    from tsn_core.store.shards import shard_of
    for i in range(VIDEOS):
        vid = video_id(i)
        w = writers[shard_of(vid, SHARDS)]
        w.put_video(vid, "rgb", {"img": [b"r%d" % j for j in range(4)]}, meta_of(i, "rgb"))
        if i % 5:
            w.put_video(vid, "flow", {"flow_x": [b"x"] * 3, "flow_y": [b"y"] * 3}, meta_of(i, "flow"))
    for w in writers:
        w.close()
    return root


def format_1(src, dest):
    """A copy of ``src`` as format 1 had it: no ``entries`` or ``params``, layout version 1."""
    shutil.copytree(src, dest)
    for k in range(SHARDS):
        env = lmdb.open(str(dest / shard_name(k, SHARDS)), max_dbs=8)
        with env.begin(write=True) as txn:
            for name in (b"entries", b"params"):
                txn.drop(env.open_db(name, txn=txn), delete=True)
            info = env.open_db(b"info", txn=txn)
            layout = json.loads(txn.get(b"layout", db=info))
            txn.put(b"layout", json.dumps(dict(layout, version=1), sort_keys=True).encode(), db=info)
        env.close()
    return dest


def described(s: Store) -> dict:
    """Every entry as the index gives it, with what its full metadata says beside."""
    out = {}
    for (vid, mod), e in s.index.items():
        m = e.meta
        assert (e.count, e.num_frames, e.parameters, e.has_checksums, e.warned) == (
            m.count, m.num_frames, m.parameters, m.checksum == "crc32", m.warning is not None), (vid, mod)
        out[(vid, mod)] = (e.shard, e.count, e.num_frames, json.dumps(e.parameters, sort_keys=True), e.warned)
    return out


def test_the_index_is_the_metadata_in_at_most_150_bytes_an_entry(store):
    Store(store).close()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        s = Store(store)
        index = s.index
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    n = len(index)
    assert n == VIDEOS + VIDEOS * 4 // 5
    assert held / n <= 150, f"{held / n:.0f} bytes an entry"
    got = described(s)
    assert len(got) == n
    long_id = video_id(7)
    assert (long_id, "rgb") in index and index[(long_id, "rgb")].video_id == long_id  # full id, not the key form
    assert ("label_1/00000000001_000014_000024", "flow") in index
    assert ("label_0/00000000005_000014_000024", "flow") not in index  # i % 5 == 0: rgb only
    assert ("nope", "rgb") not in index and ("label_1/00000000001_000014_000024", "warped_flow") not in index
    with pytest.raises(KeyError, match="has no warped_flow"):
        s.entry("label_1/00000000001_000014_000024", "warped_flow")
    assert s.videos("flow") == sorted(video_id(i) for i in range(VIDEOS) if i % 5)


def test_a_lookup_finds_each_key_at_its_row_and_nothing_between_keys(store):
    """Every key of every shard at its row (so at every boundary of the sampled keys a lookup
    bisects first), and keys that sort between, before and after stored ones not at all."""
    s = Store(store)
    for table in s.index.tables.values():
        keys = [table.key(row) for row in range(len(table))]
        assert keys == sorted(keys) and len(keys) > 100
        for row, key in enumerate(keys):
            assert table.find(key) == row
            for near in (key[:-1], key + b"\x00", key + b"0", key[:-1] + bytes([key[-1] + 1])):
                assert table.find(near) == (keys.index(near) if near in keys else None)
        assert table.find(b"") is None and table.find(b"\x00") is None and table.find(b"\xff" * 8) is None
    counts = {vid: s.index.count(vid, "flow") for vid in map(video_id, range(VIDEOS))}
    assert counts == {video_id(i): (3 if i % 5 else None) for i in range(VIDEOS)}


def test_info_counts_from_the_index(store):
    info = store_info(Store(store))
    flows = VIDEOS * 4 // 5
    assert info["videos"] == VIDEOS
    assert info["modalities"]["rgb"]["videos"] == VIDEOS
    assert info["modalities"]["rgb"]["images_per_channel"] == 4 * VIDEOS
    assert info["modalities"]["flow"]["frames_decoded"] == 4 * flows
    bounds = [(p["videos"], p["bound"]) for p in info["modalities"]["flow"]["parameters"]]
    fifteen = sum(1 for i in range(VIDEOS) if i % 5 and i % 3 == 0)
    assert bounds == [(flows - fifteen, 20.0), (fifteen, 15.0)]  # each distinct set once, most first
    assert [w["video_id"] for w in info["warnings"]] == sorted(
        video_id(i) for i in range(VIDEOS) if i % 250 == 0 for _ in (("rgb",) + (("flow",) if i % 5 else ())))


def test_a_format_1_store_reads_the_same_and_the_next_writer_upgrades_it(store, tmp_path):
    want = described(Store(store))
    want_info = store_info(Store(store))
    old = format_1(store, tmp_path / "old")
    s = Store(old)
    assert described(s) == want  # read from the metadata itself
    assert {k: v for k, v in store_info(s).items() if k not in ("root", "shards", "bytes")} == \
        {k: v for k, v in want_info.items() if k not in ("root", "shards", "bytes")}
    s.close()
    r = cli("upgrade", old)
    assert "2 shard(s) of" in r.output and "format 2" in r.output
    Store(store).close()  # this process's read handles, before raw ones
    Store(old).close()
    for k in range(SHARDS):
        path = shard_name(k, SHARDS)
        new, ref = (lmdb.open(str(d / path), readonly=True, lock=False, max_dbs=8) for d in (old, store))
        for name in (b"entries", b"params"):
            with new.begin(db=new.open_db(name)) as a, ref.begin(db=ref.open_db(name)) as b:
                assert list(a.cursor()) == list(b.cursor())  # the bytes format 2 writes
        with new.begin(db=new.open_db(b"info")) as txn:
            assert json.loads(txn.get(b"layout"))["version"] == 2
        new.close()
        ref.close()
    assert described(Store(old)) == want


def test_verify_finds_an_index_that_disagrees_with_the_metadata(store, tmp_path):
    damaged = shutil.copytree(store, tmp_path / "damaged")
    vid = video_id(1)
    from tsn_core.store.keys import entry_key
    from tsn_core.store.shards import shard_of
    Store(damaged).close()
    env = lmdb.open(str(damaged / shard_name(shard_of(vid, SHARDS), SHARDS)), max_dbs=8)
    with env.begin(write=True) as txn:  # the index record's count (its first 4 bytes) 4 -> 3
        entries = env.open_db(b"entries", txn=txn)
        record = bytes(txn.get(entry_key(vid, "rgb"), db=entries))
        txn.put(entry_key(vid, "rgb"), (3).to_bytes(4, "little") + record[4:], db=entries)
    env.close()
    r = cli("verify", damaged, "--quiet", expect=1)
    assert f"problem: {vid} rgb: the store's index entry disagrees with its metadata" in r.stderr
    assert Store(damaged).entry(vid, "rgb").count == 3  # what the index says, until repaired
