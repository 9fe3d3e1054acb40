"""BN-Inception (Inception v2 with batch norm; Ioffe & Szegedy, 2015), the TSN backbone.

The layer names, shapes and layout follow Cadene's ``pretrainedmodels`` BNInception
(``pretrainedmodels/models/bninception.py``, the revision published with
``bn_inception-52deb4733.pth``), itself a port of the Caffe model TSN was trained from.
Every convolution is ``<name>`` (with bias) followed by ``<name>_bn`` and a ReLU, so
``load_state_dict`` on that checkpoint finds every key it expects. Pooling and ReLU have
no state, so they are applied functionally and carry no names.

Deliberate differences from the reference, none of which changes a 224x224 forward pass:

* Global pooling is adaptive instead of a fixed 7x7 average pool, so smaller inputs work.
* In the two stride-2 reduction blocks (3c, 4e) an odd-sized map is padded with -inf on
  the bottom/right before the max-pool branch. The reference (like the Caffe original)
  produces ceil(H/2) rows in its conv branches but floor(H/2) in its ceil-mode pool
  branch when H is odd, so ``torch.cat`` fails (e.g. for 112x112 inputs the 4e block sees
  a 7x7 map). For even sizes, which includes every map at 224x224, nothing is padded.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BNInception", "bn_inception"]


class _Block(NamedTuple):
    """Output channels of one inception block's branches, as in the paper's Figure 5.

    ``c1x1 == 0`` and ``pool_proj == 0`` mark a stride-2 reduction block: no 1x1 branch,
    the 3x3 and double-3x3 branches end with stride 2, and the max-pool branch is passed
    through without a projection.
    """

    tag: str  # "3a" -> layer names "inception_3a_*"
    c1x1: int
    c3x3_reduce: int
    c3x3: int
    double_reduce: int
    double: int
    pool: str  # "avg" or "max"
    pool_proj: int

    @property
    def reduces(self) -> bool:
        return self.c1x1 == 0

    def out_channels(self, cin: int) -> int:
        # A reduction block's pool branch passes its cin input channels through.
        pooled = cin if self.reduces else self.pool_proj
        return self.c1x1 + self.c3x3 + self.double + pooled


BLOCKS: tuple[_Block, ...] = (
    _Block("3a", 64, 64, 64, 64, 96, "avg", 32),
    _Block("3b", 64, 64, 96, 64, 96, "avg", 64),
    _Block("3c", 0, 128, 160, 64, 96, "max", 0),
    _Block("4a", 224, 64, 96, 96, 128, "avg", 128),
    _Block("4b", 192, 96, 128, 96, 128, "avg", 128),
    _Block("4c", 160, 128, 160, 128, 160, "avg", 128),
    _Block("4d", 96, 128, 192, 160, 192, "avg", 128),
    _Block("4e", 0, 128, 192, 192, 256, "max", 0),
    _Block("5a", 352, 192, 320, 160, 224, "avg", 128),
    _Block("5b", 352, 192, 320, 192, 224, "max", 128),  # max-pool branch, unlike 3a-5a
)


def _reduction_pool(x: Tensor) -> Tensor:
    """3x3/2 ceil-mode max pool whose output matches a 3x3/2 pad-1 conv for odd sizes too."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        # -inf never wins a max, and every window still holds at least one real value.
        x = F.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
    return F.max_pool2d(x, 3, stride=2, ceil_mode=True)


class BNInception(nn.Module):
    """BN-Inception trunk plus ``last_linear``; expects BGR 0-255 input minus Caffe's ImageNet means
    (``tsn_train.transforms.NORMS["caffe_bgr"]``, as declared in ``tsn_train.archs.ARCHS``)."""

    feature_dim = 1024

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        # Registration order follows the reference (and so does the weight file).
        self._add_conv_bn("conv1_7x7_s2", 3, 64, kernel=7, stride=2)
        self._add_conv_bn("conv2_3x3_reduce", 64, 64, kernel=1)
        self._add_conv_bn("conv2_3x3", 64, 192, kernel=3)
        channels = 192
        for block in BLOCKS:
            self._add_block(block, channels)
            channels = block.out_channels(channels)
        assert channels == self.feature_dim
        self.last_linear = nn.Linear(self.feature_dim, num_classes)

    def _add_conv_bn(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        """Register ``name`` (a 'same'-padded conv with bias) and ``name_bn``."""
        setattr(self, name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2))
        # PyTorch defaults (eps 1e-5, momentum 0.1), as in the reference revision that
        # ships 52deb4733. A later revision sets momentum=0.9, a Caffe-convention carry-over
        # that in PyTorch would make running stats track almost only the last batch.
        setattr(self, f"{name}_bn", nn.BatchNorm2d(cout))

    def _add_block(self, b: _Block, cin: int) -> None:
        p = f"inception_{b.tag}_"
        stride = 2 if b.reduces else 1
        if b.c1x1:
            self._add_conv_bn(p + "1x1", cin, b.c1x1, kernel=1)
        self._add_conv_bn(p + "3x3_reduce", cin, b.c3x3_reduce, kernel=1)
        self._add_conv_bn(p + "3x3", b.c3x3_reduce, b.c3x3, kernel=3, stride=stride)
        self._add_conv_bn(p + "double_3x3_reduce", cin, b.double_reduce, kernel=1)
        self._add_conv_bn(p + "double_3x3_1", b.double_reduce, b.double, kernel=3)
        self._add_conv_bn(p + "double_3x3_2", b.double, b.double, kernel=3, stride=stride)
        if b.pool_proj:
            self._add_conv_bn(p + "pool_proj", cin, b.pool_proj, kernel=1)

    def _cbr(self, name: str, x: Tensor) -> Tensor:
        """conv -> BN -> ReLU for the pair registered under ``name``."""
        x = getattr(self, f"{name}_bn")(getattr(self, name)(x))
        return F.relu(x, inplace=True)

    def _block(self, b: _Block, x: Tensor) -> Tensor:
        p = f"inception_{b.tag}_"
        branches = []
        if b.c1x1:
            branches.append(self._cbr(p + "1x1", x))
        branches.append(self._cbr(p + "3x3", self._cbr(p + "3x3_reduce", x)))
        double = self._cbr(p + "double_3x3_reduce", x)
        double = self._cbr(p + "double_3x3_1", double)
        branches.append(self._cbr(p + "double_3x3_2", double))
        if b.reduces:
            branches.append(_reduction_pool(x))
        else:
            if b.pool == "avg":
                pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True,
                                      count_include_pad=True)
            else:
                pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
            branches.append(self._cbr(p + "pool_proj", pooled))
        return torch.cat(branches, dim=1)

    def features(self, x: Tensor) -> Tensor:
        """(N, 3, 224, 224) mean-subtracted BGR -> (N, 1024, 7, 7)."""
        x = self._cbr("conv1_7x7_s2", x)
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self._cbr("conv2_3x3_reduce", x)
        x = self._cbr("conv2_3x3", x)
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for block in BLOCKS:
            x = self._block(block, x)
        return x

    def logits(self, features: Tensor) -> Tensor:
        """Global average pool, flatten, ``last_linear``."""
        return self.last_linear(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.features(x))


def bn_inception(num_classes: int = 1000) -> BNInception:
    """A randomly initialised BN-Inception; load ImageNet weights separately."""
    return BNInception(num_classes=num_classes)
