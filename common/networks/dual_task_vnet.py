"""Dual-task V-Net: the LA benchmark's V-Net with a segmentation head and a signed-distance head (DTC, UG-MCL).

The encoder-decoder is :class:`common.networks.vnet.VNetBackbone` with MONAI ``Convolution`` blocks (3x3x3
conv-BN-ReLU) in every layer and channel dropout (p = 0.5) on the bottleneck and before the heads, which is what
Monte-Carlo dropout samples.

Heads, both ``1 x 1`` convolutions on the last decoder features: ``z`` (segmentation logits, ``out_channels``) and
``tanh`` of a second projection (the signed distance map of each class, in [-1, 1]). ``shared_head=True`` reproduces
UG-MCL's official code, where one projection feeds both: ``sdf = tanh(z)``.

Outputs: in training mode ``(z, sdf)``; in eval mode ``z`` only, so that inference, sliding windows, MONAI Label and
TorchScript see a plain segmentation network (as MONAI's ``DynUNet`` returns deep-supervision heads only in training).
"""

from __future__ import annotations

from typing import Union

import torch
from monai.networks.layers.factories import Conv

from common.networks.vnet import VNetBackbone

__all__ = ["DualTaskVNet"]


class DualTaskVNet(VNetBackbone):
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
        super().__init__(spatial_dims, in_channels, features, dropout_prob, norm, act)
        self.spatial_dims = spatial_dims
        self.shared_head = shared_head
        conv = Conv[Conv.CONV, spatial_dims]
        self.seg_head = conv(features, out_channels, kernel_size=1)
        self.sdf_head = None if shared_head else conv(features, out_channels, kernel_size=1)

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
