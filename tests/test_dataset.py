"""VideoDataset over a real store: the right images, in the right channel order, reproducibly."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import CLIPS, decode
from tsn_core.store import Store
import pickle

from tsn_train.config import REFERENCE
from tsn_train.dataset import MemoryImages, ShardSampler, StoreImages, VideoDataset
from tsn_core.lists import Record
from tsn_train.lists import validate
from tsn_train.sampling import center_starts, sample_indices
from tsn_train.transforms import NORMS, EvalCrops, TrainAugment, to_input

RECORDS = [Record(c, i) for i, c in enumerate(CLIPS)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dataset(store, modality, train, segments=3, source=None):
    counts = validate(RECORDS, Store(store), modality, 5)
    is_flow = modality == "flow"
    transform = (TrainAugment(64, REFERENCE[modality].scales, is_flow) if train
                 else EvalCrops(64, 84, 1, is_flow))  # 112x84 frames: centre 64x64, no resize
    return VideoDataset(source or StoreImages(store), RECORDS, counts, modality, segments, train, transform, seed=7)


@pytest.mark.parametrize("modality", ["rgb", "flow", "rgbdiff"])
def test_eval_items_are_the_stored_images_at_segment_centres(train_store, modality):
    ds = dataset(train_store, modality, train=False)
    store = Store(train_store)
    x, label = ds[3]  # "tree"
    count = 15 if modality == "flow" else 40
    length = {"rgb": 1, "flow": 5, "rgbdiff": 6}[modality]
    snippets = sample_indices(center_starts(count, length, 3), length, count)
    channels = ["flow_x", "flow_y"] if modality == "flow" else ["img"]
    images = [[decode(store.get("tree", ch, i)) for ch in channels] for s in snippets for i in s]
    frames = np.stack([np.stack(im, -1) if len(im) == 2 else im[0] for im in images])
    frames = frames[:, 10:74, 24:88].reshape(3, length, 64, 64, -1)  # the centre crop of 84x112
    assert label == 3
    # uint8 images, exactly the stored pixels; the network's input is made on the device
    assert x.dtype == torch.uint8 and x.shape == (1, 3, length, 64, 64, 2 if modality == "flow" else 3)
    assert np.array_equal(x[0].numpy(), frames)
    net = to_input(x, modality, NORMS["caffe_bgr"])
    assert net.shape == (1, 3, {"rgb": 3, "flow": 10, "rgbdiff": 15}[modality], 64, 64)
    if modality == "flow":  # channel 2 is the x component of the snippet's second field
        assert torch.equal(net[0, 0, 2], torch.from_numpy(frames[0, 1, :, :, 0]).float() - 128)


def test_training_items_depend_only_on_seed_epoch_and_index(train_store):
    ds = dataset(train_store, "flow", train=True)
    a, b = ds[1][0], ds[1][0]
    assert a.shape == (3, 5, 64, 64, 2) and torch.equal(a, b)
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], a) and torch.equal(ds[(0, 1)][0], a) and torch.equal(ds[(1, 1)][0], ds[1][0])
    ds.set_epoch(0)
    one = [x for x, _ in DataLoader(ds, batch_size=2, num_workers=0)]
    two = [x for x, _ in DataLoader(ds, batch_size=2, num_workers=2)]
    assert all(torch.equal(p, q) for p, q in zip(one, two)) and len(one) == 3


def test_persistent_workers_draw_each_epochs_augmentation(train_store):
    """Workers that live across epochs never see set_epoch: the sampler's (epoch, item) keys
    must give them the epoch, or every epoch would repeat the first one's crops."""
    ds = dataset(train_store, "flow", train=True)
    sampler = ShardSampler(len(ds), shuffle=True, seed=3)
    loader = DataLoader(ds, batch_size=5, sampler=sampler, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)  # what fit does; the dataset in the workers is never told
        (x, y), = list(loader)
        expected = [ds[(epoch, i)] for i in sampler.order()]
        assert torch.equal(x, torch.stack([e[0] for e in expected]))
        assert y.tolist() == [e[1] for e in expected]
        epochs.append(x)
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])


def test_a_store_source_pickles_without_its_handle_and_memory_images_read_the_same(train_store):
    images = StoreImages(train_store)
    first = images.read("tree", "flow_x", [0, 3])
    assert images._store is not None  # opened on first read...
    clone = pickle.loads(pickle.dumps(images))
    assert clone._store is None and clone.root == images.root  # ...and never pickled
    assert clone.read("tree", "flow_x", [0, 3]) == first
    # predict's in-memory images give the same items as the store they came from
    store = Store(train_store)
    count = store.entry("tree", "flow").meta.count
    memory = MemoryImages({ch: store.read("tree", ch, list(range(count))) for ch in ("flow_x", "flow_y")})
    a = dataset(train_store, "flow", train=False)
    b = dataset(train_store, "flow", train=False, source=memory)
    assert torch.equal(a[3][0], b[3][0])
