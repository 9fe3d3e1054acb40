"""Checkpoints of mmaction2 and tsn-pytorch, built here from their documented layouts, score a
snippet in tsn-train as in their own architecture and preprocessing."""
import numpy as np
import pytest
import torch
from torch import nn

from tsn_train.models.bn_inception import bn_inception
from tsn_train.models.tsn import build_tsn
from tsn_train.transforms import to_input
from tsn_train.imported import load_into
from tsn_train.zoo import ZooError, read_zoo

torch.set_num_threads(1)


# --- mmaction2's Recognizer2D: ResNet of ConvModules, TSNHead, written out from its layout --------
class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):  # style 'pytorch': the stride on the 3x3 conv
    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = ConvModule(cin, planes, 1)
        self.conv2 = ConvModule(planes, planes, 3, stride, 1)
        self.conv3 = ConvModule(planes, planes * 4, 1, act=False)
        self.downsample = ConvModule(cin, planes * 4, 1, stride, act=False) if downsample else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class MMResNet(nn.Module):
    def __init__(self, blocks, in_channels):
        super().__init__()
        self.conv1 = ConvModule(in_channels, 64, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            layer = [Bottleneck(cin if j == 0 else planes * 4, planes, (1 if i == 0 else 2) if j == 0 else 1,
                                j == 0) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin = planes * 4

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


class TSNHead(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.fc_cls = nn.Linear(2048, classes)

    def forward(self, x):
        return self.fc_cls(x.mean(dim=(2, 3)))


class Recognizer2D(nn.Module):
    def __init__(self, blocks, in_channels, classes):
        super().__init__()
        self.backbone = MMResNet(blocks, in_channels)
        self.cls_head = TSNHead(classes)

    def forward(self, x):
        return self.cls_head(self.backbone(x))


def randomise(model, seed):
    """Weights that keep activations alive through 50-100 layers (a network that outputs its
    bias alone would pass any comparison)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            r = torch.randn(t.shape, generator=g)
            if t.dim() > 1:  # conv and linear weights: unit gain
                t.copy_(r / t[0].numel() ** 0.5)
            elif name.endswith("running_var"):
                t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=g))
            elif name.endswith("weight"):  # BatchNorm scale
                t.copy_(1 + 0.1 * r)
            else:  # biases, running means
                t.copy_(0.1 * r)
    return model.eval()


def differs(model, make_input, frames, want):
    """The source's scores depend on the input: other frames give other scores."""
    other = np.ascontiguousarray(frames[..., ::-1, :])
    with torch.no_grad():
        return (model(make_input(other)) - want).abs().max() > 1e-2


def mm_input(frames, modality):
    """mmaction2's preprocessing of uint8 frames decoded as tsn-prep stores them (BGR; flow x, y)."""
    x = torch.as_tensor(frames).float()
    if modality == "rgb":  # RawFrameDecode with channel_order='rgb', then mean/std in 0-255
        rgb = x[0].flip(-1)
        mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
        return ((rgb - mean) / std).permute(2, 0, 1)[None]
    flow = (x - 128) / 128  # NCHW_Flow: x0, y0, x1, y1, ...
    return flow.permute(0, 3, 1, 2).reshape(1, -1, *flow.shape[1:3])


@pytest.mark.parametrize("modality, depth, blocks", [("rgb", "resnet50", (3, 4, 6, 3)),
                                                     ("flow", "resnet101", (3, 4, 23, 3))])
def test_an_mmaction2_tsn_scores_as_in_mmaction2(tmp_path, modality, depth, blocks):
    channels = 3 if modality == "rgb" else 10
    source = randomise(Recognizer2D(blocks, channels, 7), 1)
    path = tmp_path / "mm.pth"
    classes = [f"class {i}" for i in range(7)]
    torch.save({"meta": {"dataset_meta": {"classes": classes}, "epoch": 100},
                "state_dict": source.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, path)
    zoo = read_zoo(path)
    assert (zoo.source, zoo.arch, zoo.modality, zoo.num_classes, zoo.classes) == \
        ("mmaction2", depth, modality, 7, classes)
    ours = build_tsn(7, modality, depth, segments=1, dropout=0.5, partial_bn=False)
    load_into(ours, zoo, path)
    ours.eval()
    rng = np.random.default_rng(0)
    length = 1 if modality == "rgb" else 5
    frames = rng.integers(0, 256, size=(length, 64, 80, 3 if modality == "rgb" else 2), dtype=np.uint8)
    with torch.no_grad():
        want = source(mm_input(frames, modality))
        got, pooled = ours.snippet_scores(to_input(frames[None], modality, zoo.norm))
    assert pooled.shape == (1, 2048)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert differs(source, lambda f: mm_input(f, modality), frames, want)


# --- tsn-pytorch's TSN: base_model (BN-Inception), dropout, new_fc ---------------------------------
class TSNPytorch(nn.Module):
    def __init__(self, modality, classes):
        super().__init__()
        self.modality = modality
        self.base_model = bn_inception()
        self.base_model.last_linear = nn.Dropout(0.8)  # tsn-pytorch: base_model.fc = Dropout
        channels = {"rgb": 3, "flow": 10, "rgbdiff": 15}[modality]
        if channels != 3:
            self.base_model.conv1_7x7_s2 = nn.Conv2d(channels, 64, 7, 2, 3)
        self.new_fc = nn.Linear(1024, classes)

    def forward(self, x):
        return self.new_fc(self.base_model(x))


def tsn_pytorch_input(frames, modality):
    """tsn-pytorch's preprocessing for BN-Inception: BGR 0-255 (Stack(roll=True)), minus
    104/117/128; flow minus 128; RGB difference: frame i+1 minus frame i, not normalised."""
    x = torch.as_tensor(frames).float()  # tsn-prep's BGR frames are what roll=True hands over
    if modality == "rgb":
        return (x[0] - torch.tensor([104.0, 117.0, 128.0])).permute(2, 0, 1)[None]
    if modality == "flow":
        return (x - 128).permute(0, 3, 1, 2).reshape(1, -1, *x.shape[1:3])
    diff = x[1:] - x[:-1]
    return diff.permute(0, 3, 1, 2).reshape(1, -1, *x.shape[1:3])


@pytest.mark.parametrize("modality", ["rgb", "flow", "rgbdiff"])
def test_a_tsn_pytorch_bn_inception_scores_as_in_tsn_pytorch(tmp_path, modality):
    source = randomise(TSNPytorch(modality, 5), 2)
    state = {f"module.{k}": v for k, v in source.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # PyTorch 0.3 files have none
    path = tmp_path / f"ucf101_{modality}_checkpoint.pth.tar"
    torch.save({"epoch": 80, "arch": "BNInception", "state_dict": state, "best_prec1": 85.0}, path)
    zoo = read_zoo(path)
    assert (zoo.source, zoo.arch, zoo.modality, zoo.num_classes, zoo.classes) == \
        ("tsn-pytorch", "bn_inception", modality, 5, None)
    ours = build_tsn(5, modality, "bn_inception", segments=1, dropout=0.8, partial_bn=False)
    load_into(ours, zoo, path)
    ours.eval()
    length = {"rgb": 1, "flow": 5, "rgbdiff": 6}[modality]
    frames = np.random.default_rng(1).integers(0, 256, size=(length, 96, 96, 2 if modality == "flow" else 3),
                                               dtype=np.uint8)
    with torch.no_grad():
        want = source(tsn_pytorch_input(frames, modality))
        got, _ = ours.snippet_scores(to_input(frames[None], modality, zoo.norm))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert differs(source, lambda f: tsn_pytorch_input(f, modality), frames, want)


def test_flow_or_warped_flow_is_the_users_choice_and_nothing_else(tmp_path):
    source = randomise(TSNPytorch("flow", 3), 3)
    path = tmp_path / "flow.pth"
    torch.save(source.state_dict(), path)
    assert read_zoo(path, "warped_flow").modality == "warped_flow"
    with pytest.raises(ZooError, match=r"reads 10 channels \(flow\), not the 3 of rgb"):
        read_zoo(path, "rgb")


@pytest.mark.parametrize("make, message", [
    (lambda: {"backbone.conv1.conv.weight": torch.zeros(64, 3, 3, 7, 7), "cls_head.fc_cls.weight": torch.zeros(2, 2048),
              **{f"backbone.layer3.{i}.conv1.conv.weight": torch.zeros(1) for i in range(6)},
              "backbone.layer1.0.conv3.conv.weight": torch.zeros(1)},
     r"its first convolution has a 5-D weight \(a 3D model\?\)"),
    (lambda: {f"backbone.{k}": v for k, v in MMResNet((3, 4, 6, 3), 3).state_dict().items()},
     r"an mmaction2 backbone without a TSNHead"),
    (lambda: {f"backbone.{k}": v for k, v in MMResNet((2, 2, 2, 2), 3).state_dict().items()},
     r"an mmaction2 backbone with 2 blocks in layer3"),
    (lambda: {"base_model.conv1.weight": torch.zeros(64, 3, 7, 7), "new_fc.weight": torch.zeros(2, 2048)},
     r"a tsn-pytorch base model other than BN-Inception"),
    (lambda: {"encoder.weight": torch.zeros(2)}, r"neither layout \(first keys: encoder.weight\)"),
    (lambda: [1, 2, 3], r"holds a list, not a checkpoint"),
])
def test_unsupported_checkpoints_get_one_line_naming_what_was_found(tmp_path, make, message):
    path = tmp_path / "other.pth"
    torch.save(make(), path)
    with pytest.raises(ZooError, match=message) as err:
        read_zoo(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"backbone.x": torch.zeros(1)}, "cfg": nn.Linear(1, 1)}, path)
    with pytest.raises(ZooError) as err:
        read_zoo(path)
    assert str(path) in str(err.value)


def test_an_imported_checkpoint_saves_loads_and_scores_as_its_source(tmp_path):
    from tsn_train import checkpoint
    from tsn_train.imported import to_checkpoint
    source = randomise(TSNPytorch("flow", 4), 4)
    path = tmp_path / "flow.pth.tar"
    torch.save({"state_dict": source.state_dict()}, path)
    zoo = read_zoo(path)
    with pytest.raises(ZooError, match="its classifier has 4 classes, but 3 class names were given"):
        to_checkpoint(zoo, ["a", "b", "c"], path)
    checkpoint.save(to_checkpoint(zoo, ["a", "b", "c", "d"], path), tmp_path / "imported.pt")
    ckpt = checkpoint.load(tmp_path / "imported.pt")
    assert (ckpt.arch, ckpt.modality, ckpt.classes, ckpt.epoch) == ("bn_inception", "flow", list("abcd"), 0)
    assert ckpt.preprocessing.norm == zoo.norm and ckpt.config.partial_bn and ckpt.config.dropout == 0.7
    model = checkpoint.model_from_checkpoint(ckpt)
    frames = np.random.default_rng(5).integers(0, 256, size=(5, 96, 96, 2), dtype=np.uint8)
    with torch.no_grad():
        want = source(tsn_pytorch_input(frames, "flow"))
        got, _ = model.snippet_scores(to_input(frames[None], "flow", ckpt.preprocessing.norm))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_fit_pretrained_takes_a_zoo_tsns_backbone(tmp_path):
    from tsn_train.archs import PretrainedError
    rgb = randomise(Recognizer2D((3, 4, 6, 3), 3, 7), 6)
    flow = randomise(TSNPytorch("flow", 4), 7)
    torch.save({"state_dict": rgb.state_dict()}, tmp_path / "mm_rgb.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in flow.state_dict().items()}}, tmp_path / "tp_flow.pth")
    model = build_tsn(3, "rgb", "resnet50", pretrained=tmp_path / "mm_rgb.pth")
    torch.testing.assert_close(model.base.layer3[5].conv2.weight, rgb.backbone.layer3[5].conv2.conv.weight)
    torch.testing.assert_close(model.base.bn1.running_var, rgb.backbone.conv1.bn.running_var)
    assert model.fc.weight.shape == (3, 2048)  # a new classifier for the new classes
    # an RGB backbone starts a flow stream by cross-modality initialisation, as ImageNet weights do
    flow_from_rgb = build_tsn(3, "flow", "resnet50", pretrained=tmp_path / "mm_rgb.pth")
    torch.testing.assert_close(flow_from_rgb.base.conv1.weight,
                               rgb.backbone.conv1.conv.weight.mean(1, keepdim=True).expand(-1, 10, -1, -1))
    # a flow backbone starts a flow stream with its own first convolution
    model = build_tsn(3, "warped_flow", "bn_inception", pretrained=tmp_path / "tp_flow.pth")
    torch.testing.assert_close(model.base.conv1_7x7_s2.weight, flow.base_model.conv1_7x7_s2.weight)
    with pytest.raises(PretrainedError, match="its first convolution reads 10 channels; a rgb stream reads 3"):
        build_tsn(3, "rgb", "bn_inception", pretrained=tmp_path / "tp_flow.pth")
    with pytest.raises(PretrainedError, match="holds a resnet50 TSN of mmaction2, not a resnet101 backbone: give --arch resnet50"):
        build_tsn(3, "rgb", "resnet101", pretrained=tmp_path / "mm_rgb.pth")
