"""``tsn-train export``: the exported ONNX and TorchScript models score real snippets as PyTorch
does (within 1e-4), for any batch size, with scaling and consensus inside."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import CLIPS, train_cli
from tests.helpers.synthetic_models import random_checkpoint
from tsn_train import checkpoint, export
from tsn_train.dataset import StoreImages
from tsn_train.protocol import dataset_for_test
from tsn_core.lists import Record
from tsn_train.lists import validate
from tsn_train.transforms import to_input
from tsn_core.store import Store

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")]


def real_snippets(store: Path, modality: str, prep) -> torch.Tensor:
    """(5, K=3, L, S, S, C) uint8: the centre-crop test snippets of the five real clips, read as
    ``tsn-train test`` reads them."""
    records = [Record(c, i) for i, c in enumerate(CLIPS)]
    s = Store(store)
    counts = validate(records, s, modality, len(CLIPS))
    s.close()
    ds = dataset_for_test(StoreImages(store), records, counts, prep, segments=3, crops=1)
    return torch.stack([ds[i][0][0] for i in range(len(CLIPS))])


# every modality's input scaling with a ResNet; BN-Inception (our own architecture file, Caffe's
# BGR 0-255 input) with the modality whose scaling differs most from the ResNet's
CASES = [("resnet18", "rgb"), ("resnet18", "rgbdiff"), ("resnet18", "flow"),
         ("bn_inception", "flow")]


@pytest.mark.parametrize("arch,modality", CASES)
def test_exported_models_score_as_pytorch(tmp_path, train_store, arch, modality):
    ckpt_path = tmp_path / "stream.pt"
    random_checkpoint(ckpt_path, arch, modality, CLIPS)
    ckpt = checkpoint.load(ckpt_path)
    x = real_snippets(train_store, modality, ckpt.preprocessing)
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == export.input_shape(ckpt)
    with torch.no_grad():
        ref = export.deployable(ckpt)(x).numpy()
        # the same as the training/test path: to_input, then the TSN with its consensus
        model = checkpoint.model_from_checkpoint(ckpt)
        direct = model(to_input(x, modality, ckpt.preprocessing.norm)).numpy()
    np.testing.assert_allclose(ref, direct, rtol=0, atol=1e-5)
    assert ref.std() > 0.5  # scores that could tell a wrong scaling from a right one

    import onnxruntime
    onnx_path, ts_path = tmp_path / "stream.onnx", tmp_path / "stream.ts"
    train_cli("export", "--checkpoint", ckpt_path, "--format", "onnx", onnx_path)
    train_cli("export", "--checkpoint", ckpt_path, "--format", "torchscript", ts_path)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(ts_path))
    for rows in (slice(None), slice(0, 1), slice(1, 4)):  # the batch size is free (exported with 2)
        batch, want = x[rows], ref[rows]
        got_onnx = session.run(["scores"], {"frames": batch.numpy()})[0]
        with torch.no_grad():
            got_ts = scripted(batch).numpy()
        assert got_onnx.shape == got_ts.shape == (len(batch), len(CLIPS))
        np.testing.assert_allclose(got_onnx, want, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got_ts, want, rtol=0, atol=1e-4)
    for path in (onnx_path, ts_path):
        meta = export.read_metadata(path)
        assert meta["classes"] == list(CLIPS) and meta["modality"] == modality
        assert meta["input"]["shape"] == ["N", *export.input_shape(ckpt)]


def test_export_errors_name_the_file(tmp_path):
    bad = tmp_path / "not_a_checkpoint.pt"
    bad.write_bytes(b"garbage")
    result = train_cli("export", "--checkpoint", bad, "--format", "torchscript", tmp_path / "m.ts",
                       expect=1)
    assert str(bad) in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.ts").exists()
    ckpt = tmp_path / "stream.pt"
    random_checkpoint(ckpt, "resnet18", "rgb", CLIPS)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = train_cli("export", "--checkpoint", ckpt, "--format", "torchscript",
                       blocker / "m.ts", expect=1)  # its folder would have to be a file
    assert f"{blocker / 'm.ts'}: cannot write" in result.output and "Traceback" not in result.output
