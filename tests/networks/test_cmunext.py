"""Tests of ``common.networks.CMUNeXt``: shapes, parameter counts, TorchScript, gradients, residual, skip order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser

from common.networks import CMUNeXt
from common.networks.cmunext import CMUNeXtBlock, CMUNeXtUpStage

VARIANTS = ("cmunext", "cmunext_s", "cmunext_l")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- parameter count derived by hand: conv (k*k*C_in/groups*C_out + C_out bias) and BN (2*C: gamma, beta) ----


def _conv(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return k * k * (c_in // groups) * c_out + c_out


def _bn(c: int) -> int:
    return 2 * c


def _conv_bn_relu(c_in: int, c_out: int) -> int:  # 3x3 conv + BN
    return _conv(c_in, c_out, 3) + _bn(c_out)


def _block(c: int, k: int) -> int:
    # depthwise kxk + BN, 1x1 C->4C + BN, 1x1 4C->C + BN  ==  8 C^2 + (k^2 + 18) C
    return _conv(c, c, k, groups=c) + _bn(c) + _conv(c, 4 * c, 1) + _bn(4 * c) + _conv(4 * c, c, 1) + _bn(c)


def _fusion(c: int) -> int:
    # 3x3 group conv (2 groups) on 2C + BN, 1x1 2C->4C + BN, 1x1 4C->C + BN  ==  30 C^2 + 21 C
    group_conv = _conv(2 * c, 2 * c, 3, groups=2) + _bn(2 * c)
    return group_conv + _conv(2 * c, 4 * c, 1) + _bn(4 * c) + _conv(4 * c, c, 1) + _bn(c)


def _cmunext_params(c_in: int, c_out: int, dims, depths, kernels) -> int:
    total = _conv_bn_relu(c_in, dims[0])  # stem
    widths_in = (dims[0],) + tuple(dims[:-1])
    for w_in, w_out, d, k in zip(widths_in, dims, depths, kernels):  # encoder stages
        total += d * _block(w_in, k) + _conv_bn_relu(w_in, w_out)
    for i in range(4, 0, -1):  # decoder: up conv dims[i] -> dims[i-1], then skip fusion at dims[i-1]
        total += _conv_bn_relu(dims[i], dims[i - 1]) + _fusion(dims[i - 1])
    return total + _conv(dims[0], c_out, 1)  # 1x1 head


def test_closed_forms_of_hand_count() -> None:
    # the per-group helpers agree with the closed forms written in the docstrings above
    for c, k in ((16, 3), (160, 7), (128, 9)):
        assert _block(c, k) == 8 * c * c + (k * k + 18) * c
        assert _fusion(c) == 30 * c * c + 21 * c


def test_param_count_default_matches_hand_derivation_and_paper() -> None:
    net = CMUNeXt(in_channels=3, out_channels=1)
    expected = _cmunext_params(3, 1, (16, 32, 128, 160, 256), (1, 1, 1, 3, 1), (3, 3, 7, 7, 7))
    # worked out group by group for the default variant (C: width, k: depthwise kernel):
    stem = 9 * 3 * 16 + 16 + 2 * 16  # 480
    enc = [
        (8 * 16**2 + 27 * 16) + (9 * 16 * 16 + 3 * 16),  # stage 1: block(16, 3) + conv 16->16
        (8 * 16**2 + 27 * 16) + (9 * 16 * 32 + 3 * 32),  # stage 2: block(16, 3) + conv 16->32
        (8 * 32**2 + 67 * 32) + (9 * 32 * 128 + 3 * 128),  # stage 3: block(32, 7) + conv 32->128
        3 * (8 * 128**2 + 67 * 128) + (9 * 128 * 160 + 3 * 160),  # stage 4: 3 x block(128, 7) + conv 128->160
        (8 * 160**2 + 67 * 160) + (9 * 160 * 256 + 3 * 256),  # stage 5: block(160, 7) + conv 160->256
    ]
    # decoder stage: up conv-BN C_hi -> C_lo (9 C_hi C_lo + 3 C_lo) + skip fusion at C_lo (30 C_lo^2 + 21 C_lo)
    dec = [9 * hi * lo + 3 * lo + 30 * lo**2 + 21 * lo for hi, lo in ((256, 160), (160, 128), (128, 32), (32, 16))]
    head = 16 * 1 + 1
    assert sum(enc) + sum(dec) + stem + head == expected == 3_149_185
    # group by group against the modules, then the whole network
    assert _count(net.stem) == stem and _count(net.head) == head
    assert [_count(m) for m in net.encoders] == enc
    assert [_count(m) for m in net.decoders] == dec
    assert _count(net) == expected
    # the paper reports 3.14 M; the exact count is 3.149 M (the paper's figure is this one truncated)
    assert abs(_count(net) / 1e6 - 3.14) < 0.01


@pytest.mark.parametrize(
    "variant, dims, depths, kernels",
    [
        ("cmunext_s", (8, 16, 32, 64, 128), (1, 1, 1, 1, 1), (3, 3, 7, 7, 9)),
        ("cmunext_l", (32, 64, 128, 256, 512), (1, 1, 1, 6, 3), (3, 3, 7, 7, 7)),
    ],
)
def test_param_count_other_variants(variant: str, dims, depths, kernels) -> None:
    net = CMUNeXt(in_channels=3, out_channels=1, variant=variant)
    assert (net.dims, net.depths, net.kernels) == (dims, depths, kernels)
    assert _count(net) == _cmunext_params(3, 1, dims, depths, kernels)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shape(variant: str) -> None:
    net = CMUNeXt(in_channels=3, out_channels=2, variant=variant).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 32, 48))
    assert y.shape == (2, 2, 32, 48)
    assert torch.isfinite(y).all()


def test_batch_size_one_and_one_channel() -> None:
    net = CMUNeXt(in_channels=1, out_channels=4, variant="cmunext_s").eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 16, 16)).shape == (1, 4, 16, 16)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_matches_eager() -> None:
    torch.manual_seed(0)
    net = CMUNeXt(in_channels=3, out_channels=2)
    # non-trivial BN statistics so that eval mode is not the identity
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(2, 3, 32, 32))
    net.eval()
    scripted = torch.jit.script(net)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="divisible by 16"):
        scripted(torch.rand(1, 3, 24, 32))


def test_gradient_reaches_first_layer() -> None:
    torch.manual_seed(0)
    net = CMUNeXt(in_channels=3, out_channels=1, variant="cmunext_s").train()
    net(torch.rand(2, 3, 32, 32)).pow(2).mean().backward()
    stem_grad = net.stem[0].weight.grad
    assert stem_grad is not None and torch.isfinite(stem_grad).all() and stem_grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_block_residual_wraps_depthwise_branch() -> None:
    torch.manual_seed(0)
    block = CMUNeXtBlock(channels=8, kernel_size=7).eval()
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        # y = MLP(x + DW(x)): fails if the shortcut is missing (MLP(DW(x))) or wraps the MLP too
        torch.testing.assert_close(block(x), block.mlp(x + block.depthwise(x)))
        # zero the depthwise branch: conv out 0, GELU(0) = 0, eval-mode BN with fresh statistics and beta = 0 gives 0,
        # so the block reduces to MLP(x); without the residual it would be the constant MLP(0)
        block.depthwise[0].weight.zero_()
        block.depthwise[0].bias.zero_()
        torch.testing.assert_close(block.depthwise(x), torch.zeros_like(x))
        y = block(x)
        torch.testing.assert_close(y, block.mlp(x))
        assert not torch.allclose(y, block.mlp(torch.zeros_like(x)), atol=1e-3)
        assert not torch.allclose(y[0], y[1], atol=1e-3)


def test_layer_order_and_state_dict_indices() -> None:
    """conv -> GELU -> BN (GELU before the norm, as the paper), at the ``nn.Sequential`` indices trained checkpoints
    load by: ``depthwise.0``/``.2``, ``mlp.0``/``.2``/``.3``/``.5``, ``fuse.0``/``.2``/``.3``/``.5``/``.6``/``.8``."""
    pattern = [torch.nn.Conv2d, torch.nn.GELU, torch.nn.BatchNorm2d]
    block = CMUNeXtBlock(channels=4, kernel_size=5)
    assert [type(m) for m in block.depthwise] == pattern and [type(m) for m in block.mlp] == pattern * 2
    assert (block.depthwise[0].kernel_size, block.depthwise[0].groups, block.depthwise[0].padding) == (
        (5, 5),
        4,
        (2, 2),
    )
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in block.mlp[::3]] == [
        (4, 16, (1, 1)),
        (16, 4, (1, 1)),
    ]
    fuse = CMUNeXtUpStage(in_channels=6, out_channels=4).fusion.fuse
    assert [type(m) for m in fuse] == pattern * 3
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.groups) for m in fuse[::3]] == [
        (8, 8, (3, 3), 2),
        (8, 16, (1, 1), 1),
        (16, 4, (1, 1), 1),
    ]
    assert [m.num_features for m in fuse[2::3]] == [8, 16, 4]
    assert {k.rsplit(".", 1)[0] for k in block.state_dict()} == {
        "depthwise.0",
        "depthwise.2",
        "mlp.0",
        "mlp.2",
        "mlp.3",
        "mlp.5",
    }


def _single_tap(conv: torch.nn.Conv2d, taps: dict[tuple[int, int], float]) -> None:
    """Zero ``conv`` (weights and bias), then set the centre tap of each ``(out, in-group)`` pair listed."""
    conv.weight.zero_()
    conv.bias.zero_()
    centre = conv.kernel_size[0] // 2
    for (out_channel, in_channel), value in taps.items():
        conv.weight[out_channel, in_channel, centre, centre] = value


@pytest.mark.parametrize("branch", ["skip", "up"])
def test_skip_fusion_concatenates_skip_then_up(branch: str) -> None:
    """Hand-built C = 1 decoder stage: the fusion's group conv passes channel 0 to channel 0 and channel 1 to channel 1,
    every BN is the identity, and the 1x1 MLP reads one channel only; ``branch`` says which. The official code
    (``torch.cat((x4, d5), dim=1)``) and METHODS.md put the skip first, so channel 0 is the skip: reading channel 0
    gives ``GELU(GELU(GELU(skip)))``, channel 1 the same of the upsampled branch. Swapping the concat order to
    ``[up, skip]`` exchanges the two results and fails both cases."""
    stage = CMUNeXtUpStage(in_channels=1, out_channels=1).eval()
    with torch.no_grad():
        for module in stage.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # eval-mode BN as the identity: (x - 0) / sqrt(1 - eps + eps)
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
                module.weight.fill_(1.0)
                module.bias.zero_()
        _single_tap(stage.up[1][0], {(0, 0): 1.0})  # the up conv: identity, so up = ReLU(bilinear x2 of x)
        fuse = stage.fusion.fuse
        _single_tap(fuse[0], {(0, 0): 1.0, (1, 0): 1.0})  # groups = 2: each output channel copies its own input
        _single_tap(fuse[3], {(0, 0 if branch == "skip" else 1): 1.0})  # 2C -> 4C: hidden 0 reads one channel
        _single_tap(fuse[6], {(0, 0): 1.0})  # 4C -> C: the output is hidden 0
        x = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).reshape(1, 1, 2, 2)
        skip = torch.tensor(
            [[-3.0, -2.0, -1.0, 0.0], [1.0, 2.0, 3.0, -4.0], [0.5, -0.5, 1.5, -1.5], [2.5, -2.5, 0.25, -0.25]]
        ).reshape(1, 1, 4, 4)
        # bilinear x2 (half-pixel centres) by hand: [a, b] -> [a, (3a + b) / 4, (a + 3b) / 4, b] along each axis
        up = torch.tensor(
            [[0.0, 1.0, 3.0, 4.0], [2.0, 3.0, 5.0, 6.0], [6.0, 7.0, 9.0, 10.0], [8.0, 9.0, 11.0, 12.0]]
        ).reshape(1, 1, 4, 4)
        torch.testing.assert_close(stage.up(x), up)
        read = skip if branch == "skip" else up
        expected = F.gelu(F.gelu(F.gelu(read)))
        torch.testing.assert_close(stage(x, skip), expected, atol=1e-5, rtol=1e-5)


def test_bundle_config_instantiation() -> None:
    parser = ConfigParser({"net": {"_target_": "common.networks.CMUNeXt", "in_channels": 3, "out_channels": 2}})
    net = parser.get_parsed_content("net")
    assert isinstance(net, CMUNeXt) and net.out_channels == 2 and net.dims == (16, 32, 128, 160, 256)
    parser = ConfigParser(
        {"net": {"_target_": "common.networks.CMUNeXt", "in_channels": 1, "out_channels": 2, "variant": "cmunext_l"}}
    )
    assert parser.get_parsed_content("net").dims == (32, 64, 128, 256, 512)


def test_variant_names_and_overrides() -> None:
    assert CMUNeXt(variant="CMUNeXt-S").dims == (8, 16, 32, 64, 128)
    net = CMUNeXt(variant="cmunext_s", kernels=[3, 3, 5, 5, 5])  # explicit values override the variant's
    assert net.dims == (8, 16, 32, 64, 128) and net.kernels == (3, 3, 5, 5, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 0},
        {"out_channels": -1},
        {"in_channels": 2.0},
        {"out_channels": True},
        {"dims": (16, 32, 128, 160)},
        {"dims": (16, 32, 128, 160, 0)},
        {"depths": (1, 1, 1, 3, 1, 1)},
        {"depths": (1, 0, 1, 3, 1)},
        {"kernels": (3, 3, 7, 7, 8)},
        {"kernels": "33777"},
        {"kernels": 3},
        {"variant": "cmunext_xl"},
    ],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CMUNeXt(**kwargs)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 40, 32), "divisible by 16"),
        ((1, 3, 32, 24), "divisible by 16"),
        ((1, 1, 32, 32), "input channels"),
        ((3, 32, 32), "2D"),
    ],
)
def test_invalid_input(shape: tuple[int, ...], message: str) -> None:
    net = CMUNeXt(variant="cmunext_s").eval()
    with pytest.raises(ValueError, match=message):
        net(torch.rand(*shape))
