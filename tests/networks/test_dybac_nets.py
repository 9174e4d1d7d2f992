"""Tests of common.networks.dybac_nets: where DyBAC sits (as the official vnet_dy_v2 / Unet_dy_v2), the plain switch,
nearest upsampling and decoder dropout of the U-Net, shapes, parameter counts, TorchScript."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import Convolution

import common.networks.dybac_nets as dybac_nets
from common.networks.dybac import DyBAC
from common.networks.dybac_nets import DyBACUNet, DyBACVNet, dybac_block


def count(module: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def layout(stage: torch.nn.Module) -> str:
    """``D`` for a DyBAC layer, ``P`` for a plain conv-BN-ReLU, in layer order."""
    return "".join("D" if isinstance(layer, DyBAC) else "P" for layer in stage)


def test_vnet_dybac_layout_of_the_official_code() -> None:
    """vnet_dy_v2.VNet_dy: block_one plain (ConvBlock1); in every other block the second conv is a plain Conv3d and
    the others DyBAC, block_nine (the last decoder stage, one layer) included."""
    net = DyBACVNet(features=4)
    assert [layout(stage) for stage in net.encoder] == ["P", "DP", "DPD", "DPD"]
    assert layout(net.bottleneck) == "DPD"
    assert [layout(stage) for stage in net.decoder] == ["DPD", "DPD", "DP", "D"]
    plain = DyBACVNet(features=4, use_dybac=False)
    assert count(plain, DyBAC) == 0


def test_unet_dybac_layout_upsampling_and_dropout_of_the_official_code() -> None:
    """Unet_dy_v2: conv1 plain, conv2-conv9 DyBAC (conv9 included); nn.Upsample(scale_factor=2) without a
    convolution, so a decoder stage takes the channels below plus the skip (1536 = 1024 + 512, ...); dropout 0.3
    after the bottleneck and 0.2 / 0.2 / 0.1 / 0.1 after the decoder stages."""
    net = DyBACUNet(features=(4, 8, 16, 32, 64))
    assert [layout(stage) for stage in net.encoder] == ["PP", "DD", "DD", "DD"]
    assert layout(net.bottleneck) == "DD" and [layout(stage) for stage in net.decoder] == ["DD"] * 4
    assert count(net, torch.nn.ConvTranspose2d) == 0 and net.upsample.mode == "nearest"
    assert [stage[0].gate.squeeze.in_channels for stage in net.decoder] == [64 + 32, 32 + 16, 16 + 8, 8 + 4]
    assert [d.p for d in net.drops] == [0.1, 0.1, 0.2, 0.2] and net.bottleneck_drop.p == 0.3
    assert [d.p for d in net.decoder_drops] == [0.2, 0.2, 0.1, 0.1]
    assert count(DyBACUNet(features=(4, 8, 16, 32, 64), use_dybac=False), DyBAC) == 0


def test_unet_upsamples_by_nearest_neighbour_and_concatenates_upsampled_first() -> None:
    """The last decoder stage's input is ``[nearest x2 of the stage below, skip]`` (channel order pinned)."""
    torch.manual_seed(0)
    net = DyBACUNet(2, 1, 1, features=(1, 2, 2, 2, 2), use_dybac=False).eval()
    seen: dict[str, torch.Tensor] = {}
    net.decoder[-2].register_forward_hook(lambda module, args, out: seen.setdefault("below", out))
    net.decoder[-1].register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    x = torch.randn(1, 1, 16, 16)
    net(x)
    assert seen["input"].shape == (1, 2 + 1, 16, 16)
    expected_up = seen["below"].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest, eval: no dropout
    torch.testing.assert_close(seen["input"][:, :2], expected_up)
    torch.testing.assert_close(seen["input"][:, 2:], net.encoder[0](x))  # the skip second


