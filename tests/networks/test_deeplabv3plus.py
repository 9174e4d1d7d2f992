"""Tests of common.networks.deeplabv3plus: shapes, output stride and dilations, the parameter count against a hand
count, pretrained encoder weights (and their errors), gradients and TorchScript."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from common.networks import ASPP, DeepLabV3Plus, load_encoder_weights

SMALL = {"layers": (1, 1, 1, 1), "widen_factor": 0.125, "aspp_channels": 16, "low_level_channels": 8}
SMALL["decoder_channels"] = 16


def resnet50_without_fc() -> int:
    """ResNet-50's parameters without its classifier, counted by hand (torchvision: 25,557,032 - 2,049,000)."""
    count = 3 * 64 * 49 + 2 * 64  # stem: 7x7 convolution and BN
    in_channels = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            count += in_channels * planes + 2 * planes  # 1x1 reduce + BN
            count += planes * planes * 9 + 2 * planes  # 3x3 + BN
            count += planes * 4 * planes + 2 * planes * 4  # 1x1 expand + BN
            if block == 0:
                count += in_channels * planes * 4 + 2 * planes * 4  # projection shortcut + BN
            in_channels = planes * 4
    return count


def test_parameter_count_matches_a_hand_count() -> None:
    """DeepLabv3+ with ResNet-50, ASPP (6, 12, 18), 256 channels, 48-channel skip, two classes: 40,347,298."""
    encoder = resnet50_without_fc()
    assert encoder == 23_508_032
    bn = 2 * 256
    aspp = 2048 * 256 + bn + 3 * (2048 * 256 * 9 + bn) + 2048 * 256 + bn + 5 * 256 * 256 + bn
    decoder = 256 * 48 + 2 * 48 + 304 * 256 * 9 + bn + 256 * 256 * 9 + bn + 256 * 2 + 2
    network = DeepLabV3Plus()
    assert sum(p.numel() for p in network.encoder.parameters()) == encoder
    assert sum(p.numel() for p in network.aspp.parameters()) == aspp
    assert sum(p.numel() for p in network.parameters()) == encoder + aspp + decoder == 40_347_298


@pytest.mark.parametrize("size", [(64, 64), (72, 56), (50, 61)])
def test_logits_have_the_input_size(size: tuple[int, int]) -> None:
    network = DeepLabV3Plus(out_channels=3, **SMALL)
    assert network(torch.randn(2, 3, *size)).shape == (2, 3, *size)
    network.eval()
    with torch.no_grad():
        assert network(torch.randn(1, 3, *size)).shape == (1, 3, *size)


def test_three_dimensional_volumes() -> None:
    network = DeepLabV3Plus(spatial_dims=3, in_channels=1, out_channels=2, **SMALL)
    assert network(torch.randn(2, 1, 32, 32, 16)).shape == (2, 2, 32, 32, 16)


@pytest.mark.parametrize("output_stride, dilations3, dilations4", [(16, (1, 1), (2, 4, 8)), (8, (2, 2), (4, 8, 16))])
def test_output_stride_and_multi_grid(output_stride: int, dilations3: tuple, dilations4: tuple) -> None:
    """TorchSemiSeg's setting: layer4 without stride, blocks dilated 2, 4, 8 (multi-grid 1, 2, 4): stride 16."""
    layers = (1, 1, 2, 3)
    network = DeepLabV3Plus(output_stride=output_stride, **{**SMALL, "layers": layers})
    features = {}
    network.encoder.layer1.register_forward_hook(lambda m, i, o: features.__setitem__("low", o.shape))
    network.encoder.layer4.register_forward_hook(lambda m, i, o: features.__setitem__("deep", o.shape))
    network(torch.randn(2, 3, 64, 64))
    assert features["low"][2:] == (16, 16)  # stride 4: the decoder's skip
    assert features["deep"][2:] == (64 // output_stride, 64 // output_stride)
    assert tuple(block.conv2.dilation[0] for block in network.encoder.layer4) == dilations4
    assert tuple(block.conv2.dilation[0] for block in network.encoder.layer3) == dilations3
    assert all(block.conv2.stride == (1, 1) for block in network.encoder.layer4)


def test_aspp_branches() -> None:
    aspp = ASPP(2, in_channels=32, out_channels=8, rates=(6, 12, 18))
    assert len(aspp.branches) == 4  # 1x1 and three dilated 3x3
    assert [b.conv.dilation[0] for b in aspp.branches] == [1, 6, 12, 18]
    assert aspp(torch.randn(2, 32, 5, 7)).shape == (2, 8, 5, 7)
    with pytest.raises(ValueError, match="rates"):
        ASPP(2, 32, rates=())


def test_every_parameter_gets_a_gradient() -> None:
    network = DeepLabV3Plus(**SMALL)
    network(torch.randn(2, 3, 32, 32)).mean().backward()
    assert all(p.grad is not None for p in network.parameters())  # DDP needs every parameter used


def test_torchscript_matches_eager() -> None:
    network = DeepLabV3Plus(**SMALL).eval()
    scripted = torch.jit.script(network)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x))


def test_pretrained_encoder_weights_load(tmp_path: Path) -> None:
    source = DeepLabV3Plus(**SMALL)
    state = {f"module.{k}": v for k, v in source.encoder.state_dict().items()}  # a DDP-saved backbone
    state["fc.weight"] = torch.zeros(10, 64)  # a classifier is ignored
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": state}, path)
    network = DeepLabV3Plus(**SMALL, pretrained_encoder_path=path)
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(network.encoder.state_dict()[key], value)
    other = DeepLabV3Plus(**SMALL)
    assert not torch.equal(other.encoder.conv1.weight, source.encoder.conv1.weight)


def test_pretrained_encoder_errors_list_what_does_not_fit(tmp_path: Path) -> None:
    network = DeepLabV3Plus(**SMALL)
    wider = DeepLabV3Plus(**{**SMALL, "widen_factor": 0.25})
    path = tmp_path / "wider.pt"
    torch.save(wider.encoder.state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatches") as error:
        load_encoder_weights(network.encoder, path)
    assert "conv1.weight" in str(error.value)
    partial = {k: v for k, v in network.encoder.state_dict().items() if not k.startswith("layer4")}
    partial["head.weight"] = torch.zeros(1)
    torch.save(partial, path)
    with pytest.raises(ValueError, match=r"missing keys .*layer4.*unexpected keys .*head.weight"):
        load_encoder_weights(network.encoder, path)
    with pytest.raises(FileNotFoundError):
        DeepLabV3Plus(**SMALL, pretrained_encoder_path=tmp_path / "absent.pt")
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="state dict"):
        load_encoder_weights(network.encoder, path)


def test_invalid_arguments() -> None:
    for kwargs in ({"spatial_dims": 1}, {"output_stride": 32}, {"layers": (1, 1, 1)}, {"multi_grid": ()}):
        with pytest.raises(ValueError):
            DeepLabV3Plus(**{**SMALL, **kwargs})


def test_head_initialisation_is_kaiming_normal() -> None:
    network = DeepLabV3Plus(**SMALL)
    conv = network.fuse[0].conv
    assert isinstance(conv, nn.Conv2d)
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.1)
