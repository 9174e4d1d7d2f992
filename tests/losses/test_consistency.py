"""Tests of common.losses.consistency: the uncertainty-masked MSE against a hand-computed case."""

from __future__ import annotations

import pytest
import torch

from common.losses import MaskedMSELoss
from common.losses.consistency import check_masked_pair


def test_masked_mse_by_hand() -> None:
    student = torch.tensor([[[0.5, 0.25], [0.5, 0.75]]])  # (B=1, C=2, N=2)
    teacher = torch.tensor([[[0.7, 0.25], [0.3, 0.95]]])
    mask = torch.tensor([[[1.0, 0.0]]])
    # only voxel 0 counts: (0.2^2 + 0.2^2) / (2 * 1 + 1e-16)
    assert MaskedMSELoss()(student, teacher, mask).item() == pytest.approx(0.04, abs=1e-7)
    both = torch.ones(1, 1, 2)
    expected = (0.2**2 + 0.0 + 0.2**2 + 0.2**2) / 4
    assert MaskedMSELoss()(student, teacher, both).item() == pytest.approx(expected, abs=1e-7)


def test_per_channel_mask_and_empty_mask() -> None:
    student, teacher = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    mask = torch.zeros(1, 2, 3)
    mask[0, 1, 0] = 1
    assert MaskedMSELoss()(student, teacher, mask).item() == pytest.approx(1.0)
    assert MaskedMSELoss()(student, teacher, torch.zeros(1, 1, 3)).item() == 0.0


def test_gradient_reaches_the_student_only() -> None:
    student = torch.rand(2, 2, 4, 4, requires_grad=True)
    teacher = torch.rand(2, 2, 4, 4, requires_grad=True)
    MaskedMSELoss()(student, teacher, torch.ones(2, 1, 4, 4)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        MaskedMSELoss()(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 1, 3))
    with pytest.raises(ValueError, match="does not match"):
        MaskedMSELoss()(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 1, 4))
    with pytest.raises(ValueError, match="channels"):
        MaskedMSELoss()(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), torch.ones(1, 2, 3))
    with pytest.raises(ValueError, match="eps"):
        MaskedMSELoss(eps=0)


def test_masked_pair_check_names_the_loss_arguments() -> None:
    maps, mask = torch.zeros(2, 3, 4, 5), torch.ones(2, 1, 4, 5)
    check_masked_pair(maps, maps, mask)  # a one-channel mask broadcasts
    check_masked_pair(maps, maps, torch.ones(2, 3, 4, 5))  # or one weight per channel
    message = r"student \(2, 3, 4, 5\) and teacher \(2, 3, 4, 4\) differ in shape"
    with pytest.raises(ValueError, match=message):
        check_masked_pair(maps, maps[..., :4], mask, names=("student", "teacher"))
    with pytest.raises(ValueError, match=r"mask \(1, 1, 4, 5\) does not match the predictions \(2, 3, 4, 5\)"):
        check_masked_pair(maps, maps, mask[:1], compared="predictions")  # another batch size
    with pytest.raises(ValueError, match="does not match the input"):
        check_masked_pair(maps, maps, torch.ones(2, 1, 4, 5, 1))  # another rank
    with pytest.raises(ValueError, match="mask must have 1 or 3 channels, got 2"):
        check_masked_pair(maps, maps, torch.ones(2, 2, 4, 5))