@pytest.mark.parametrize("use_dybac", [True, False])
def test_shapes_2d_and_3d(use_dybac: bool) -> None:
    vnet = DyBACVNet(3, 1, 2, features=4, use_dybac=use_dybac)
    assert vnet(torch.randn(2, 1, 16, 32, 16)).shape == (2, 2, 16, 32, 16)
    unet = DyBACUNet(2, 3, 1, features=(4, 8, 8, 8, 8), use_dybac=use_dybac)
    assert unet(torch.randn(2, 3, 32, 16)).shape == (2, 1, 32, 16)


def test_dybac_reduces_parameters_of_the_paper_backbones() -> None:
    """DyBAC (depthwise + pointwise) is lighter than the 3x3 conv it replaces: figures of
    ``benchmarks/complexity.py --model asenet``."""
    params = {
        name: sum(p.numel() for p in net.parameters())
        for name, net in {
            "vnet": DyBACVNet(),
            "vnet_plain": DyBACVNet(use_dybac=False),
            "unet": DyBACUNet(),
            "unet_plain": DyBACUNet(use_dybac=False),
        }.items()
    }
    # vnet: the official vnet_dy_v2.VNet_dy(1, 2, normalization="batchnorm") has 4_068_311 too; unet: the official
    # Unet_dy_v2(3, 2) has 5_429_690, of which 3_392 are an attention BatchNorm its forward never uses
    assert params == {"vnet": 4_068_311, "vnet_plain": 9_448_866, "unet": 5_426_298, "unet_plain": 31_390_786}


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


def test_dybac_block_places_dybac_after_the_first_stage_except_the_plain_layers() -> None:
    block = dybac_block(3, num_kernels=3, temperature=12.0, plain_layers=(1,))
    assert isinstance(block(2, 4, 0, 0), Convolution) and isinstance(block(2, 4, 0, 2), Convolution)  # stage 0
    dybac = block(4, 8, 1, 0)
    assert isinstance(dybac, DyBAC) and dybac.conv.weight.shape[0] == 3 and dybac.conv.attention.temperature == 12.0
    assert dybac.conv.pointwise.out_channels == 8 and isinstance(dybac.act, torch.nn.ReLU)
    assert isinstance(block(8, 8, 1, 1), Convolution)  # the plain second layer
    assert isinstance(block(8, 8, 8, 2), DyBAC)
    plain = block(8, 8, 4, 1)
    assert plain.conv.kernel_size == (3, 3, 3) and isinstance(plain.adn.N, torch.nn.BatchNorm3d)
    assert isinstance(plain.adn.A, torch.nn.ReLU)
    unet_block = dybac_block(2)  # the U-Net: no plain layer after stage 0
    assert isinstance(unet_block(8, 8, 1, 1), DyBAC) and isinstance(unet_block(3, 8, 0, 1), Convolution)
    off = dybac_block(2, use_dybac=False)
    assert not any(isinstance(off(8, 8, stage, layer), DyBAC) for stage in range(9) for layer in range(3))


def test_unet_stages_are_numbered_in_data_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The U-Net asks its block factory for stages 0-3 (encoder), 4 (bottleneck), 5-8 (decoder, deepest first)."""
    calls: list[tuple[int, int, int, int]] = []

    def recorder(in_channels: int, out_channels: int, stage: int, layer: int) -> torch.nn.Module:
        calls.append((in_channels, out_channels, stage, layer))
        return Convolution(2, in_channels, out_channels, kernel_size=3, padding=1)

    monkeypatch.setattr(dybac_nets, "dybac_block", lambda *args, **kwargs: recorder)
    DyBACUNet(2, 1, 2, features=(1, 2, 3, 4, 5))
    assert calls == [
        (1, 1, 0, 0), (1, 1, 0, 1), (1, 2, 1, 0), (2, 2, 1, 1), (2, 3, 2, 0), (3, 3, 2, 1), (3, 4, 3, 0), (4, 4, 3, 1),
        (4, 5, 4, 0), (5, 5, 4, 1),
        (9, 4, 5, 0), (4, 4, 5, 1), (7, 3, 6, 0), (3, 3, 6, 1), (5, 2, 7, 0), (2, 2, 7, 1), (3, 1, 8, 0), (1, 1, 8, 1),
    ]  # fmt: skip
