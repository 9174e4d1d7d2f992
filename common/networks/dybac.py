"""DyBAC: dynamic convolution with a spatial attention gate, ASE-Net's drop-in replacement of a 3x3 conv block.

One block, on ``x`` of shape ``(B, C_in, *spatial)`` in 2D or 3D (ASE-Net, IEEE TMI; official code
``SUST-reynole/ASE-Net``, built on Chen et al.'s dynamic convolution, CVPR 2020):

1. spatial gate: ``x * sigmoid(BN(conv1x1(conv1x1(x))))`` with ``C_in -> C_in // 16 -> 1`` channels;
2. dynamic depthwise convolution: ``K`` depthwise kernels ``W_k`` of shape ``(C_in, 1, k, k[, k])`` mixed per sample
   by ``a = softmax(FC2(ReLU(FC1(GAP(x)))) / T)`` (FC1: ``C_in -> floor(0.25 C_in) + 1``, FC2: ``-> K``, both
   bias-free 1x1 convolutions), i.e. ``W(x) = sum_k a_k W_k``;
3. pointwise projection ``C_in -> C_out`` (1x1 conv), then BN and ReLU.

The temperature ``T`` (30 in 2D, 34 in 3D) keeps the attention nearly uniform early in training, so that all kernels
learn; :class:`common.handlers.DyBACTemperature` lowers it by 3 per schedule step down to 1. Networks never compute
the schedule: the handler calls :func:`set_dybac_temperature`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from common.networks.utils import check_spatial_dims

__all__ = [
    "DEFAULT_TEMPERATURE",
    "DyBAC",
    "DynamicDepthwiseConv",
    "KernelAttention",
    "SpatialGate",
    "dybac_temperatures",
    "set_dybac_temperature",
]

DEFAULT_TEMPERATURE = {2: 30.0, 3: 34.0}
"""The initial softmax temperature of the kernel attention per ``spatial_dims`` (the official code's values)."""


class SpatialGate(nn.Module):
    """Spatial attention gate: ``x * sigmoid(BN(conv1x1(conv1x1(x))))`` (``C -> max(C // 16, 1) -> 1`` channels).

    The hidden width is at least 1 so that narrow layers (fewer than 16 channels) keep a gate; the official code's
    ``C // 16`` would be 0 there.

    Args:
        spatial_dims: 2 or 3.
        channels: input channels ``C``.
        reduction: the hidden width is ``C // reduction``.

    Input ``(B, C, *spatial)``; output the same shape.
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if channels < 1 or reduction < 1:
            raise ValueError(f"channels and reduction must be positive, got {channels}, {reduction}")
        conv = Conv[Conv.CONV, spatial_dims]
        hidden = max(channels // reduction, 1)
        self.squeeze = conv(channels, hidden, kernel_size=1)
        self.excite = conv(hidden, 1, kernel_size=1)
        self.norm = Norm[Norm.BATCH, spatial_dims](1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, 1, *spatial)`` gate in ``(0, 1)``."""
        return torch.sigmoid(self.norm(self.excite(self.squeeze(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class KernelAttention(nn.Module):
    """Per-sample mixing weights of ``K`` kernels: ``softmax(FC2(ReLU(FC1(GAP(x)))) / T)``.

    Args:
        spatial_dims: 2 or 3.
        channels: input channels ``C``.
        num_kernels: ``K``.
        hidden_ratio: FC1 has ``floor(hidden_ratio * C) + 1`` outputs.
        temperature: the initial softmax temperature ``T`` (default: 30 in 2D, 34 in 3D).

    Input ``(B, C, *spatial)``; output ``(B, K)``, rows summing to 1.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_kernels: int = 4,
        hidden_ratio: float = 0.25,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if num_kernels < 1 or hidden_ratio < 0:
            raise ValueError(f"num_kernels must be >= 1 and hidden_ratio >= 0, got {num_kernels}, {hidden_ratio}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.hidden = math.floor(hidden_ratio * channels) + 1
        self.fc1 = conv(channels, self.hidden, kernel_size=1, bias=False)
        self.fc2 = conv(self.hidden, num_kernels, kernel_size=1, bias=False)
        self.temperature = float(DEFAULT_TEMPERATURE[spatial_dims] if temperature is None else temperature)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``FC2(ReLU(FC1(GAP(x))))`` as ``(B, K)``, before the temperature."""
        return self.fc2(F.relu(self.fc1(self.pool(x)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x) / self.temperature, dim=1)


class DynamicDepthwiseConv(nn.Module):
    """Depthwise convolution whose kernel is a per-sample mixture of ``K`` kernels, then a pointwise projection.

    Args:
        spatial_dims: 2 or 3.
        in_channels: ``C_in``.
        out_channels: ``C_out`` of the pointwise projection.
        kernel_size: the depthwise kernel size ``k``.
        stride: the depthwise convolution's stride.
        num_kernels: ``K``.
        hidden_ratio: see :class:`KernelAttention`.
        temperature: see :class:`KernelAttention`.

    Input ``(B, C_in, *spatial)``; output ``(B, C_out, *spatial / stride)`` (padding ``k // 2``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        num_kernels: int = 4,
        hidden_ratio: float = 0.25,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if kernel_size < 1 or kernel_size % 2 == 0 or stride < 1:
            raise ValueError(f"kernel_size must be odd and positive, stride positive; got {kernel_size}, {stride}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.stride = stride
        self.padding = kernel_size // 2
        self.attention = KernelAttention(spatial_dims, in_channels, num_kernels, hidden_ratio, temperature)
        self.weight = nn.Parameter(torch.empty(num_kernels, in_channels, 1, *([kernel_size] * spatial_dims)))
        for kernel in self.weight:  # each kernel initialised as a stand-alone depthwise conv would be
            nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))
        self.pointwise = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)

    def mixed_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample kernels ``sum_k a_k W_k`` as ``(B * C_in, 1, k, ...)``, ready for a grouped convolution."""
        mixing = self.attention(x)
        return torch.mm(mixing, self.weight.flatten(1)).view([-1] + list(self.weight.shape[2:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        # the batch is folded into the channels so that one grouped convolution applies each sample's own kernels
        groups = batch * self.in_channels
        folded = x.reshape([1, groups] + list(x.shape[2:]))
        weight = self.mixed_weight(x)
        if self.spatial_dims == 3:
            out = F.conv3d(folded, weight, None, self.stride, self.padding, 1, groups)
        else:
            out = F.conv2d(folded, weight, None, self.stride, self.padding, 1, groups)
        return self.pointwise(out.reshape([batch, self.in_channels] + list(out.shape[2:])))


class DyBAC(nn.Module):
    """Spatial gate -> dynamic depthwise conv -> pointwise projection -> BN -> ReLU (see the module docstring).

    A drop-in replacement for a ``Convolution(spatial_dims, C_in, C_out, kernel_size, strides)`` block with
    batch norm and ReLU.

    Args:
        spatial_dims: 2 or 3.
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: the depthwise kernel size (3 in ASE-Net).
        stride: the stride (2 in the discriminators).
        num_kernels: ``K`` (4).
        hidden_ratio: see :class:`KernelAttention` (0.25).
        temperature: the initial temperature (default 30 in 2D, 34 in 3D).
        gate_reduction: see :class:`SpatialGate` (16).
        act: end with the ReLU; False ends at the batch norm, for a caller that applies its own activation (ASE-Net's
            discriminators apply LeakyReLU(0.2), which after a ReLU would never see a negative input).

    Input ``(B, C_in, *spatial)``; output ``(B, C_out, *spatial / stride)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        num_kernels: int = 4,
        hidden_ratio: float = 0.25,
        temperature: float | None = None,
        gate_reduction: int = 16,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.gate = SpatialGate(spatial_dims, in_channels, gate_reduction)
        self.conv = DynamicDepthwiseConv(
            spatial_dims, in_channels, out_channels, kernel_size, stride, num_kernels, hidden_ratio, temperature
        )
        self.norm = Norm[Norm.BATCH, spatial_dims](out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.gate(x))))


def set_dybac_temperature(module: nn.Module, temperature: float) -> int:
    """Set the kernel-attention temperature of every DyBAC inside ``module``.

    Args:
        module: any module (a network, its ``DistributedDataParallel`` wrapper, an EMA copy, a discriminator).
        temperature: the new temperature (positive).

    Returns:
        How many attention modules were updated (0 for a network without DyBAC).

    Raises:
        ValueError: a non-positive temperature.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    count = 0
    for sub in module.modules():
        if isinstance(sub, KernelAttention):
            sub.temperature = float(temperature)
            count += 1
    return count


def dybac_temperatures(module: nn.Module) -> list[float]:
    """The temperatures of the kernel attentions inside ``module``, in module order."""
    return [sub.temperature for sub in module.modules() if isinstance(sub, KernelAttention)]
