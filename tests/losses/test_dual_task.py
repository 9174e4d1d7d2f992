"""Tests of common.losses.dual_task: UG-MCL's supervised and cross-task losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from common.losses import CrossTaskConsistencyLoss, DualTaskSupervisedLoss, sdf_to_probability
from common.transforms import signed_distance_map


def tiny_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two voxels, two classes: softmax (0.5, 0.5) and (0.25, 0.75); foreground SDF +0.002 and -0.001; label 0, 1."""
    logits = torch.stack([torch.tensor([0.0, 0.0]), torch.tensor([0.0, math.log(3.0)])], dim=1)[None]
    sdf = torch.tensor([[[0.0, 0.0], [0.002, -0.001]]])
    label = torch.tensor([[[0, 1]]])
    return logits, sdf, label


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_supervised_loss_by_hand() -> None:
    logits, sdf, label = tiny_case()
    smooth = 1e-5
    ce = (-math.log(0.5) - math.log(0.75)) / 2
    dice = 1 - (2 * 0.75 + smooth) / ((0.5**2 + 0.75**2) + 1 + smooth)
    q = [sigmoid(-1500 * 0.002), sigmoid(-1500 * -0.001)]  # sigmoid(-3), sigmoid(1.5)
    sdf_dice = 1 - (2 * q[1] + smooth) / ((q[0] ** 2 + q[1] ** 2) + 1 + smooth)
    loss = DualTaskSupervisedLoss()
    terms = loss.components((logits, sdf), label)
    assert terms["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert terms["dice"].item() == pytest.approx(dice, abs=1e-6)
    assert terms["sdf_dice"].item() == pytest.approx(sdf_dice, abs=1e-6)
    assert loss((logits, sdf), label).item() == pytest.approx(0.5 * (ce + dice + sdf_dice), abs=1e-6)
    assert loss((logits, sdf), label).item() == pytest.approx(0.342047, abs=1e-5)  # the same, worked out on paper


def test_cross_task_loss_by_hand() -> None:
    logits, sdf, _ = tiny_case()
    # channel 0: sigmoid(0) = 0.5 against softmax (0.5, 0.25); channel 1: sigmoid(-3), sigmoid(1.5) against 0.5, 0.75
    squares = [0.0, 0.25**2, (sigmoid(-3) - 0.5) ** 2, (sigmoid(1.5) - 0.75) ** 2]
    expected = sum(squares) / 4
    assert CrossTaskConsistencyLoss()((logits, sdf)).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(0.067972, abs=1e-6)


def test_both_heads_get_gradients() -> None:
    logits, sdf, label = tiny_case()
    logits.requires_grad_(True)
    sdf.requires_grad_(True)
    (DualTaskSupervisedLoss()((logits, sdf), label) + CrossTaskConsistencyLoss()((logits, sdf))).backward()
    assert logits.grad.abs().sum() > 0 and sdf.grad[:, 1].abs().sum() > 0


def test_perfect_prediction_has_a_small_loss() -> None:
    label = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    label[:, :, 2:6, 2:6, 2:6] = 1
    onehot = torch.cat([label == 0, label == 1], dim=1).float()
    logits = (onehot - 0.5) * 40
    sdf = torch.stack([torch.as_tensor(signed_distance_map(item, num_classes=2)) for item in label])
    sdf = torch.where(sdf == 0, torch.where(onehot > 0, -1e-2, 1e-2), sdf)  # a tanh head never outputs exactly 0
    assert DualTaskSupervisedLoss()((logits, sdf), label).item() < 1e-3
    assert CrossTaskConsistencyLoss()((logits, sdf)).item() < 1e-3


def test_sdf_regression_term_uses_the_label_sdf() -> None:
    label = torch.zeros(1, 1, 6, 6, 6, dtype=torch.long)
    label[:, :, 1:5, 1:5, 1:5] = 1
    truth = torch.as_tensor(signed_distance_map(label[0], num_classes=2))[None]
    logits = torch.zeros(1, 2, 6, 6, 6)
    with_term = DualTaskSupervisedLoss(sdf_mse_weight=0.3)
    terms = with_term.components((logits, truth), label)
    assert terms["sdf_mse"].item() == pytest.approx(0.0, abs=1e-12)
    terms = with_term.components((logits, torch.zeros_like(truth)), label)
    assert terms["sdf_mse"].item() == pytest.approx(float((truth**2).mean()), rel=1e-6)
    expected = 0.5 * (terms["ce"] + terms["dice"] + terms["sdf_dice"]) + 0.3 * terms["sdf_mse"]
    assert with_term.combine(terms).item() == pytest.approx(expected.item(), rel=1e-6)
    assert "sdf_mse" not in DualTaskSupervisedLoss().components((logits, truth), label)


def test_soft_inverse() -> None:
    assert sdf_to_probability(torch.tensor([-1.0, 0.0, 1.0])).tolist() == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)


def test_bad_inputs() -> None:
    logits, sdf, label = tiny_case()
    with pytest.raises(ValueError, match="dual-task output"):
        DualTaskSupervisedLoss()(logits, label)
    with pytest.raises(ValueError, match="differ in shape"):
        CrossTaskConsistencyLoss()((logits, sdf[:, :1]))
    with pytest.raises(ValueError, match="class indices"):
        DualTaskSupervisedLoss()((logits, sdf), label.repeat(1, 2, 1))
    with pytest.raises(ValueError, match="sharpness"):
        DualTaskSupervisedLoss(sharpness=0)
    with pytest.raises(ValueError, match="sdf_mse_weight"):
        DualTaskSupervisedLoss(sdf_mse_weight=-1)
