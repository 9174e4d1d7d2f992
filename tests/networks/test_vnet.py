"""Tests of common.networks.vnet: the block factory's calls (stage and layer indices, widths), the topology against a
hand-written forward pass, dropout placement, module order, the heads built on it, errors, TorchScript."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import Convolution
from torch import nn

from common.networks import DualTaskVNet, DyBACVNet
from common.networks.vnet import DECODER_LAYERS, ENCODER_LAYERS, VNetBackbone, conv_stage, plain_conv_block


class _Recorder:
    """A block factory that logs its calls and builds plain blocks."""

    def __init__(self, spatial_dims: int) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.plain = plain_conv_block(spatial_dims)

    def __call__(self, in_channels: int, out_channels: int, stage: int, layer: int) -> nn.Module:
        self.calls.append((in_channels, out_channels, stage, layer))
        return self.plain(in_channels, out_channels, stage, layer)


def test_block_factory_is_called_for_every_layer_in_data_order() -> None:
    """Nine stages: encoder 0-3 (1, 2, 3, 3 layers, widths 4..32), bottleneck 4 (3 layers, 64), decoder 5-8, deepest
    first (3, 3, 2, 1 layers, widths 32..4); only the very first layer changes the width (1 -> 4)."""
    recorder = _Recorder(3)
    VNetBackbone(3, in_channels=1, features=4, block=recorder)
    widths = {0: 4, 1: 8, 2: 16, 3: 32, 4: 64, 5: 32, 6: 16, 7: 8, 8: 4}
    layers = {0: 1, 1: 2, 2: 3, 3: 3, 4: 3, 5: 3, 6: 3, 7: 2, 8: 1}
    expected = [
        (1 if stage == 0 and layer == 0 else widths[stage], widths[stage], stage, layer)
        for stage in range(9)
        for layer in range(layers[stage])
    ]
    assert recorder.calls == expected
    assert (ENCODER_LAYERS, DECODER_LAYERS) == ((1, 2, 3, 3, 3), (3, 3, 2, 1))


def test_forward_is_the_hand_written_vnet() -> None:
    """Stride-2 down after each encoder stage, transposed up, additive skips (deepest first), no dropout in eval."""
    torch.manual_seed(0)
    net = VNetBackbone(3, in_channels=2, features=2).eval()
    x = torch.randn(2, 2, 16, 16, 32)
    with torch.no_grad():
        skips = []
        h = x
        for k in range(4):
            h = net.encoder[k](h)
            skips.append(h)
            h = net.down[k](h)
        h = net.bottleneck(h)
        for j in range(4):
            h = net.decoder[j](net.up[j](h) + skips[3 - j])
        torch.testing.assert_close(net(x), h)
        torch.testing.assert_close(net.features(x), h)
    assert h.shape == (2, 2, 16, 16, 32)
    assert all(down.conv.stride == (2, 2, 2) for down in net.down)
    assert [up.conv.in_channels for up in net.up] == [32, 16, 8, 4]
    assert all(isinstance(up.conv, nn.ConvTranspose3d) for up in net.up)


@pytest.mark.parametrize("where", ["bottleneck", "output"])
def test_dropout_drops_whole_channels_of_the_bottleneck_and_the_output(where: str) -> None:
    """Channel dropout (p = 0.5, kept maps scaled by 2) between the bottleneck and the first up-convolution, and
    after the last decoder stage; nowhere else."""
    torch.manual_seed(0)
    net = VNetBackbone(2, in_channels=1, features=4, dropout_prob=0.5)
    assert isinstance(net.dropout, nn.Dropout2d) and net.dropout.p == 0.5
    seen: dict[str, torch.Tensor] = {}
    before, after = (net.bottleneck, net.up[0]) if where == "bottleneck" else (net.decoder[-1], None)
    # the hooks return None: a hook's return value would replace the module's output (or input)
    before.register_forward_hook(lambda module, args, out: seen.update(before=out))
    if after is not None:
        after.register_forward_pre_hook(lambda module, args: seen.update(after=args[0]))
    out = net(torch.randn(4, 1, 32, 32))
    dropped_out = seen.get("after", out)
    dropped = dropped_out.flatten(2).abs().amax(dim=2) == 0
    assert dropped.any() and (~dropped).any()
    torch.testing.assert_close(dropped_out[~dropped], 2.0 * seen["before"][~dropped])
    net.eval()
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(net(x), net(x))


def test_modules_in_construction_order_and_default_blocks() -> None:
    """The order fixes the seeded initialisation and the state-dict keys that trained checkpoints load by."""
    net = VNetBackbone(3, features=4)
    assert [name for name, _ in net.named_children()] == ["encoder", "bottleneck", "down", "up", "decoder", "dropout"]
    layer = net.encoder[1][0]
    assert isinstance(layer, Convolution) and layer.conv.kernel_size == (3, 3, 3) and layer.conv.padding == (1, 1, 1)
    assert isinstance(layer.adn.N, nn.BatchNorm3d) and isinstance(layer.adn.A, nn.ReLU)
    instance = VNetBackbone(3, features=4, norm="instance", act="prelu")
    assert isinstance(instance.encoder[0][0].adn.N, nn.InstanceNorm3d) and isinstance(instance.up[0].adn.A, nn.PReLU)


def test_heads_are_built_on_the_same_backbone() -> None:
    """With the same seed the dual-task and the plain DyBAC V-Net get the backbone's exact initial weights."""
    torch.manual_seed(0)
    backbone = VNetBackbone(3, in_channels=1, features=4).state_dict()
    torch.manual_seed(0)
    dual = DualTaskVNet(3, 1, 2, features=4, shared_head=True).state_dict()
    torch.manual_seed(0)
    plain = DyBACVNet(3, 1, 2, features=4, use_dybac=False).state_dict()
    assert list(dual) == [*backbone, "seg_head.weight", "seg_head.bias"]
    assert list(plain) == [*backbone, "head.weight", "head.bias"]
    for key, value in backbone.items():
        assert torch.equal(dual[key], value) and torch.equal(plain[key], value)
    torch.testing.assert_close(dual["seg_head.weight"], plain["head.weight"])


def test_conv_stage_chains_the_width() -> None:
    stage = conv_stage(plain_conv_block(2), 3, 5, 3, stage=7)
    assert [(m.conv.in_channels, m.conv.out_channels) for m in stage] == [(3, 5), (5, 5), (5, 5)]


def test_errors() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        VNetBackbone(spatial_dims=1)
    with pytest.raises(ValueError, match="dropout_prob"):
        VNetBackbone(dropout_prob=1.0)


def test_torchscript_matches_eager() -> None:
    net = VNetBackbone(3, features=2).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    torch.testing.assert_close(torch.jit.script(net)(x), net(x))
