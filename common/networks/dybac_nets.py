"""ASE-Net's segmenters: a V-Net (3D) and a U-Net (2D) whose 3x3 convolutions are DyBAC blocks from stage 2 on.

Both follow the official code (``SUST-reynole/ASE-Net``, ``code/networks/vnet_dy_v2.py`` and ``Unet_dy_v2.py``)
in where DyBAC sits: only the first encoder stage (full resolution, on the image) keeps plain conv-BN-ReLU layers;
every stage after it, the last decoder stage included, uses :class:`common.networks.dybac.DyBAC`, except that in the
V-Net the second layer of each stage stays a plain 3x3 conv-BN-ReLU (``ConvBlock``: ``if i == 1`` a ``Conv3d``,
else ``DYBAC_3D``). ``use_dybac=False`` gives the plain backbone (the supervised and "w/o DyBAC" baselines); the
layer layout is identical otherwise. :func:`dybac_block` is that placement as a block factory.

- :class:`DyBACVNet` (``VNet_dy``): :class:`common.networks.vnet.VNetBackbone`, the V-Net of the semi-supervised LA
  benchmark (as :class:`common.networks.DualTaskVNet`), with DyBAC blocks and one segmentation head: stages of
  ``features * (1, 2, 4, 8, 16)`` channels with (1, 2, 3, 3, 3) layers, stride-2 2x2x2 convolutions down,
  transposed convolutions up, additive skips, decoder stages of (3, 3, 2, 1) layers, channel dropout (0.5) on the
  bottleneck and before the head.
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
from monai.networks.layers.factories import Conv, Dropout, Pool
from torch import nn

from common.networks.dybac import DyBAC
from common.networks.utils import check_probabilities, check_spatial_dims
from common.networks.vnet import ConvBlockFactory, VNetBackbone, conv_stage, plain_conv_block

__all__ = ["DyBACUNet", "DyBACVNet", "dybac_block"]

_VNET_PLAIN_LAYERS = (1,)  # vnet_dy_v2.ConvBlock: the second 3x3 conv of every stage is a plain Conv3d


def dybac_block(
    spatial_dims: int,
    use_dybac: bool = True,
    num_kernels: int = 4,
    temperature: float | None = None,
    plain_layers: Sequence[int] = (),
) -> ConvBlockFactory:
    """DyBAC in every stage after the first, except at the layer indices in ``plain_layers``; else conv-BN-ReLU.

    Args:
        spatial_dims: 2 or 3.
        use_dybac: False gives MONAI's ``Convolution`` (3x3, batch norm, ReLU) everywhere.
        num_kernels: DyBAC's ``K``.
        temperature: DyBAC's initial temperature (default by ``spatial_dims``).
        plain_layers: layer indices (inside a stage) that stay plain in every stage.

    Returns:
        A :data:`common.networks.vnet.ConvBlockFactory`; stage 0 (full resolution, on the image) is always plain.
    """
    plain = plain_conv_block(spatial_dims, "batch", "relu")

    def block(in_channels: int, out_channels: int, stage: int, layer: int) -> nn.Module:
        if use_dybac and stage > 0 and layer not in plain_layers:
            return DyBAC(spatial_dims, in_channels, out_channels, num_kernels=num_kernels, temperature=temperature)
        return plain(in_channels, out_channels, stage, layer)

    return block


class DyBACVNet(VNetBackbone):
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
        block = dybac_block(spatial_dims, use_dybac, num_kernels, temperature, _VNET_PLAIN_LAYERS)
        super().__init__(spatial_dims, in_channels, features, dropout_prob, "batch", "relu", block)
        self.head = Conv[Conv.CONV, spatial_dims](features, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``."""
        return self.head(self.features(x))


class DyBACUNet(nn.Module):
    """U-Net with DyBAC blocks from stage 2 on (ASE-Net's 2D segmenter, the official ``Unet_dy_v2``).

    Stages in data order for :func:`dybac_block`: 0-3 the encoder, 4 the bottleneck, 5-8 the decoder (deepest first).

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
        check_spatial_dims(spatial_dims)
        check_probabilities("dropout probabilities", *dropout, bottleneck_dropout, *decoder_dropout)
        if len(features) != 5 or len(dropout) != 4 or len(decoder_dropout) != 4:
            raise ValueError(
                f"expected 5 widths and 4 dropouts, got {list(features)}, {list(dropout)} and {list(decoder_dropout)}"
            )
        widths = [int(f) for f in features]
        enc_in = [in_channels, *widths[:-1]]
        drop = Dropout[Dropout.DROPOUT, spatial_dims]
        block = dybac_block(spatial_dims, use_dybac, num_kernels, temperature)
        self.encoder = nn.ModuleList(conv_stage(block, enc_in[k], widths[k], 2, k) for k in range(4))
        self.bottleneck = conv_stage(block, widths[3], widths[4], 2, 4)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.drops = nn.ModuleList(drop(p=p) for p in dropout)
        self.bottleneck_drop = drop(p=bottleneck_dropout)
        # Unet_dy_v2: nn.Upsample(scale_factor=2) (nearest, no convolution), so a decoder stage sees all the
        # channels of the stage below next to the skip: 1024 + 512, 512 + 256, ...
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoder = nn.ModuleList(
            conv_stage(block, widths[k + 1] + widths[k], widths[k], 2, 8 - k) for k in reversed(range(4))
        )
        self.decoder_drops = nn.ModuleList(drop(p=p) for p in decoder_dropout)
        self.head = Conv[Conv.CONV, spatial_dims](widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``."""
        skips: list[torch.Tensor] = []
        for stage, drop in zip(self.encoder, self.drops):
            x = stage(x)
            skips.append(x)
            x = drop(self.pool(x))
        x = self.bottleneck_drop(self.bottleneck(x))
        for index, (decoder, drop) in enumerate(zip(self.decoder, self.decoder_drops)):
            x = drop(decoder(torch.cat([self.upsample(x), skips[len(skips) - 1 - index]], dim=1)))
        return self.head(x)
