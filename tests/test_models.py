"""TSN model: architecture declarations, pretrained loading, cross-modality init, partial BN,
parameter groups, schedule."""
import pytest
import torch

from tsn_train.archs import ARCHS
from tsn_train.models import PretrainedError, build_tsn
from tsn_train.optim import lr_at, make_optimizer, set_lr

from .conftest import run_python


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(ARCHS["resnet18"].build().state_dict(), path)
    return path


@pytest.mark.parametrize("name", list(ARCHS))
def test_each_architecture_declares_its_first_conv_first_bn_and_feature_width(name):
    # The declared first conv must be the layer that reads the image and the declared first BN
    # the first one run; TSN's pooled features must have the declared width.
    arch = ARCHS[name]
    model = build_tsn(3, "flow", name, segments=1).eval()
    calls = []
    for n, m in model.base.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            m.register_forward_pre_hook(lambda m, args, n=n: calls.append((n, m, args[0])))
    size = 75 if name == "inception_v3" else 64  # Inception-v3's smallest input
    x = torch.randn(2, 10, size, size)
    with torch.no_grad():
        features = model.base(x)
    convs = [(n, inp) for n, m, inp in calls if isinstance(m, torch.nn.Conv2d)]
    assert convs[0][0] == arch.first_conv and convs[0][1] is x
    assert model.base.get_submodule(arch.first_conv).in_channels == 10
    assert next(n for n, m, _ in calls if isinstance(m, torch.nn.BatchNorm2d)) == arch.first_bn
    assert features.shape == (2, arch.feature_dim)


def test_the_command_line_reads_architectures_and_consensus_names_without_torch():
    code = ("import sys; from tsn_train.archs import ARCHS, CONSENSUS; "
            "from tsn_train.models import ARCHS as A, PretrainedError; "
            "assert 'torch' not in sys.modules and A is ARCHS; "
            "print(sorted(ARCHS), ARCHS['inception_v3'].input_size, CONSENSUS)")
    out = run_python(code)
    assert "'bn_inception'" in out and " 299 " in out and "'attention'" in out


def test_cross_modality_init_averages_the_rgb_filters(resnet_weights):
    imagenet = torch.load(resnet_weights)
    for modality, channels in (("flow", 10), ("rgbdiff", 15), ("rgb", 3)):
        model = build_tsn(4, modality, "resnet18", pretrained=resnet_weights)
        w = model.base.conv1.weight
        assert w.shape[1] == channels
        if modality == "rgb":
            assert torch.equal(w, imagenet["conv1.weight"])
        else:
            mean = imagenet["conv1.weight"].mean(dim=1)
            assert all(torch.equal(w[:, c], mean) for c in range(channels))
        # the rest of the network is ImageNet's, unchanged
        assert torch.equal(model.base.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
        assert torch.equal(model.base.bn1.running_var, imagenet["bn1.running_var"])
        assert model.fc.weight.shape == (4, 512)


def test_pretrained_files_that_do_not_fit_are_clear_errors(tmp_path, resnet_weights):
    with pytest.raises(PretrainedError, match="no such weights file"):
        build_tsn(4, "rgb", "resnet18", pretrained=tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="not a PyTorch weights file"):
        build_tsn(4, "rgb", "resnet18", pretrained=tmp_path / "junk.pth")
    with pytest.raises(PretrainedError, match=r"does not match the architecture: missing 80 \(layer1.2"):
        build_tsn(4, "rgb", "resnet34", pretrained=resnet_weights)  # resnet34 has more blocks
    torch.save(ARCHS["resnet50"].build().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(PretrainedError, match=r"r50.pth: \d+ tensors have the wrong shape"):
        build_tsn(4, "rgb", "resnet18", pretrained=tmp_path / "r50.pth")


def test_bn_inception_weights_in_the_tsn_pytorch_layout_load(tmp_path):
    # The file predates num_batches_tracked, and some conversions store BN vectors as [1, C].
    torch.manual_seed(1)
    ref = ARCHS["bn_inception"].build().state_dict()
    state = {k: (v[None] if k.endswith("_bn.running_mean") else v)
             for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "bn.pth")
    model = build_tsn(101, "flow", "bn_inception", pretrained=tmp_path / "bn.pth")
    assert torch.equal(model.base.inception_5b_pool_proj_bn.running_mean,
                       ref["inception_5b_pool_proj_bn.running_mean"])
    assert model.first_conv == "conv1_7x7_s2" and model.first_bn == "conv1_7x7_s2_bn"
    assert model.base.conv1_7x7_s2.weight.shape[1] == 10


def test_partial_bn_updates_only_the_first_bn():
    torch.manual_seed(0)
    model = build_tsn(3, "flow", "bn_inception", segments=2, dropout=0.5)
    bns = {n: m for n, m in model.base.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    before = {n: (m.running_mean.clone(), m.running_var.clone(), m.weight.clone()) for n, m in bns.items()}
    opt = make_optimizer(model, 0.1, 0.9, 5e-4)
    model.train()
    x = torch.randn(2, 2, 10, 96, 96) * 20
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2]))
    loss.backward()
    opt.step()
    changed = [n for n, m in bns.items() if not torch.equal(m.running_mean, before[n][0])
               or not torch.equal(m.running_var, before[n][1]) or not torch.equal(m.weight, before[n][2])]
    assert changed == ["conv1_7x7_s2_bn"]
    assert len(bns) == 69 and all(not m.training for n, m in bns.items() if n != "conv1_7x7_s2_bn")
    # without partial BN every layer re-estimates
    full = build_tsn(3, "flow", "bn_inception", segments=2, partial_bn=False).train()
    full(x)
    assert all(m.num_batches_tracked == 1 for m in full.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_parameter_groups_follow_the_reference():
    model = build_tsn(5, "flow", "bn_inception", consensus="weighted")
    opt = make_optimizer(model, 0.005, 0.9, 5e-4)
    g = {group["name"]: group for group in opt.param_groups}
    expected = {"first_conv_weight": (0.025, 5e-4), "first_conv_bias": (0.05, 0.0),
                "weight": (0.005, 5e-4), "bias": (0.01, 0.0), "bn": (0.005, 0.0)}
    assert g.keys() == expected.keys()
    for name, (lr, decay) in expected.items():
        assert (g[name]["lr"], g[name]["weight_decay"]) == pytest.approx((lr, decay)), name
    assert g["first_conv_weight"]["params"] == [model.base.conv1_7x7_s2.weight]
    assert g["bn"]["params"] == [model.base.conv1_7x7_s2_bn.weight, model.base.conv1_7x7_s2_bn.bias]
    assert any(p is model.consensus.weight for p in g["weight"]["params"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(len(v["params"]) for v in g.values()) == len(trainable)
    rgb = {gr["name"]: gr["lr"] for gr in make_optimizer(build_tsn(5, "rgb", "bn_inception"), 0.001, 0.9, 5e-4).param_groups}
    assert rgb["first_conv_weight"] == 0.001 and rgb["first_conv_bias"] == 0.002
    set_lr(opt, 0.0005)
    assert g["first_conv_bias"]["lr"] == pytest.approx(0.005)


def test_step_schedule():
    assert [lr_at(e, 0.005, [3, 5]) for e in range(7)] == pytest.approx(
        [0.005, 0.005, 0.005, 0.0005, 0.0005, 0.00005, 0.00005])
