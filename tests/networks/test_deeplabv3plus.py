"""Tests of common.networks.deeplabv3plus: shapes, output stride and dilations, the parameter counts of both stems
against a hand count, pretrained encoder weights (TorchSemiSeg's resnet50_v1c layout into the deep stem, torchvision's
into the 7x7 stem, and their errors), gradients and TorchScript."""

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


HEAD = 2 * 256 + 3 * (2048 * 256 * 9 + 2 * 256) + 2048 * 256 + 2 * 256 + 2048 * 256 + 5 * 256 * 256 + 2 * 256
HEAD += 256 * 48 + 2 * 48 + 304 * 256 * 9 + 2 * 256 + 256 * 256 * 9 + 2 * 256 + 256 * 2 + 2  # decoder, classifier


def test_parameter_count_matches_a_hand_count() -> None:
    """torchvision's 7x7 stem: DeepLabv3+ with ResNet-50, ASPP (6, 12, 18), 256 channels, 48-channel skip, two
    classes: 40,347,298."""
    encoder = resnet50_without_fc()
    assert encoder == 23_508_032
    bn = 2 * 256
    aspp = 2048 * 256 + bn + 3 * (2048 * 256 * 9 + bn) + 2048 * 256 + bn + 5 * 256 * 256 + bn
    decoder = 256 * 48 + 2 * 48 + 304 * 256 * 9 + bn + 256 * 256 * 9 + bn + 256 * 2 + 2
    assert aspp + decoder == HEAD
    network = DeepLabV3Plus(stem="torchvision")
    assert sum(p.numel() for p in network.encoder.parameters()) == encoder
    assert sum(p.numel() for p in network.aspp.parameters()) == aspp
    assert sum(p.numel() for p in network.parameters()) == encoder + aspp + decoder == 40_347_298


def test_default_deep_stem_is_resnet50_c_of_torchsemiseg() -> None:
    """ResNet-50-C (TorchSemiSeg ``deep_stem=True, stem_width=64``): 3x3 convolutions 3 -> 64 -> 64 -> 128 with BN
    between them, BN(128), and layer1's first block reading 128 channels: 123,776 more parameters than the 7x7 stem."""
    stem = 3 * 64 * 9 + 2 * 64 + 64 * 64 * 9 + 2 * 64 + 64 * 128 * 9 + 2 * 128  # 112,832
    seven = 3 * 64 * 49 + 2 * 64  # 9,536
    wider_layer1 = (128 - 64) * 64 + (128 - 64) * 256  # the first block's 1x1 reduce and projection shortcut
    encoder = resnet50_without_fc() - seven + stem + wider_layer1
    assert encoder == 23_631_808
    network = DeepLabV3Plus()
    assert network.stem == "deep"
    shapes = {k: tuple(v.shape) for k, v in network.encoder.state_dict().items()}
    assert shapes["conv1.0.weight"] == (64, 3, 3, 3) and shapes["conv1.1.weight"] == (64,)
    assert shapes["conv1.3.weight"] == (64, 64, 3, 3) and shapes["conv1.4.running_var"] == (64,)
    assert shapes["conv1.6.weight"] == (128, 64, 3, 3) and shapes["bn1.weight"] == (128,)
    assert shapes["layer1.0.conv1.weight"] == (64, 128, 1, 1)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 128, 1, 1)
    assert "conv1.weight" not in shapes
    assert [m.stride[0] for m in network.encoder.conv1 if isinstance(m, nn.Conv2d)] == [2, 1, 1]
    assert sum(p.numel() for p in network.encoder.parameters()) == encoder
    assert sum(p.numel() for p in network.parameters()) == encoder + HEAD == 40_471_074


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


