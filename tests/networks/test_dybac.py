"""Tests of common.networks.dybac: shapes, hand-computed attention and kernel mixing, gate, temperature setter."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from common.networks.dybac import (
    DEFAULT_TEMPERATURE,
    DyBAC,
    DynamicDepthwiseConv,
    KernelAttention,
    SpatialGate,
    dybac_temperatures,
    set_dybac_temperature,
)


@pytest.mark.parametrize(("dims", "shape"), [(2, (2, 8, 12, 10)), (3, (2, 8, 8, 6, 4))])
def test_shapes_and_stride(dims: int, shape: tuple[int, ...]) -> None:
    block = DyBAC(dims, 8, 5, stride=2)
    out = block(torch.randn(shape))
    assert out.shape == (2, 5, *[math.ceil(s / 2) for s in shape[2:]])
    assert (out >= 0).all()  # ends in ReLU


def test_default_temperatures_and_hidden_width() -> None:
    assert DEFAULT_TEMPERATURE == {2: 30.0, 3: 34.0}
    assert KernelAttention(2, 16).temperature == 30.0
    assert KernelAttention(3, 16).temperature == 34.0
    assert KernelAttention(3, 16).hidden == 5  # floor(0.25 * 16) + 1
    assert KernelAttention(2, 7).hidden == 2  # floor(1.75) + 1
    assert KernelAttention(2, 7).fc2.out_channels == 4


def test_attention_is_softmax_of_logits_over_temperature() -> None:
    attention = KernelAttention(2, 4, num_kernels=2, hidden_ratio=0.25, temperature=2.0)  # hidden = 2
    with torch.no_grad():
        attention.fc1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, -1.0, 0, 0]]).view(2, 4, 1, 1))
        attention.fc2.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1))
    x = torch.zeros(1, 4, 2, 2)
    x[0, 0] = 2.0  # GAP = (2, -3, 0, 0) -> FC1 = (2, 3) -> ReLU -> FC2 = (2, 3)
    x[0, 1] = -3.0
    a = attention(x)
    expected = torch.softmax(torch.tensor([2.0, 3.0]) / 2.0, dim=0)  # (0.3775, 0.6225)
    assert torch.allclose(a[0], expected, atol=1e-6)
    assert a[0, 0].item() == pytest.approx(1 / (1 + math.exp(0.5)), abs=1e-6)
    set_dybac_temperature(attention, 1e6)
    assert torch.allclose(attention(x), torch.full((1, 2), 0.5), atol=1e-5)  # high temperature: uniform


def test_per_sample_kernel_mixture_equals_reference_convolution() -> None:
    conv = DynamicDepthwiseConv(2, 3, 2, kernel_size=3, num_kernels=4)
    x = torch.randn(2, 3, 7, 6)
    mixing = conv.attention(x)
    depthwise = []
    for b in range(2):
        kernel = (mixing[b].view(4, 1, 1, 1, 1) * conv.weight).sum(0)  # (C, 1, 3, 3)
        depthwise.append(F.conv2d(x[b : b + 1], kernel, padding=1, groups=3))
    expected = conv.pointwise(torch.cat(depthwise))
    assert torch.allclose(conv(x), expected, atol=1e-5)


def test_identity_kernels_give_pointwise_projection_only() -> None:
    conv = DynamicDepthwiseConv(3, 2, 2, kernel_size=3, num_kernels=4)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 0, 1, 1, 1] = 1.0  # every kernel is a centred delta: the mixture is too
        conv.pointwise.weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1, 1))
        conv.pointwise.bias.zero_()
    x = torch.randn(3, 2, 4, 4, 4)
    out = conv(x)
    assert torch.allclose(out[:, 0], 2 * x[:, 0], atol=1e-6)
    assert torch.allclose(out[:, 1], x[:, 0] + x[:, 1], atol=1e-6)


def test_spatial_gate_hand_computed() -> None:
    gate = SpatialGate(2, 4).eval()  # hidden = max(4 // 16, 1) = 1
    with torch.no_grad():
        gate.squeeze.weight.fill_(1.0)
        gate.squeeze.bias.zero_()
        gate.excite.weight.fill_(1.0)
        gate.excite.bias.zero_()
    x = torch.full((1, 4, 2, 2), 0.25)  # sum over channels = 1 -> BN(eval, identity) -> sigmoid(1)
    assert torch.allclose(gate(x), x * torch.sigmoid(torch.tensor(1.0)), atol=1e-6)
    assert SpatialGate(3, 64).squeeze.out_channels == 4


def test_set_temperature_everywhere_and_errors() -> None:
    net = torch.nn.Sequential(DyBAC(2, 4, 4), DyBAC(2, 4, 8))
    assert set_dybac_temperature(net, 7.0) == 2
    assert dybac_temperatures(net) == [7.0, 7.0]
    assert set_dybac_temperature(torch.nn.Conv2d(1, 1, 1), 3.0) == 0
    with pytest.raises(ValueError, match="temperature must be positive"):
        set_dybac_temperature(net, 0.0)
    with pytest.raises(ValueError, match="spatial_dims"):
        DyBAC(1, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        DynamicDepthwiseConv(2, 4, 4, kernel_size=2)


def test_gradient_reaches_every_parameter_and_torchscript() -> None:
    # seeded: with two hidden units, some random draws leave both ReLUs of the kernel attention off for the batch
    torch.manual_seed(0)
    block = DyBAC(3, 4, 6)
    out = block(torch.randn(2, 4, 6, 6, 4))
    (out * torch.randn_like(out)).sum().backward()  # a plain sum would be flat through the batch norm
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    block.eval()
    x = torch.randn(1, 4, 6, 6, 4)
    assert torch.allclose(torch.jit.script(block)(x), block(x), atol=1e-6)
