"""Tests of common.networks.asenet: DyBAC from stage 2 on, the plain switch, shapes, parameter counts, TorchScript."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import Convolution

from common.networks.asenet import DyBACUNet, DyBACVNet
from common.networks.dybac import DyBAC


def count(module: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_vnet_dybac_from_stage_two_on() -> None:
    net = DyBACVNet(features=4)
    # full-resolution stages stay plain: encoder stage 1 (1 layer) and the last decoder stage (1 layer)
    assert all(not isinstance(m, DyBAC) for m in net.encoder[0].modules())
    assert all(not isinstance(m, DyBAC) for m in net.decoder[-1].modules())
    # DyBAC layers: encoder 2 + 3 + 3, bottleneck 3, decoder 3 + 3 + 2
    assert count(net, DyBAC) == 2 + 3 + 3 + 3 + 3 + 3 + 2
    plain = DyBACVNet(features=4, use_dybac=False)
    assert count(plain, DyBAC) == 0


def test_unet_dybac_from_stage_two_on() -> None:
    net = DyBACUNet(features=(4, 8, 16, 32, 64))
    assert count(net, DyBAC) == 2 * 3 + 2 + 2 * 3  # encoder 2-4, bottleneck, decoder levels 4-2
    assert count(DyBACUNet(features=(4, 8, 16, 32, 64), use_dybac=False), DyBAC) == 0


@pytest.mark.parametrize("use_dybac", [True, False])
def test_shapes_2d_and_3d(use_dybac: bool) -> None:
    vnet = DyBACVNet(3, 1, 2, features=4, use_dybac=use_dybac)
    assert vnet(torch.randn(2, 1, 16, 32, 16)).shape == (2, 2, 16, 32, 16)
    unet = DyBACUNet(2, 3, 1, features=(4, 8, 8, 8, 8), use_dybac=use_dybac)
    assert unet(torch.randn(2, 3, 32, 16)).shape == (2, 1, 32, 16)


def test_dybac_reduces_parameters_of_the_paper_backbones() -> None:
    """DyBAC (depthwise + pointwise) is lighter than the 3x3 conv it replaces: figures of benchmarks/asenet_params."""
    params = {
        name: sum(p.numel() for p in net.parameters())
        for name, net in {
            "vnet": DyBACVNet(),
            "vnet_plain": DyBACVNet(use_dybac=False),
            "unet": DyBACUNet(),
            "unet_plain": DyBACUNet(use_dybac=False),
        }.items()
    }
    assert params == {"vnet": 1_362_471, "vnet_plain": 9_448_866, "unet": 7_368_348, "unet_plain": 31_043_586}


def test_plain_layer_is_monai_convolution_and_errors() -> None:
    assert isinstance(DyBACVNet(features=4, use_dybac=False).encoder[1][0], Convolution)
    with pytest.raises(ValueError, match="spatial_dims"):
        DyBACVNet(spatial_dims=1)
    with pytest.raises(ValueError, match="5 widths"):
        DyBACUNet(features=(4, 8))
    with pytest.raises(ValueError, match="dropout"):
        DyBACVNet(dropout_prob=1.0)


def test_torchscript_matches_eager() -> None:
    net = DyBACVNet(features=4).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-5)
