"""Tests of common.losses.three_way_consistency: hand-computed, for softmax and one-channel sigmoid."""

from __future__ import annotations

import math

import pytest
import torch

from common.losses.three_way_consistency import ThreeWayConsistencyLoss, segmentation_probabilities


def test_hand_computed_on_probabilities() -> None:
    p = torch.tensor([0.2, 0.8]).view(1, 2, 1, 1)
    p_xi = torch.tensor([0.4, 0.6]).view(1, 2, 1, 1)
    q = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    # per channel: (0.3^2 + 0.1^2 + 0.2^2) / 3 = 0.14 / 3 for both channels
    loss = ThreeWayConsistencyLoss(from_logits=False)(p, p_xi, q)
    assert loss.item() == pytest.approx(0.14 / 3, abs=1e-7)


def test_one_channel_output_is_sigmoid_and_non_zero() -> None:
    logits = torch.tensor([0.0]).view(1, 1, 1)
    noisy = torch.tensor([math.log(3.0)]).view(1, 1, 1)  # sigmoid = 0.75
    teacher = torch.tensor([-math.log(3.0)]).view(1, 1, 1)  # sigmoid = 0.25
    loss = ThreeWayConsistencyLoss()(logits, noisy, teacher)
    # (0.5 - 0.25)^2 + (0.75 - 0.25)^2 + (0.5 - 0.75)^2 = 0.375 -> / 3
    assert loss.item() == pytest.approx(0.125, abs=1e-6)
    assert torch.allclose(segmentation_probabilities(torch.zeros(2, 1, 3)), torch.full((2, 1, 3), 0.5))
    # the official code's softmax over one channel would make every map 1 and the loss exactly 0
    assert torch.softmax(noisy, dim=1).item() == 1.0


def test_gradient_reaches_the_students_not_the_teacher() -> None:
    student = torch.randn(2, 2, 4, requires_grad=True)
    noisy = torch.randn(2, 2, 4, requires_grad=True)
    teacher = torch.randn(2, 2, 4, requires_grad=True)
    ThreeWayConsistencyLoss()(student, noisy, teacher).backward()
    assert student.grad.abs().sum() > 0 and noisy.grad.abs().sum() > 0 and teacher.grad is None


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        ThreeWayConsistencyLoss()(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
