"""Tests of common.networks.param_groups: batch/group-norm parameters and biases get no weight decay (TorchSemiSeg's
group_weight), every parameter is in exactly one group, and one SGD step decays exactly the first group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.networks import DeepLabV3Plus, weight_decay_param_groups


def small_network() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),  # weight: decay; bias: none
        nn.BatchNorm2d(4),  # weight and bias: none
        nn.Conv2d(4, 4, 1, bias=False),  # weight: decay
        nn.GroupNorm(2, 4),  # weight and bias: none
        nn.Flatten(),
        nn.Linear(4, 2),  # weight: decay; bias: none
    )


def test_norm_parameters_and_biases_have_no_weight_decay() -> None:
    net = small_network()
    groups = weight_decay_param_groups(net, 1e-4)
    assert [group["weight_decay"] for group in groups] == [1e-4, 0.0]
    decayed = {id(p) for p in groups[0]["params"]}
    spared = {id(p) for p in groups[1]["params"]}
    assert decayed == {id(net[0].weight), id(net[2].weight), id(net[5].weight)}
    norms = {id(net[1].weight), id(net[1].bias), id(net[3].weight), id(net[3].bias)}
    assert spared == norms | {id(net[0].bias), id(net[5].bias)}
    optimizer = torch.optim.SGD(groups, lr=0.1, weight_decay=0.5)  # the groups' own decay overrides the default
    assert [group["weight_decay"] for group in optimizer.param_groups] == [1e-4, 0.0]


def test_one_sgd_step_decays_only_conv_and_linear_weights() -> None:
    """Zero gradients: an SGD step changes a parameter by -lr * wd * p in the first group, not at all in the other."""
    net = small_network()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.SGD(weight_decay_param_groups(net, 0.1), lr=1.0)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in net.named_parameters():
        if name in ("0.weight", "2.weight", "5.weight"):
            torch.testing.assert_close(p.detach(), before[name] * 0.9, msg=name)
        else:
            torch.testing.assert_close(p.detach(), before[name], msg=name)  # BN / GN weights (1) and biases kept


def test_deeplab_groups_cover_every_parameter_once() -> None:
    net = DeepLabV3Plus(layers=(1, 1, 1, 1), widen_factor=0.125, aspp_channels=16, low_level_channels=8)
    groups = weight_decay_param_groups(net, 1e-4)
    ids = [id(p) for group in groups for p in group["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in net.parameters()}
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(id(m.weight) in {id(p) for p in groups[1]["params"]} for m in norms)
    assert all(p.ndim == 1 for p in groups[1]["params"])  # only BN vectors and the classifier's bias
    assert all(p.ndim == 4 for p in groups[0]["params"])  # every convolution kernel


def test_option_decays_everything_and_sharing_and_frozen_parameters() -> None:
    net = small_network()
    groups = weight_decay_param_groups(net, 1e-4, decay_norm_and_bias=True)
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(net.parameters()))
    shared = nn.Sequential(net[0], net[0])  # the same layer twice: listed once
    assert sum(len(g["params"]) for g in weight_decay_param_groups(shared, 1e-4)) == 2
    net[1].weight.requires_grad_(False)
    assert id(net[1].weight) not in {id(p) for g in weight_decay_param_groups(net, 1e-4) for p in g["params"]}
    with pytest.raises(ValueError, match="non-negative"):
        weight_decay_param_groups(net, -1.0)
