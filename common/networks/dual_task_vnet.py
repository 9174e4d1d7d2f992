"""Dual-task V-Net: one encoder-decoder, a segmentation head and a signed-distance head (DTC, UG-MCL).

The backbone is the V-Net of the semi-supervised LA benchmark (UA-MT, DTC, MC-Net, UG-MCL's LA experiments): five
stages of ``features * (1, 2, 4, 8, 16)`` channels with (1, 2, 3, 3, 3) 3x3x3 convolution-BN-ReLU layers, stride-2
2x2x2 convolutions down, stride-2 transposed convolutions up, additive skips, decoder stages of (3, 3, 2, 1) layers,
and channel dropout (p = 0.5) on the bottleneck and before the heads, which is what Monte-Carlo dropout samples. It is
built from MONAI's ``Convolution`` block. (MONAI's own ``VNet`` is the original V-Net: 5x5x5 residual stages and about
five times the parameters; it is not the network the LA figures were obtained with.)

Heads, both ``1 x 1`` convolutions on the last decoder features: ``z`` (segmentation logits, ``out_channels``) and
``tanh`` of a second projection (the signed distance map of each class, in [-1, 1]). ``shared_head=True`` reproduces
UG-MCL's official code, where one projection feeds both: ``sdf = tanh(z)``.

Outputs: in training mode ``(z, sdf)``; in eval mode ``z`` only, so that inference, sliding windows, MONAI Label and
TorchScript see a plain segmentation network (as MONAI's ``DynUNet`` returns deep-supervision heads only in training).
"""

from __future__ import annotations

from typing import Union

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Dropout
from torch import nn

__all__ = ["DualTaskVNet"]

_ENCODER_LAYERS = (1, 2, 3, 3, 3)
_DECODER_LAYERS = (3, 3, 2, 1)


def _stage(spatial_dims: int, in_channels: int, out_channels: int, layers: int, norm: str, act: str) -> nn.Sequential:
    return nn.Sequential(
        *(
            Convolution(
                spatial_dims,
                in_channels if index == 0 else out_channels,
                out_channels,
                kernel_size=3,
                padding=1,
                norm=norm,
                act=act,
            )
            for index in range(layers)
        )
    )


class DualTaskVNet(nn.Module):
    """V-Net with a segmentation head and a signed-distance head.

    Args:
        spatial_dims: 3 (volumes) or 2.
        in_channels: image channels.
        out_channels: classes (background included); both heads have this many channels.
        features: channels of the first stage (16 in the LA benchmark); stage ``k`` has ``features * 2**k``.
        dropout_prob: channel-dropout probability on the bottleneck and before the heads (0 disables it; Monte-Carlo
            uncertainty needs it).
        norm: MONAI normalisation name (``"batch"`` in the benchmark; ``"instance"`` also works).
        act: MONAI activation name.
        shared_head: one projection for both tasks (``sdf = tanh(z)``, the official UG-MCL code) instead of two.

    Raises:
        ValueError: unsupported ``spatial_dims`` or a probability outside [0, 1).

    Input ``(B, in_channels, *spatial)`` with every spatial size divisible by 16. Output: ``(z, sdf)`` in training
    mode, ``z`` in eval mode, each ``(B, out_channels, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: int = 16,
        dropout_prob: float = 0.5,
        norm: str = "batch",
        act: str = "relu",
        shared_head: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1), got {dropout_prob}")
        self.spatial_dims = spatial_dims
        self.shared_head = shared_head
        widths = [features * 2**k for k in range(5)]
        self.encoder = nn.ModuleList(
            _stage(spatial_dims, in_channels if k == 0 else widths[k], widths[k], _ENCODER_LAYERS[k], norm, act)
            for k in range(4)
        )
        self.bottleneck = _stage(spatial_dims, widths[4], widths[4], _ENCODER_LAYERS[4], norm, act)
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
            _stage(spatial_dims, widths[k], widths[k], layers, norm, act)
            for k, layers in zip(reversed(range(4)), _DECODER_LAYERS)
        )
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout_prob)
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.seg_head = conv(widths[0], out_channels, kernel_size=1)
        self.sdf_head = None if shared_head else conv(widths[0], out_channels, kernel_size=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder stage's features ``(B, features, *spatial)``, after dropout."""
        skips: list[torch.Tensor] = []
        for stage, down in zip(self.encoder, self.down):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.dropout(self.bottleneck(x))
        for index, (up, decoder) in enumerate(zip(self.up, self.decoder)):
            x = decoder(up(x) + skips[len(skips) - 1 - index])
        return self.dropout(x)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # noqa: UP007
        """Segmentation logits, and in training mode also the signed distance maps.

        Args:
            x: ``(B, in_channels, *spatial)``.

        Returns:
            ``(z, sdf)`` in training mode, ``z`` in eval mode; ``(B, out_channels, *spatial)`` each.
        """
        features = self.features(x)
        logits = self.seg_head(features)
        if self.training:
            if self.sdf_head is None:
                return logits, torch.tanh(logits)
            return logits, torch.tanh(self.sdf_head(features))
        return logits
