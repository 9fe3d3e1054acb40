"""The LMDB shard store: round trips, atomic entries with checksums, map growth, sharding,
fork-safe readers."""
import hashlib
import multiprocessing as mp
import os
import zlib

import numpy as np
import pytest

from tsn_prep.folders import export_store
from tsn_core.meta import EntryMeta
from tsn_core.errors import StoreError
from tsn_core.store import Store
from tsn_core.store.shards import shard_of
from tsn_prep.writer import ShardWriter


def frames(n, size=100, tag=b"f"):
    return [tag + bytes([i % 256]) * size for i in range(n)]


def test_round_trip_and_metadata(tmp_path):
    w = ShardWriter(tmp_path / "out")
    w.put_failure("cls/a", "rgb", "/x/a.mp4", "boom")
    w.put_video("cls/a", "rgb", {"img": frames(3)}, EntryMeta(num_frames=3, fps=25.0))
    w.put_video("cls/a", "flow", {"flow_x": frames(2, tag=b"x"), "flow_y": frames(2, tag=b"y")},
                EntryMeta(num_frames=3))
    assert w.is_complete("cls/a", "rgb") and not w.is_complete("cls/a", "warped_flow")
    w.close()
    s = Store(tmp_path / "out")
    assert s.videos("rgb") == ["cls/a"] and s.modalities() == ["flow", "rgb"]
    assert s.entry("cls/a", "rgb").meta.count == 3
    assert s.entry("cls/a", "flow").meta.channels == ("flow_x", "flow_y")
    assert s.get("cls/a", "img", 2) == frames(3)[2]
    assert s.get("cls/a", "flow_y", 1) == frames(2, tag=b"y")[1]
    with pytest.raises(KeyError):
        s.get("cls/a", "img", 3)
    assert s.failures() == []  # the success replaced the earlier failure


def test_images_checksums_and_meta_are_one_transaction(tmp_path):
    """put_video commits the images, a CRC-32 per image (docs/format.md: 4 big-endian bytes each
    under ``<id>|<channel>`` in ``checksums``) and the meta entry naming it, in one commit."""
    w = ShardWriter(tmp_path)
    images = {"flow_x": frames(3, tag=b"x"), "flow_y": frames(3, tag=b"y")}
    before = w.env.info()["last_txnid"]
    w.put_video("v", "flow", images, EntryMeta())
    assert w.env.info()["last_txnid"] == before + 1
    with w.env.begin() as txn:
        assert txn.id() == before + 1  # everything below was committed by that transaction
        assert txn.get(b"v|flow", db=w.dbs["meta"]) is not None
        for channel, data in images.items():
            assert [txn.get(f"v|{channel}|{i:06d}".encode(), db=w.dbs["images"]) for i in range(3)] == data
            assert txn.get(f"v|{channel}".encode(), db=w.dbs["checksums"]) == \
                b"".join(zlib.crc32(d).to_bytes(4, "big") for d in data)
    w.close()
    s = Store(tmp_path, check=True)
    assert s.entry("v", "flow").meta.checksum == "crc32"
    assert s.read("v", "flow_y", [2, 0]) == [images["flow_y"][2], images["flow_y"][0]]


def test_channels_must_match_the_modality(tmp_path):
    w = ShardWriter(tmp_path)
    with pytest.raises(ValueError):
        w.put_video("a", "flow", {"flow_x": frames(2)}, EntryMeta())
    with pytest.raises(ValueError):
        w.put_video("a", "flow", {"flow_x": frames(2), "flow_y": frames(3)}, EntryMeta())
    assert not w.is_complete("a", "flow")


def test_map_grows_when_full(tmp_path):
    w = ShardWriter(tmp_path, map_size=64 * 1024)
    big = frames(40, size=50_000)  # 2 MB into a 64 KiB map
    w.put_video("v", "rgb", {"img": big}, EntryMeta())
    assert w.env.info()["map_size"] > 2_000_000
    w.close()
    assert Store(tmp_path).get("v", "img", 39) == big[39]


def test_shard_assignment_is_the_documented_hash():
    ids = [f"Class{i % 7}/v_{i:04d}" for i in range(400)]
    for vid in ids[:20]:
        expected = int.from_bytes(hashlib.sha1(vid.encode()).digest()[:8], "big") % 4
        assert shard_of(vid, 4) == expected
    counts = [sum(shard_of(v, 4) == k for v in ids) for k in range(4)]
    assert min(counts) > 60  # roughly balanced
    assert all(shard_of(v, 1) == 0 for v in ids)


