"""The V-Net of the semi-supervised LA benchmark as a backbone whose 3x3 convolution block is an argument.

UA-MT, DTC, MC-Net, UG-MCL's LA experiments and ASE-Net's official ``vnet_dy_v2.py`` share one encoder-decoder: five
stages of ``features * (1, 2, 4, 8, 16)`` channels with (1, 2, 3, 3, 3) 3x3x3 conv-BN-ReLU layers, stride-2 2x2x2
convolutions down, stride-2 transposed convolutions up, additive skips, decoder stages of (3, 3, 2, 1) layers, and
channel dropout on the bottleneck and on the last decoder features. (MONAI's own ``VNet`` is the original V-Net:
5x5x5 residual stages and about five times the parameters; it is not the network the LA figures were obtained with.)

:class:`VNetBackbone` builds that encoder-decoder; the networks of the bundles are heads (and blocks) on it:
:class:`common.networks.DualTaskVNet` adds a segmentation and a signed-distance head to MONAI ``Convolution``
blocks, :class:`common.networks.DyBACVNet` a segmentation head to DyBAC blocks. A block is made by a
:data:`ConvBlockFactory` from its place in the network, so that a method can put its own block in some layers only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Dropout
from torch import nn

from common.networks.utils import check_probabilities, check_spatial_dims

__all__ = ["DECODER_LAYERS", "ENCODER_LAYERS", "ConvBlockFactory", "VNetBackbone", "conv_stage", "plain_conv_block"]

ENCODER_LAYERS = (1, 2, 3, 3, 3)
"""3x3 layers of the four encoder stages and the bottleneck, full resolution first."""
DECODER_LAYERS = (3, 3, 2, 1)
"""3x3 layers of the four decoder stages, deepest first."""

ConvBlockFactory = Callable[[int, int, int, int], nn.Module]
"""``block(in_channels, out_channels, stage, layer)`` -> a 3x3 block ``(B, in, *S) -> (B, out, *S)`` (stride 1).

``stage`` numbers the stages in data order (in :class:`VNetBackbone`: 0-3 the encoder, full resolution first, 4 the
bottleneck, 5-8 the decoder, deepest first) and ``layer`` the layer inside the stage, from 0."""


def plain_conv_block(spatial_dims: int, norm: str = "batch", act: str = "relu") -> ConvBlockFactory:
    """MONAI's ``Convolution`` (3x3, padding 1, then ``norm`` and ``act``) in every layer.

    Args:
        spatial_dims: 2 or 3.
        norm: MONAI normalisation name.
        act: MONAI activation name.
    """

    def block(in_channels: int, out_channels: int, stage: int, layer: int) -> nn.Module:
        return Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, padding=1, norm=norm, act=act)

    return block


def conv_stage(block: ConvBlockFactory, in_channels: int, out_channels: int, layers: int, stage: int) -> nn.Sequential:
    """``layers`` blocks of stage ``stage`` in a row: ``(B, in_channels, *S) -> (B, out_channels, *S)``.

    The first block maps ``in_channels`` to ``out_channels``, the others keep ``out_channels``.
    """
    return nn.Sequential(
        *(block(in_channels if layer == 0 else out_channels, out_channels, stage, layer) for layer in range(layers))
    )


class VNetBackbone(nn.Module):
    """The LA benchmark's V-Net encoder-decoder, up to the last decoder features (see the module docstring).

    Submodules, in construction order (which fixes the seeded initialisation and the state-dict keys):
    ``encoder`` (4 stages), ``bottleneck``, ``down`` (4 stride-2 convolutions), ``up`` (4 stride-2 transposed
    convolutions, deepest first), ``decoder`` (4 stages, deepest first), ``dropout``. A subclass adds its heads after
    calling this constructor and applies them to :meth:`features`.

    Args:
        spatial_dims: 3 (volumes) or 2.
        in_channels: image channels.
        features: channels of the first stage (16 in the benchmark); stage ``k`` has ``features * 2**k``.
        dropout_prob: channel-dropout probability on the bottleneck and on the last decoder features (0 disables it).
        norm: MONAI normalisation name of the down and up convolutions (and of the default blocks).
        act: MONAI activation name of the down and up convolutions (and of the default blocks).
        block: makes each 3x3 layer from its stage and layer index (:data:`ConvBlockFactory`); default
            :func:`plain_conv_block` with ``norm`` and ``act``.

    Raises:
        ValueError: unsupported ``spatial_dims`` or a probability outside [0, 1).

    Input ``(B, in_channels, *spatial)`` with every spatial size divisible by 16; :meth:`features` and ``forward``
    give ``(B, features, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        features: int = 16,
        dropout_prob: float = 0.5,
        norm: str = "batch",
        act: str = "relu",
        block: ConvBlockFactory | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_probabilities("dropout_prob", dropout_prob)
        block = plain_conv_block(spatial_dims, norm, act) if block is None else block
        widths = [features * 2**k for k in range(5)]
        self.encoder = nn.ModuleList(
            conv_stage(block, in_channels if k == 0 else widths[k], widths[k], ENCODER_LAYERS[k], k) for k in range(4)
        )
        self.bottleneck = conv_stage(block, widths[4], widths[4], ENCODER_LAYERS[4], 4)
        self.down = nn.ModuleList(
            Convolution(spatial_dims, widths[k], widths[k + 1], strides=2, kernel_size=2, padding=0, norm=norm, act=act)
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
                norm=norm,
                act=act,
            )
            for k in reversed(range(4))
        )
        self.decoder = nn.ModuleList(
            conv_stage(block, widths[k], widths[k], layers, 5 + index)
            for index, (k, layers) in enumerate(zip(reversed(range(4)), DECODER_LAYERS))
        )
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout_prob)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder stage's features after dropout.

        Args:
            x: ``(B, in_channels, *spatial)``.

        Returns:
            ``(B, features, *spatial)``.
        """
        skips: list[torch.Tensor] = []
        for stage, down in zip(self.encoder, self.down):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.dropout(self.bottleneck(x))
        for index, (up, decoder) in enumerate(zip(self.up, self.decoder)):
            x = decoder(up(x) + skips[len(skips) - 1 - index])
        return self.dropout(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`features`: ``(B, in_channels, *spatial)`` -> ``(B, features, *spatial)``."""
        return self.features(x)
