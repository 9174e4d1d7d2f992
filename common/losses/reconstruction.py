"""Masked reconstruction loss: smooth L1 between a prediction and its target over the hidden (masked) voxels only.

DMGSA reconstructs its multi-order normalized responses where the input was hidden by cubes:
``L = sum(M * smoothL1(y_hat, y)) / (C * sum(M))`` with ``M`` the ``(B, 1, *spatial)`` cube mask (1 = hidden)
broadcast over the ``C`` target channels, and ``smoothL1(d) = 0.5 d^2 / beta`` for ``|d| < beta``, ``|d| - 0.5 beta``
otherwise (PyTorch's ``smooth_l1_loss``). An empty mask gives 0 (nothing was hidden: nothing to reconstruct).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from .consistency import check_masked_pair

__all__ = ["MaskedSmoothL1Loss"]


class MaskedSmoothL1Loss(_Loss):
    """Smooth L1 averaged over the voxels a mask selects, and over channels.

    Args:
        beta: the smooth L1 transition point (PyTorch's ``beta``; 1 as in ``torch.nn.SmoothL1Loss``).

    Inputs: ``input`` and ``target`` ``(B, C, *spatial)``; ``mask`` ``(B, 1, *spatial)`` or ``(B, C, *spatial)`` with
    1 on the voxels to reconstruct (soft weights allowed). The target carries no gradient.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.beta = float(beta)

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The masked smooth L1 loss (a scalar, 0 for an empty mask).

        Raises:
            ValueError: ``input`` and ``target`` differ in shape, or ``mask`` does not match them.
        """
        check_masked_pair(input, target, mask)
        elementwise = F.smooth_l1_loss(input.float(), target.detach().float(), reduction="none", beta=self.beta)
        mask = mask.to(elementwise.dtype)
        channels = input.shape[1] if mask.shape[1] == 1 else 1
        return torch.sum(mask * elementwise) / torch.clamp(channels * torch.sum(mask), min=1.0)
