"""Adversarial loss for discriminators with a two-way classifier (ASE-Net's D1 and D2): cross-entropy on 2 logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TwoClassAdversarialLoss"]


class TwoClassAdversarialLoss(nn.Module):
    """``CE(logits, 1)`` for "real" and ``CE(logits, 0)`` for "fake", averaged over the batch.

    It has the call signature of MONAI's ``PatchAdversarialLoss`` (``(logits, target_is_real, for_discriminator)``),
    so it plugs into :class:`common.engines.DiscriminatorSpec`. ASE-Net's discriminators end in a 2-way classifier
    trained with cross-entropy (class 1 = real); the segmenter's non-saturating term asks for class 1 on its fakes.

    Args:
        label_smoothing: passed to ``torch.nn.functional.cross_entropy`` (0 in ASE-Net).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        """Cross-entropy of ``(B, 2)`` logits against class ``int(target_is_real)``.

        Args:
            logits: ``(B, 2)`` discriminator logits.
            target_is_real: the target class is 1 (real) when True, 0 (fake) otherwise.
            for_discriminator: unused (the same criterion serves both players); kept for the shared signature.

        Returns:
            The scalar mean cross-entropy.

        Raises:
            ValueError: logits not of shape ``(B, 2)``.
        """
        del for_discriminator
        if logits.ndim != 2 or logits.shape[1] != 2:
            raise ValueError(f"expected (B, 2) logits from a two-way discriminator, got {tuple(logits.shape)}")
        target = torch.full((logits.shape[0],), int(bool(target_is_real)), dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)