class ReferenceBottleneck(nn.Module):
    """TorchSemiSeg's ``Bottleneck`` layout (furnace/base_model/resnet.py): the stride on the 3x3 convolution."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ReferenceResNetC(nn.Module):
    """An independent model of TorchSemiSeg's ``ResNet(deep_stem=True)``: the key names of ``resnet50_v1c.pth``."""

    def __init__(self, planes: tuple[int, ...], stem_width: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(),
            nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(),
            nn.Conv2d(stem_width, stem_width * 2, 3, padding=1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(stem_width * 2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_width * 2
        for index, width in enumerate(planes):
            setattr(
                self, f"layer{index + 1}", nn.Sequential(ReferenceBottleneck(inplanes, width, 1 if index == 0 else 2))
            )
            inplanes = width * 4
        self.fc = nn.Linear(inplanes, 1000)  # ImageNet classifier, ignored by the loader

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, max pool and layer1-3 (layer4 is dilated in DeepLabv3+)."""
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def randomise(module: nn.Module) -> None:
    """Random weights and BN statistics, so a key or channel mix-up changes the output."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.2)


def encoder_features(network: DeepLabV3Plus, x: torch.Tensor) -> torch.Tensor:
    encoder = network.encoder
    features = encoder.maxpool(encoder.act(encoder.bn1(encoder.conv1(x))))
    return encoder.layer3(encoder.layer2(encoder.layer1(features)))


def test_resnet50_v1c_checkpoint_loads_into_the_deep_stem(tmp_path: Path) -> None:
    """A state dict of TorchSemiSeg's ResNet-C layout (``conv1.0``...``conv1.6``, ``bn1``, ``fc``), saved as its
    ``load_model`` reads it (under ``"model"``, a DDP ``module.`` prefix): every tensor lands in the encoder and the
    encoder computes the reference's features."""
    torch.manual_seed(0)
    reference = ReferenceResNetC(planes=(8, 16, 32, 64), stem_width=8)  # SMALL: widths x 0.125
    randomise(reference)
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    path = tmp_path / "resnet50_v1c.pth"
    torch.save({"model": state}, path)
    network = DeepLabV3Plus(**SMALL, pretrained_encoder_path=path).eval()
    reference.eval()
    loaded = network.encoder.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(loaded[key], value, msg=key)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder_features(network, x), reference.features(x))
    with pytest.raises(ValueError, match=r"missing keys .*conv1\.0\.weight"):  # the 7x7 layout does not fit
        load_encoder_weights(network.encoder, save_torchvision_layout(tmp_path))


def save_torchvision_layout(tmp_path: Path) -> Path:
    path = tmp_path / "torchvision.pt"
    torch.save(DeepLabV3Plus(**SMALL, stem="torchvision").encoder.state_dict(), path)
    return path


def test_pretrained_encoder_weights_load(tmp_path: Path) -> None:
    source = DeepLabV3Plus(**SMALL, stem="torchvision")
    state = {f"module.{k}": v for k, v in source.encoder.state_dict().items()}  # a DDP-saved backbone
    state["fc.weight"] = torch.zeros(10, 64)  # a classifier is ignored
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": state}, path)
    network = DeepLabV3Plus(**SMALL, stem="torchvision", pretrained_encoder_path=path)
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(network.encoder.state_dict()[key], value)
    other = DeepLabV3Plus(**SMALL, stem="torchvision")
    assert not torch.equal(other.encoder.conv1.weight, source.encoder.conv1.weight)


def test_pretrained_encoder_errors_list_what_does_not_fit(tmp_path: Path) -> None:
    network = DeepLabV3Plus(**SMALL)
    wider = DeepLabV3Plus(**{**SMALL, "widen_factor": 0.25})
    path = tmp_path / "wider.pt"
    torch.save(wider.encoder.state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatches") as error:
        load_encoder_weights(network.encoder, path)
    assert "conv1.0.weight" in str(error.value)
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
    for kwargs in (
        {"spatial_dims": 1},
        {"output_stride": 32},
        {"layers": (1, 1, 1)},
        {"multi_grid": ()},
        {"stem": "7x7"},
    ):
        with pytest.raises(ValueError):
            DeepLabV3Plus(**{**SMALL, **kwargs})


def test_head_initialisation_is_kaiming_normal() -> None:
    network = DeepLabV3Plus(**SMALL)
    conv = network.fuse[0].conv
    assert isinstance(conv, nn.Conv2d)
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.1)
