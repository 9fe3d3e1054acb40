"""TSN's optimiser policy: parameter groups with learning-rate and decay multipliers, step schedule."""
from __future__ import annotations

import torch
from torch import nn

from .models.tsn import TSN


def param_groups(model: TSN, weight_decay: float) -> list[dict]:
    """Groups as in the reference: for flow and RGB difference the first conv learns x5 (its bias
    x10); all other biases learn x2 without weight decay; BatchNorm has no weight decay.
    Frozen parameters (partial BN) are left out. Each group carries its ``lr_mult``."""
    cross_modal = model.modality != "rgb"
    first = model.base.get_submodule(model.first_conv)
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters()}
    groups = {
        "first_conv_weight": ([], 5.0 if cross_modal else 1.0, 1.0),
        "first_conv_bias": ([], 10.0 if cross_modal else 2.0, 0.0),
        "weight": ([], 1.0, 1.0),
        "bias": ([], 2.0, 0.0),
        "bn": ([], 1.0, 0.0),
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p is first.weight:
            key = "first_conv_weight"
        elif first.bias is not None and p is first.bias:
            key = "first_conv_bias"
        elif id(p) in bn_params:
            key = "bn"
        elif name.endswith("bias"):
            key = "bias"
        else:
            key = "weight"
        groups[key][0].append(p)
    return [{"name": k, "params": ps, "lr_mult": lr_mult, "weight_decay": weight_decay * decay_mult}
            for k, (ps, lr_mult, decay_mult) in groups.items() if ps]


def lr_at(epoch: int, base_lr: float, steps: list[int], gamma: float = 0.1) -> float:
    """Step schedule: ``base_lr * gamma ** (number of steps <= epoch)``; ``epoch`` is 0-based."""
    return base_lr * gamma ** sum(epoch >= s for s in steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def make_optimizer(model: TSN, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    optimizer = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum)
    set_lr(optimizer, lr)
    return optimizer