def test_jobs_write_only_their_shard_and_readers_see_all(tmp_path):
    ids = [f"v{i}" for i in range(12)]
    for k in range(3):
        w = ShardWriter(tmp_path, k, 3)
        for vid in ids:
            if shard_of(vid, 3) == k:
                w.put_video(vid, "rgb", {"img": frames(2, tag=vid.encode())}, EntryMeta())
        w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"shard-0000{k}-of-00003" for k in range(3)]
    s = Store(tmp_path)
    assert s.videos("rgb") == sorted(ids)
    for vid in ids:
        assert s.entry(vid, "rgb").shard == shard_of(vid, 3)
        assert s.get(vid, "img", 1) == frames(2, tag=vid.encode())[1]


def test_a_different_shard_count_is_refused(tmp_path):
    ShardWriter(tmp_path, 0, 2).close()
    with pytest.raises(StoreError, match="2-shard layout"):
        ShardWriter(tmp_path, 0, 3)


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not a tsn store"):
        Store(tmp_path)


def _child_read(store, queue):
    queue.put(store.get("v", "img", 1))


def test_a_forked_child_reads_through_the_parents_handle(tmp_path):
    """Reads are pread calls on a file descriptor (no map, no file offset): a loader worker forked
    after the parent opened the store reads through the same handle, and so does the parent."""
    w = ShardWriter(tmp_path)
    w.put_video("v", "rgb", {"img": frames(2)}, EntryMeta())
    w.close()
    s = Store(tmp_path)
    assert s.get("v", "img", 0) == frames(2)[0]  # the parent has open handles before forking
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(s, q))
    p.start()
    data = q.get(timeout=30)
    p.join(30)
    assert p.exitcode == 0
    assert data == frames(2)[1]
    assert s.get("v", "img", 1) == frames(2)[1]


def test_readers_need_no_write_access(tmp_path):
    w = ShardWriter(tmp_path)
    w.put_video("v", "rgb", {"img": frames(2)}, EntryMeta())
    w.close()
    shard = next(tmp_path.iterdir())
    (shard / "lock.mdb").unlink()  # a read-only copy of a store has no lock file
    s = Store(tmp_path)
    assert s.get("v", "img", 0) == frames(2)[0]
    assert not (shard / "lock.mdb").exists()


def _resident_after(path, read) -> int:
    """How many pages of ``path`` are in the page cache after ``read()``, starting from none: what
    one read brought in, read-ahead included (mincore on a map of the file; the map itself reads
    nothing)."""
    import ctypes
    import mmap

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped
        read()
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        pages = -(-size // mmap.PAGESIZE)
        vec = (ctypes.c_ubyte * pages)()
        view = np.frombuffer(m, np.uint8)
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), vec)
        assert ok == 0, ctypes.get_errno()
        del view
        m.close()
        return sum(v & 1 for v in vec)
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_whole_store_scans_read_ahead_and_other_reads_do_not(tmp_path):
    w = ShardWriter(tmp_path / "out")
    for v in "abcdefgh":
        w.put_video(v, "rgb", {"img": frames(16, size=30000, tag=v.encode())}, EntryMeta(num_frames=16))
    w.close()
    s = Store(tmp_path / "out")
    data = s.shard_paths[0] / "data.mdb"
    want = frames(16, size=30000, tag=b"a")

    def read_a() -> None:  # video a's images in order: file order too
        assert s.read("a", "img", list(range(16))) == want

    scattered = _resident_after(data, read_a)
    assert scattered <= 16 * 8 + 8  # the images' pages, their leaf, the meta and database pages: no more
    with s.sequential():
        scanned = _resident_after(data, read_a)
    assert scanned >= scattered + 32  # read ahead, past what was read
    assert _resident_after(data, read_a) <= scattered  # the advice is given back
    for _ in s.iter_images():  # a scan left early gives the advice back too
        break
    assert _resident_after(data, read_a) <= scattered
    with s.sequential():
        with Store(tmp_path / "out").sequential():
            pass
        assert _resident_after(data, read_a) >= scattered + 32  # the outer scan's advice stays
    assert _resident_after(data, read_a) <= scattered
    assert export_store(s, tmp_path / "folders") == 128  # images
    assert (tmp_path / "folders" / "h" / "img_00016.jpg").read_bytes() == frames(16, size=30000, tag=b"h")[15]
