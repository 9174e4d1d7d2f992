"""ASE-Net's segmenters: a V-Net (3D) and a U-Net (2D) whose 3x3 convolutions are DyBAC blocks from stage 2 on.

Both follow the official code (``SUST-reynole/ASE-Net``, ``code/networks/vnet_dy_v2.py`` and ``Unet_dy_v2.py``)
in where DyBAC sits: only the first encoder stage (full resolution, on the image) keeps plain conv-BN-ReLU layers;
every stage after it, the last decoder stage included, uses :class:`common.networks.dybac.DyBAC`, except that in the
V-Net the second layer of each stage stays a plain 3x3 conv-BN-ReLU (``ConvBlock``: ``if i == 1`` a ``Conv3d``,
else ``DYBAC_3D``). ``use_dybac=False`` gives the plain backbone (the supervised and "w/o DyBAC" baselines); the
layer layout is identical otherwise.

- :class:`DyBACVNet` (``VNet_dy``): the V-Net of the semi-supervised LA benchmark (as
  :class:`common.networks.DualTaskVNet`): stages of ``features * (1, 2, 4, 8, 16)`` channels with (1, 2, 3, 3, 3)
  layers, stride-2 2x2x2 convolutions down, transposed convolutions up, additive skips, decoder stages of
  (3, 3, 2, 1) layers, channel dropout (0.5) on the bottleneck and before the head.
- :class:`DyBACUNet` (``Unet_dy_v2``): the classic U-Net (``64 .. 1024`` channels, two layers per stage,
  max-pooling with channel dropout 0.1 / 0.1 / 0.2 / 0.2 after the pools and 0.3 after the bottleneck), nearest
  upsampling without a convolution, ``[upsampled, skip]`` concatenated, channel dropout 0.2 / 0.2 / 0.1 / 0.1 after
  the decoder stages.

Where they differ from the official code: the official 2D ``Dynamic_conv2d`` of ``Unet_dy_v2.py`` also scales its
input by ``sigmoid(GAP(x))`` (a channel gate METHODS' DyBAC does not have; this module's DyBAC is the one of
METHODS item 1, the official ``discriminator.py`` block); and the official 2D training script builds
``UNet_2Plus_dy`` (a UNet++, whose module is missing from the repository), not this U-Net.

Both return the segmentation logits ``(B, out_channels, *spatial)`` in training and evaluation mode alike (softmax
for two or more channels, sigmoid for one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Dropout, Pool
from torch import nn

from common.networks.dybac import DyBAC

__all__ = ["DyBACUNet", "DyBACVNet", "conv_layer"]

_VNET_ENCODER_LAYERS = (1, 2, 3, 3, 3)
_VNET_DECODER_LAYERS = (3, 3, 2, 1)
_VNET_PLAIN_LAYERS = (1,)  # vnet_dy_v2.ConvBlock: the second 3x3 conv of every stage is a plain Conv3d


def conv_layer(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    dybac: bool,
    num_kernels: int = 4,
    temperature: float | None = None,
) -> nn.Module:
    """A 3x3 conv-BN-ReLU layer: a :class:`DyBAC` block when ``dybac``, else MONAI's ``Convolution``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        dybac: use DyBAC.
        num_kernels: DyBAC's ``K``.
        temperature: DyBAC's initial temperature (default by ``spatial_dims``).
    """
    if dybac:
        return DyBAC(spatial_dims, in_channels, out_channels, num_kernels=num_kernels, temperature=temperature)
    return Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, padding=1, norm="batch", act="relu")


def _stage(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    layers: int,
    dybac: bool,
    kernels: int,
    t: float | None,
    plain_layers: Sequence[int] = (),
) -> nn.Sequential:
    """``layers`` 3x3 layers; with ``dybac``, DyBAC blocks except at the indices in ``plain_layers``."""
    return nn.Sequential(
        *(
            conv_layer(
                spatial_dims,
                in_channels if i == 0 else out_channels,
                out_channels,
                dybac and i not in plain_layers,
                kernels,
                t,
            )
            for i in range(layers)
        )
    )


def _check(spatial_dims: int, dropout: Sequence[float]) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if any(not 0.0 <= p < 1.0 for p in dropout):
        raise ValueError(f"dropout probabilities must be in [0, 1), got {list(dropout)}")


class DyBACVNet(nn.Module):
    """V-Net with DyBAC blocks from stage 2 on, the second layer of each stage plain (ASE-Net's 3D segmenter).

    Args:
        spatial_dims: 3 (volumes) or 2.
        in_channels: image channels.
        out_channels: classes with background (softmax), or 1 (sigmoid, the official 3D code).
        features: channels of the first stage (16); stage ``k`` has ``features * 2**k``.
        dropout_prob: channel dropout on the bottleneck and before the head.
        use_dybac: DyBAC blocks from stage 2 on (the last decoder stage included), the second layer of each stage
            plain; False gives the plain V-Net.
        num_kernels: DyBAC's ``K`` (4).
        temperature: DyBAC's initial temperature (default 34 in 3D, 30 in 2D).

    Raises:
        ValueError: unsupported ``spatial_dims`` or a probability outside [0, 1).

    Input ``(B, in_channels, *spatial)`` with spatial sizes divisible by 16; output ``(B, out_channels, *spatial)``
    logits.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: int = 16,
        dropout_prob: float = 0.5,
        use_dybac: bool = True,
        num_kernels: int = 4,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        _check(spatial_dims, [dropout_prob])
        widths = [features * 2**k for k in range(5)]
        enc_in = [in_channels, *widths[1:]]
        self.encoder = nn.ModuleList(
            _stage(
                spatial_dims,
                enc_in[k],
                widths[k],
                _VNET_ENCODER_LAYERS[k],
                use_dybac and k > 0,
                num_kernels,
                temperature,
                _VNET_PLAIN_LAYERS,
            )
            for k in range(4)
        )
        self.bottleneck = _stage(
            spatial_dims,
            widths[4],
            widths[4],
            _VNET_ENCODER_LAYERS[4],
            use_dybac,
            num_kernels,
            temperature,
            _VNET_PLAIN_LAYERS,
        )
        self.down = nn.ModuleList(
            Convolution(
                spatial_dims, widths[k], widths[k + 1], strides=2, kernel_size=2, padding=0, norm="batch", act="relu"
            )
            for k in range(4)
        )
        self.up = nn.ModuleList(
            Convolution(
                spatial_dims,
                widths[k + 1],
                widths[k],
                strides=2,
                kernel_size=2,
                padding=0,
                output_padding=0,
                is_transposed=True,
                norm="batch",
                act="relu",
            )
            for k in reversed(range(4))
        )
        self.decoder = nn.ModuleList(
            _stage(spatial_dims, widths[k], widths[k], layers, use_dybac, num_kernels, temperature, _VNET_PLAIN_LAYERS)
            for k, layers in zip(reversed(range(4)), _VNET_DECODER_LAYERS)
        )
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout_prob)
        self.head = Conv[Conv.CONV, spatial_dims](widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for stage, down in zip(self.encoder, self.down):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.dropout(self.bottleneck(x))
        level = len(skips) - 1
        for up, decoder in zip(self.up, self.decoder):
            x = decoder(up(x) + skips[level])
            level -= 1
        return self.head(self.dropout(x))


class DyBACUNet(nn.Module):
    """U-Net with DyBAC blocks from stage 2 on (ASE-Net's 2D segmenter, the official ``Unet_dy_v2``).

    Args:
        spatial_dims: 2 (images) or 3.
        in_channels: image channels (3 for dermoscopy).
        out_channels: classes with background (softmax), or 1 (sigmoid).
        features: the five stage widths (64, 128, 256, 512, 1024).
        dropout: channel dropout after each of the four pools (0.1, 0.1, 0.2, 0.2).
        use_dybac: DyBAC blocks in every stage after the first (the last decoder stage included); False gives the
            plain U-Net.
        num_kernels: DyBAC's ``K`` (4).
        temperature: DyBAC's initial temperature (default 30 in 2D, 34 in 3D).
        bottleneck_dropout: channel dropout after the bottleneck (0.3).
        decoder_dropout: channel dropout after each decoder stage, deepest first (0.2, 0.2, 0.1, 0.1).

    Raises:
        ValueError: unsupported ``spatial_dims``, not five widths and four dropouts (encoder and decoder), or a
            probability outside [0, 1).

    Input ``(B, in_channels, *spatial)`` with spatial sizes divisible by 16; output ``(B, out_channels, *spatial)``
    logits.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        dropout: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
        use_dybac: bool = True,
        num_kernels: int = 4,
        temperature: float | None = None,
        bottleneck_dropout: float = 0.3,
        decoder_dropout: Sequence[float] = (0.2, 0.2, 0.1, 0.1),
    ) -> None:
        super().__init__()
        _check(spatial_dims, [*dropout, bottleneck_dropout, *decoder_dropout])
        if len(features) != 5 or len(dropout) != 4 or len(decoder_dropout) != 4:
            raise ValueError(
                f"expected 5 widths and 4 dropouts, got {list(features)}, {list(dropout)} and {list(decoder_dropout)}"
            )
        widths = [int(f) for f in features]
        enc_in = [in_channels, *widths[:-1]]
        drop = Dropout[Dropout.DROPOUT, spatial_dims]
        self.encoder = nn.ModuleList(
            _stage(spatial_dims, enc_in[k], widths[k], 2, use_dybac and k > 0, num_kernels, temperature)
            for k in range(4)
        )
        self.bottleneck = _stage(spatial_dims, widths[3], widths[4], 2, use_dybac, num_kernels, temperature)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.drops = nn.ModuleList(drop(p=p) for p in dropout)
        self.bottleneck_drop = drop(p=bottleneck_dropout)
        # Unet_dy_v2: nn.Upsample(scale_factor=2) (nearest, no convolution), so a decoder stage sees all the
        # channels of the stage below next to the skip: 1024 + 512, 512 + 256, ...
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoder = nn.ModuleList(
            _stage(spatial_dims, widths[k + 1] + widths[k], widths[k], 2, use_dybac, num_kernels, temperature)
            for k in reversed(range(4))
        )
        self.decoder_drops = nn.ModuleList(drop(p=p) for p in decoder_dropout)
        self.head = Conv[Conv.CONV, spatial_dims](widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for stage, drop in zip(self.encoder, self.drops):
            x = stage(x)
            skips.append(x)
            x = drop(self.pool(x))
        x = self.bottleneck_drop(self.bottleneck(x))
        level = len(skips) - 1
        for decoder, drop in zip(self.decoder, self.decoder_drops):
            x = drop(decoder(torch.cat([self.upsample(x), skips[level]], dim=1)))
            level -= 1
        return self.head(x)
