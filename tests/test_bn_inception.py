"""BN-Inception must match the checkpoint layout of Cadene's pretrainedmodels BNInception.

The expected layout below is written out from the reference source
(pretrainedmodels/models/bninception.py, the revision shipping bn_inception-52deb4733.pth)
and the paper's Figure 5. It deliberately shares no code with tsn_train.models.bn_inception.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tsn_train.archs import ARCHS
from tsn_train.models.bn_inception import BNInception, _reduction_pool, bn_inception

# (name, in, out, kernel) of the stem convolutions.
STEM = [
    ("conv1_7x7_s2", 3, 64, 7),
    ("conv2_3x3_reduce", 64, 64, 1),
    ("conv2_3x3", 64, 192, 3),
]

# tag: (in, 1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3, pool_proj).
# None marks the stride-2 reduction blocks: no 1x1 branch, max-pool passed through.
INCEPTION = {
    "3a": (192, 64, 64, 64, 64, 96, 32),
    "3b": (256, 64, 64, 96, 64, 96, 64),
    "3c": (320, None, 128, 160, 64, 96, None),
    "4a": (576, 224, 64, 96, 96, 128, 128),
    "4b": (576, 192, 96, 128, 96, 128, 128),
    "4c": (576, 160, 128, 160, 128, 160, 128),
    "4d": (608, 96, 128, 192, 160, 192, 128),
    "4e": (608, None, 128, 192, 192, 256, None),
    "5a": (1056, 352, 192, 320, 160, 224, 128),
    "5b": (1024, 352, 192, 320, 192, 224, 128),
}

# Pooling in front of each block's pool_proj (3c and 4e have a stride-2 max pool instead).
POOL_BRANCH = {"3a": "avg", "3b": "avg", "4a": "avg", "4b": "avg", "4c": "avg",
               "4d": "avg", "5a": "avg", "5b": "max"}
STRIDE_2_CONVS = {"conv1_7x7_s2", "inception_3c_3x3", "inception_3c_double_3x3_2",
                  "inception_4e_3x3", "inception_4e_double_3x3_2"}

# Counted from the reference definition (conv weights + biases, BN affine, 1000-way fc).
REFERENCE_PARAM_COUNT = 11_295_240
NUM_BN_LAYERS = 69


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_convs() -> list[tuple[str, int, int, int]]:
    convs = list(STEM)
    for tag, (cin, c1, r3, c3, rd, cd, proj) in INCEPTION.items():
        p = f"inception_{tag}_"
        if c1 is not None:
            convs.append((p + "1x1", cin, c1, 1))
        convs += [
            (p + "3x3_reduce", cin, r3, 1),
            (p + "3x3", r3, c3, 3),
            (p + "double_3x3_reduce", cin, rd, 1),
            (p + "double_3x3_1", rd, cd, 3),
            (p + "double_3x3_2", cd, cd, 3),
        ]
        if proj is not None:
            convs.append((p + "pool_proj", cin, proj, 1))
    return convs


def reference_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k in reference_convs():
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}_bn.{field}"] = (cout,)
    shapes["last_linear.weight"] = (num_classes, 1024)
    shapes["last_linear.bias"] = (num_classes,)
    return shapes


def without_batch_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def model() -> BNInception:
    torch.manual_seed(0)
    return bn_inception().eval()


def test_state_dict_matches_reference_layout(model: BNInception) -> None:
    got = {k: tuple(v.shape) for k, v in without_batch_counters(model.state_dict()).items()}
    want = reference_shapes()
    assert set(got) - set(want) == set(), "keys the checkpoint does not have"
    assert set(want) - set(got) == set(), "checkpoint keys the model lacks"
    assert {k: v for k, v in got.items() if want[k] != v} == {}


def test_parameter_count(model: BNInception) -> None:
    from_table = sum(
        cout * cin * k * k + cout + 2 * cout for _, cin, cout, k in reference_convs()
    ) + 1024 * 1000 + 1000
    assert sum(p.numel() for p in model.parameters()) == from_table == REFERENCE_PARAM_COUNT


def test_num_classes_sizes_only_the_classifier() -> None:
    small = BNInception(num_classes=101)
    got = {k: tuple(v.shape) for k, v in without_batch_counters(small.state_dict()).items()}
    assert got == reference_shapes(num_classes=101)


def test_declared_first_conv_and_bn_are_the_stem(model: BNInception) -> None:
    # Cross-modality init and partial BN use the names tsn_train.archs declares.
    arch = ARCHS["bn_inception"]
    assert model.get_submodule(arch.first_conv) is model.conv1_7x7_s2
    assert model.get_submodule(arch.first_bn) is model.conv1_7x7_s2_bn
    assert model.conv1_7x7_s2.weight.shape == (64, 3, 7, 7)


def test_bn_settings_are_pytorch_defaults(model: BNInception) -> None:
    # The 52deb4733 revision uses defaults; a later one has momentum=0.9, which in
    # PyTorch's convention would overwrite running stats with each batch's.
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == NUM_BN_LAYERS
    assert {(m.eps, m.momentum, m.affine, m.track_running_stats) for m in bns} == {
        (1e-5, 0.1, True, True)
    }


def test_strides_and_padding(model: BNInception) -> None:
    # Invisible in the state dict: stride 2 sits on the last conv of each reduction branch.
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert {n for n, m in convs.items() if m.stride == (2, 2)} == STRIDE_2_CONVS
    assert all(m.stride in {(1, 1), (2, 2)} for m in convs.values())
    assert all(m.padding == (m.kernel_size[0] // 2,) * 2 for m in convs.values())


def test_pool_branch_kinds(model: BNInception) -> None:
    # Capture each block's input (what its 1x1 conv sees) and what pool_proj sees.
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for tag in POOL_BRANCH:
        for part in ("1x1", "pool_proj"):
            name = f"inception_{tag}_{part}"
            hooks.append(getattr(model, name).register_forward_pre_hook(
                lambda _m, args, name=name: seen.__setitem__(name, args[0].clone())))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 96, 96) * 50)
    finally:
        for h in hooks:
            h.remove()
    for tag, kind in POOL_BRANCH.items():
        x = seen[f"inception_{tag}_1x1"]
        if kind == "avg":
            want = F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=True)
        else:
            want = F.max_pool2d(x, 3, 1, 1, ceil_mode=True)
        torch.testing.assert_close(seen[f"inception_{tag}_pool_proj"], want, msg=tag)


def test_output_shapes_224(model: BNInception) -> None:
    x = torch.randn(2, 3, 224, 224) * 50
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (2, BNInception.feature_dim, 7, 7)
    assert logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()
    assert feats.min() >= 0  # every branch ends in a ReLU (or max-pools ReLU outputs)
    # forward is global average pooling of the features followed by last_linear.
    expected = model.last_linear(feats.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size, grid", [(112, 4), (160, 5)])
def test_smaller_inputs(model: BNInception, size: int, grid: int) -> None:
    with torch.no_grad():
        feats = model.features(torch.randn(1, 3, size, size))
        logits = model(torch.randn(1, 3, size, size))
    assert feats.shape == (1, 1024, grid, grid)
    assert logits.shape == (1, 1000)


def test_reduction_pool_is_plain_ceil_pool_for_even_sizes() -> None:
    x = torch.randn(1, 4, 14, 14)
    torch.testing.assert_close(_reduction_pool(x), F.max_pool2d(x, 3, 2, ceil_mode=True))


def test_reduction_pool_matches_conv_size_for_odd_sizes() -> None:
    # The reference crashes here (112x112 input -> a 7x7 map at 4e); padding must only add
    # a last row/column, never change the windows the reference does compute.
    x = torch.randn(1, 4, 7, 9)
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=1)
    got = _reduction_pool(x)
    assert got.shape[-2:] == conv(x).shape[-2:] == (4, 5)
    plain = F.max_pool2d(x, 3, 2, ceil_mode=True)
    torch.testing.assert_close(got[..., : plain.shape[-2], : plain.shape[-1]], plain)
    assert torch.isfinite(got).all()


def _source_state() -> dict[str, torch.Tensor]:
    source = BNInception()
    with torch.no_grad():
        source.conv1_7x7_s2_bn.running_mean.fill_(3.0)
        source.inception_5b_pool_proj.bias.fill_(-2.0)
    return source.state_dict()


def _assert_loaded(target: BNInception) -> None:
    assert torch.equal(target.conv1_7x7_s2_bn.running_mean, torch.full((64,), 3.0))
    assert torch.equal(target.inception_5b_pool_proj.bias, torch.full((128,), -2.0))


def test_pre_counter_checkpoint_loads_strictly() -> None:
    # bn_inception-52deb4733.pth predates num_batches_tracked and BN's version-2
    # metadata; a plain dict like it has no "_metadata", and BatchNorm then fills in
    # the counter itself, so even strict loading succeeds.
    old_style = dict(without_batch_counters(_source_state()))
    assert not hasattr(old_style, "_metadata")
    target = BNInception()
    result = target.load_state_dict(old_style, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    _assert_loaded(target)


def test_versioned_state_without_counters_reports_only_counters_missing() -> None:
    # With current metadata (version 2) BatchNorm expects the counters: strict=False
    # must load everything else and name exactly one counter per BN layer as missing.
    state = _source_state()
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    assert hasattr(state, "_metadata")
    target = BNInception()
    result = target.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert len(result.missing_keys) == NUM_BN_LAYERS
    assert all(k.endswith("_bn.num_batches_tracked") for k in result.missing_keys)
    _assert_loaded(target)
