"""A DyBAC discriminator of (prediction map, image) pairs, two class logits out (2D and 3D): ASE-Net's D1 and D2.

D1 tells predictions of labeled images (real) from those of unlabeled images (fake); D2 tells the teacher's
predictions of unlabeled images (real) from the student's predictions of their noisy versions (fake). Both share
this architecture (the official ``Discriminator_3D``): the probability map and the image each go through a stride-2
3x3 convolution to ``features`` channels and are summed; LeakyReLU(0.2) and channel dropout (0.5); three stride-2
:class:`common.networks.dybac.DyBAC` blocks to ``2, 4, 8 x features`` (128 / 256 / 512), each followed by
LeakyReLU(0.2) (and dropout after the first two); global average pooling; a linear 2-way classifier (class 1 =
real). Train it with :class:`common.losses.TwoClassAdversarialLoss` (cross-entropy on the two logits).

The DyBAC blocks here end at their batch norm, without their ReLU, so that the LeakyReLU is the activation METHODS
names: in the official ``Discriminator_3D`` the block's own ReLU comes first and the LeakyReLU after it only ever
sees non-negative values (it does nothing). Dropout and batch norm make the mode matter:
:class:`common.engines.MultiDiscriminatorTrainer` trains it in train mode and scores the segmenter's fakes for the
segmenter's adversarial term in eval mode.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv, Dropout
from torch import nn

from common.networks.dybac import DyBAC
from common.networks.utils import check_probabilities, check_spatial_dims

__all__ = ["ASENetDiscriminator"]


class ASENetDiscriminator(nn.Module):
    """D1 / D2 of ASE-Net (see the module docstring).

    Args:
        spatial_dims: 2 or 3.
        pred_channels: channels of the probability map (the segmenter's ``out_channels``).
        image_channels: channels of the image.
        features: width of the first layer (64); the DyBAC blocks have 2x, 4x and 8x as many channels.
        dropout_prob: channel dropout after the first three stages.
        negative_slope: of the LeakyReLU.
        temperature: DyBAC's initial temperature (default 30 in 2D, 34 in 3D).

    Raises:
        ValueError: unsupported ``spatial_dims`` or a probability outside [0, 1).

    Inputs ``pred`` ``(B, pred_channels, *spatial)`` and ``image`` ``(B, image_channels, *spatial)`` of the same
    spatial size; output ``(B, 2)`` logits (index 1 = real).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        pred_channels: int = 2,
        image_channels: int = 1,
        features: int = 64,
        dropout_prob: float = 0.5,
        negative_slope: float = 0.2,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_probabilities("dropout_prob", dropout_prob)
        conv = Conv[Conv.CONV, spatial_dims]
        self.pred_conv = conv(pred_channels, features, kernel_size=3, stride=2, padding=1)
        self.image_conv = conv(image_channels, features, kernel_size=3, stride=2, padding=1)
        self.blocks = nn.ModuleList(
            DyBAC(spatial_dims, features * 2**k, features * 2 ** (k + 1), stride=2, temperature=temperature, act=False)
            for k in range(3)
        )
        self.act = nn.LeakyReLU(negative_slope)
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout_prob)
        self.classifier = nn.Linear(features * 8, 2)

    def forward(self, pred: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if pred.shape[0] != image.shape[0] or pred.shape[2:] != image.shape[2:]:
            raise ValueError(
                f"prediction {list(pred.shape)} and image {list(image.shape)} differ in batch or spatial size"
            )
        x = self.dropout(self.act(self.pred_conv(pred) + self.image_conv(image)))
        for index, block in enumerate(self.blocks):
            x = self.act(block(x))
            if index < len(self.blocks) - 1:
                x = self.dropout(x)
        return self.classifier(torch.flatten(x, 2).mean(dim=2))
