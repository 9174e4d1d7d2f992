"""Masked smooth L1: values by hand, only hidden voxels count, an empty mask gives 0."""

from __future__ import annotations

import pytest
import torch

from common.losses import MaskedSmoothL1Loss


def test_values_by_hand() -> None:
    prediction = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0, 0, 0] = 0.5  # |d| < 1: 0.5 d^2 = 0.125
    target[0, 1, 0, 0] = 3.0  # |d| >= 1: |d| - 0.5 = 2.5
    target[0, 0, 1, 1] = 9.0  # not hidden: ignored
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1.0
    mask[0, 0, 1, 0] = 1.0  # a hidden voxel with no error
    # 2 hidden voxels x 2 channels = 4 terms
    assert MaskedSmoothL1Loss()(prediction, target, mask).item() == pytest.approx((0.125 + 2.5) / 4)
    assert MaskedSmoothL1Loss(beta=2.0)(prediction, target, mask).item() == pytest.approx(
        (0.5 * 0.25 / 2 + (3.0 - 1.0)) / 4
    )


def test_only_hidden_voxels_matter_and_the_target_gets_no_gradient() -> None:
    prediction = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    target = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    mask = (torch.rand(2, 1, 4, 4, 4) > 0.5).float()
    loss = MaskedSmoothL1Loss()(prediction, target, mask)
    changed = target.detach() + 100 * (1 - mask)  # change the visible voxels only
    assert MaskedSmoothL1Loss()(prediction, changed, mask).item() == pytest.approx(loss.item())
    loss.backward()
    assert target.grad is None
    assert torch.all(prediction.grad[(mask == 0).expand_as(prediction)] == 0)


def test_empty_mask_gives_zero_with_a_gradient_path() -> None:
    prediction = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = MaskedSmoothL1Loss()(prediction, torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(prediction.grad == 0)


def test_shape_errors() -> None:
    loss = MaskedSmoothL1Loss()
    with pytest.raises(ValueError, match="differ in shape"):
        loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="does not match"):
        loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 2, 4))
    with pytest.raises(ValueError, match="positive"):
        MaskedSmoothL1Loss(beta=0)
