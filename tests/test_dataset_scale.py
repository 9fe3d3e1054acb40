"""VideoDataset at dataset scale: its per-video state is a few numpy arrays (``Videos``), tens of
bytes a video and no Python object per video (which forked loader workers would copy page by
page as they touch it), and it samples exactly what the simple implementation it replaced did:
the same image indices, the same items, the same batches through workers, bit for bit."""
import gc
import tracemalloc

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tsn_core.lists import ListError, Record
from tsn_core import modalities
from tsn_core.meta import EntryMeta
from tsn_core.store import Store
from tsn_core.store.shards import shard_of
from tsn_prep.writer import ShardWriter
from tsn_train.config import REFERENCE
from tsn_train.dataset import ShardSampler, StoreImages, VideoDataset
from tsn_train.lists import validate, validated
from tsn_train.sampling import center_starts, sample_indices, train_starts
from tsn_train.transforms import EvalCrops, TrainAugment
from tsn_train.videos import Videos

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VIDEOS = 2000  # 4000 entries
SHARDS = 2


def video_id(i: int) -> str:
    return f"ünïcode_{i % 7}/{i:011d}_000014_000024" if i % 97 == 0 else f"label_{i % 7}/{i:011d}_000014_000024"


def frames_of(i: int) -> int:
    return 1 + i % 11  # 1..11 frames: short videos (fewer starts than segments) and long ones


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Through the real writer: tiny JPEGs, each image its own pattern (so a wrong index shows)."""
    root = tmp_path_factory.mktemp("dataset_scale") / "store"
    writers = [ShardWriter(root, k, SHARDS) for k in range(SHARDS)]
    rng = np.random.default_rng(0)
    palette = [cv2.imencode(".jpg", rng.integers(0, 256, (12, 16, 3), np.uint8))[1].tobytes() for _ in range(23)]
    grey = [cv2.imencode(".jpg", rng.integers(0, 256, (12, 16), np.uint8))[1].tobytes() for _ in range(23)]
    for i in range(VIDEOS):
        vid, n = video_id(i), frames_of(i)
        w = writers[shard_of(vid, SHARDS)]
        meta = dict(num_frames=n, fps=25.0, source_size=(16, 12), stored_size=(16, 12), decoder="opencv")
        w.put_video(vid, "rgb", {"img": [palette[(i + j) % 23] for j in range(n)]},
                    EntryMeta(modality="rgb", source=f"/v/{vid}.mp4", **meta))
        if n > 1:
            w.put_video(vid, "flow", {"flow_x": [grey[(i + j) % 23] for j in range(n - 1)],
                                      "flow_y": [grey[(i + 2 * j + 1) % 23] for j in range(n - 1)]},
                        EntryMeta(modality="flow", source=f"/v/{vid}.mp4", **meta))
    for w in writers:
        w.close()
    return root


def records_for(modality: str) -> list[Record]:
    ids = [i for i in range(VIDEOS) if modality != "flow" or frames_of(i) > 1]
    return [Record(video_id(i), i % 7) for i in ids]


class Reference(torch.utils.data.Dataset):
    """VideoDataset as it was before its videos became arrays (commit 5556745): a list of Records
    and a dict of counts, the sampling and loading spelled out as that code had them."""

    def __init__(self, source, records, counts, modality, segments, train, transform, seed=0):
        self.source, self.records, self.counts = source, records, counts
        self.modality, self.segments, self.train, self.transform, self.seed = modality, segments, train, transform, seed
        self.epoch = 0

    def __len__(self):
        return len(self.records)

    def indices(self, i, rng):
        count = self.counts[self.records[i].video_id]
        length = modalities.get(self.modality).snippet_length
        starts = (train_starts(count, length, self.segments, rng) if self.train
                  else center_starts(count, length, self.segments))
        return sample_indices(starts, length, count)

    load = VideoDataset.load  # reads and decodes by video id; untouched by the change

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, i]) if self.train else None
        record = self.records[i]
        snippets = self.indices(i, rng)
        frames = self.load(record.video_id, [j for s in snippets for j in s])
        frames = self.transform(frames, rng)
        k, length = len(snippets), len(snippets[0])
        frames = frames.reshape(*frames.shape[:-4], k, length, *frames.shape[-3:])
        return torch.from_numpy(np.ascontiguousarray(frames)), record.label


def pair(store, modality: str, train: bool, segments: int = 3):
    records = records_for(modality)
    counts = validate(records, Store(store), modality, 7)
    is_flow = modalities.get(modality).is_flow
    transform = (TrainAugment(8, REFERENCE[modality].scales, is_flow) if train
                 else EvalCrops(8, 9, 1, is_flow))
    args = (StoreImages(store), records, counts, modality, segments, train, transform)
    new = VideoDataset(StoreImages(store), validated(records, Store(store), modality, 7), None,
                       modality, segments, train, transform, seed=5)
    return new, Reference(*args, seed=5), records, counts


@pytest.mark.parametrize("modality,train", [("rgb", True), ("flow", True), ("rgbdiff", True),
                                            ("rgb", False), ("flow", False)])
def test_every_item_samples_and_loads_exactly_as_the_simple_implementation(store, modality, train):
    new, ref, records, counts = pair(store, modality, train)
    assert len(new) == len(ref) == len(records)
    for epoch in (0, 3):
        for i in range(len(records)):
            rng_new = np.random.default_rng([5, epoch, i])
            rng_ref = np.random.default_rng([5, epoch, i])
            assert new.indices(i, rng_new if train else None) == ref.indices(i, rng_ref if train else None)
            assert new.videos[i] == records[i] and new.videos.count(i) == counts[records[i].video_id]
    for i in list(range(0, len(records), 37)) + [len(records) - 1]:
        (x, y), (x_ref, y_ref) = new[(2, i)], ref[(2, i)]
        assert y == y_ref == records[i].label and type(y) is int
        assert x.dtype == x_ref.dtype and torch.equal(x, x_ref)


def test_training_batches_through_workers_are_bit_identical_to_the_simple_implementation(store):
    """What fit's loader yields (persistent workers, a shuffled padded sampler over two ranks'
    worth of items, two epochs) is the same tensors, batch for batch."""
    new, ref, _, _ = pair(store, "flow", train=True)
    batches = {}
    for name, ds in (("new", new), ("ref", ref)):
        sampler = ShardSampler(len(ds), rank=1, world=2, shuffle=True, seed=3, pad=True)
        loader = DataLoader(ds, batch_size=16, sampler=sampler, num_workers=2, persistent_workers=True)
        batches[name] = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for i, (x, y) in enumerate(loader):
                if i % 5 == 0:  # a fifth of the batches: enough to see any difference, quick
                    batches[name].append((x, y))
    assert len(batches["new"]) == len(batches["ref"]) > 10
    for (x, y), (x_ref, y_ref) in zip(batches["new"], batches["ref"]):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def held_per_video(store, make) -> tuple[float, object]:
    """Bytes a video that a dataset made by ``make(records, counts)`` keeps once its caller has
    dropped the records and counts it was given (traced by tracemalloc; numpy reports to it)."""
    counts = validate(records_for("rgb"), Store(store), "rgb", 7)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        records = records_for("rgb")  # fresh objects, ids included, as read_list makes them
        ds = make(records, dict(counts))
        del records
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return held / len(counts), ds


def test_the_dataset_holds_tens_of_bytes_a_video_and_no_object_per_video(store):
    augment = TrainAugment(8, REFERENCE["rgb"].scales, False)
    per_video, ds = held_per_video(store, lambda r, c: VideoDataset(StoreImages(store), r, c, "rgb", 3, True, augment))
    records = records_for("rgb")
    n, id_bytes = len(records), sum(len(r.video_id.encode()) for r in records)
    # the ids' UTF-8 bytes, then 24 bytes a video (offset, label, count); a Record, its id string
    # and a dict entry per video, as before, hold about 200
    assert ds.videos.nbytes == id_bytes + 8 + 24 * n
    assert per_video * n <= ds.videos.nbytes + 4096, (per_video, id_bytes / n)
    assert all(isinstance(v, (np.ndarray, memoryview)) for v in vars(ds.videos).values())
    assert [ds.videos.video_id(i) for i in range(n)] == [r.video_id for r in records]
    assert ds.videos.labels.tolist() == [r.label for r in records]
    # what the list of Records and dict of counts held instead, measured the same way
    ref_per_video, _ = held_per_video(store, lambda r, c: Reference(StoreImages(store), r, c, "rgb", 3, True, augment))
    assert per_video < 64 < 2 * 64 < ref_per_video, (per_video, ref_per_video)


def test_videos_read_back_their_records():
    records = [Record("ü/ß é", 3), Record("a", 0), Record("", 1), Record("x" * 500, 2)]
    v = Videos.of(records, [5, 1, 2, 9])
    assert list(v) == records and v[-1] == records[-1] and v[1:3] == records[1:3]
    assert [v.count(i) for i in range(4)] == [5, 1, 2, 9] and v.label(0) == 3
    assert Videos.of(records, {r.video_id: i for i, r in enumerate(records)}).counts.tolist() == [0, 1, 2, 3]
    with pytest.raises(IndexError):
        v.video_id(4)
    with pytest.raises(ValueError, match="counts"):
        Videos(v.ids, v.offsets, v.labels, v.counts[:2])
    with pytest.raises(ValueError, match="counts=None"):
        VideoDataset(StoreImages("."), v, {"a": 1}, "rgb", 3, False, None)


def test_validated_reports_what_validate_reports(store):
    s = Store(store)
    good = records_for("flow")[:50]
    v = validated(good, s, "flow", 7)
    assert v.counts.tolist() == [frames_of(int(r.video_id.split("/")[1][:11])) - 1 for r in good]
    # video 0 has 1 frame: no flow
    for call in (validate, validated):
        with pytest.raises(ListError, match=r"train list: 1 of 51 videos have no flow"):
            call(good + [Record(video_id(0), 0)], s, "flow", 7, "train list")
        with pytest.raises(ListError, match="labels must be in 0..5"):
            call(good, s, "flow", 6)
