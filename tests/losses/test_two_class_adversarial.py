"""Tests of common.losses.two_class_adversarial: cross-entropy against class 1 (real) or 0 (fake)."""

from __future__ import annotations

import math

import pytest
import torch

from common.losses.two_class_adversarial import TwoClassAdversarialLoss


def test_hand_computed_cross_entropy() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax (0.25, 0.75) and (0.5, 0.5)
    loss = TwoClassAdversarialLoss()
    assert loss(logits, target_is_real=True).item() == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, abs=1e-6)
    assert loss(logits, target_is_real=False, for_discriminator=True).item() == pytest.approx(
        -(math.log(0.25) + math.log(0.5)) / 2, abs=1e-6
    )


def test_wrong_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2\) logits"):
        TwoClassAdversarialLoss()(torch.zeros(3, 1), True)
