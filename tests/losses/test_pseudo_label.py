"""Tests of common.losses.pseudo_label: pseudo-labels and confidence masks of softmax and sigmoid heads, the masked
cross-entropy's two normalisers, ignored (padded) pixels, and that masked pixels contribute no gradient (tiny cases,
exact values)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from common.losses import MaskedCrossEntropyLoss, pseudo_labels


def two_class_logits() -> torch.Tensor:
    """(1, 2, 1, 4) logits whose softmax foreground probabilities are 0.95, 0.6, 0.3, 0.02."""
    p = torch.tensor([0.95, 0.6, 0.3, 0.02])
    return torch.stack([torch.zeros(4), torch.log(p / (1 - p))]).view(1, 2, 1, 4)


def test_softmax_pseudo_labels_and_confidence() -> None:
    result = pseudo_labels(two_class_logits(), threshold=0.9)
    assert result.labels.shape == (1, 1, 1, 4) and result.labels.dtype == torch.long
    assert result.labels.flatten().tolist() == [1, 1, 0, 0]
    torch.testing.assert_close(result.confidence.flatten(), torch.tensor([0.95, 0.6, 0.7, 0.98]))
    assert result.mask.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    assert pseudo_labels(two_class_logits(), threshold=0.0).mask.flatten().tolist() == [1.0] * 4  # tau = 0: all


def test_sigmoid_pseudo_labels_and_confidence() -> None:
    p = torch.tensor([0.95, 0.6, 0.3, 0.02]).view(1, 1, 1, 4)
    result = pseudo_labels(torch.logit(p), sigmoid=True, threshold=0.9)
    assert result.labels.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    torch.testing.assert_close(result.confidence, torch.maximum(p, 1 - p))
    assert result.mask.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]


def test_pseudo_labels_carry_no_gradient() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    result = pseudo_labels(logits, threshold=0.5)
    assert not any(t.requires_grad for t in result)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pseudo_labels(logits, threshold=1.5)
    with pytest.raises(ValueError, match="two channels"):
        pseudo_labels(torch.randn(1, 1, 4, 4))


def test_without_mask_it_is_pytorchs_cross_entropy() -> None:
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 1, 5, 5))
    loss = MaskedCrossEntropyLoss()(logits, target)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target[:, 0]))
    torch.testing.assert_close(MaskedCrossEntropyLoss()(logits, target.float()), loss)  # a label map as float
    torch.testing.assert_close(MaskedCrossEntropyLoss()(logits, target, torch.ones(2, 1, 5, 5)), loss)  # tau = 0


def test_default_normaliser_is_every_pixel_as_in_fixmatch() -> None:
    """FixMatch / TorchSemiSeg: ``(mask * loss).mean()``: the confident fraction scales the term."""
    target = torch.ones(1, 1, 1, 4, dtype=torch.long)  # per-pixel loss: -log(0.95), -log(0.6), -log(0.3), -log(0.02)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 4)
    expected = -(math.log(0.95) + math.log(0.3)) / 4  # two kept pixels over all four
    loss = MaskedCrossEntropyLoss()(two_class_logits(), target, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(0.3138, abs=1e-4)  # by hand: (0.0513 + 1.2040) / 4


def test_confident_normaliser_is_the_number_of_kept_pixels() -> None:
    """Our option: the mean over the kept pixels, twice the default here (half the pixels are kept)."""
    target = torch.ones(1, 1, 1, 4, dtype=torch.long)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 4)
    loss = MaskedCrossEntropyLoss(reduction="confident")(two_class_logits(), target, mask)
    assert loss.item() == pytest.approx(-(math.log(0.95) + math.log(0.3)) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        MaskedCrossEntropyLoss(reduction="sum")


@pytest.mark.parametrize("reduction, denominator", [("mean", 3), ("confident", 2)])
def test_ignored_pixels_leave_numerator_and_denominator(reduction: str, denominator: int) -> None:
    """Pixel 2 is padding (255): out of both; pixel 1 is valid but not confident: only in the default's denominator."""
    target = torch.tensor([1, 1, 255, 1]).view(1, 1, 1, 4)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 1, 1, 4)
    loss = MaskedCrossEntropyLoss(reduction=reduction, ignore_index=255)(two_class_logits(), target, mask)
    assert loss.item() == pytest.approx(-(math.log(0.95) + math.log(0.02)) / denominator, rel=1e-5)


def test_without_mask_ignore_index_is_pytorchs() -> None:
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 5, 5))
    target[0, 0, :2] = 255
    loss = MaskedCrossEntropyLoss(ignore_index=255)(logits, target.float())
    torch.testing.assert_close(loss, F.cross_entropy(logits, target[:, 0], ignore_index=255))
    loss.backward()
    assert torch.count_nonzero(logits.grad[0, :, :2]) == 0  # padded pixels: no gradient
    assert torch.count_nonzero(logits.grad[0, :, 2:]) == logits.grad[0, :, 2:].numel()


def test_invalid_pixels_get_an_ignored_pseudo_label() -> None:
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0]).view(1, 1, 1, 4)
    result = pseudo_labels(two_class_logits(), threshold=0.0, valid=valid)
    assert result.labels.flatten().tolist() == [1, 1, 255, 0]
    assert result.mask.flatten().tolist() == [1.0, 1.0, 0.0, 1.0]  # tau = 0 keeps every valid pixel only
    student = torch.randn(1, 2, 1, 4, requires_grad=True)
    MaskedCrossEntropyLoss(ignore_index=255)(student, result.labels, result.mask).backward()
    assert student.grad[0, :, 0, 2].abs().sum() == 0 and student.grad[0, :, 0, 3].abs().sum() > 0
    sigmoid = pseudo_labels(torch.zeros(1, 2, 1, 4), sigmoid=True, valid=valid)
    assert sigmoid.labels[:, :, 0, 2].tolist() == [[255.0, 255.0]] and sigmoid.mask[:, :, 0, 2].sum() == 0
    with pytest.raises(ValueError, match="valid mask"):
        pseudo_labels(two_class_logits(), valid=torch.ones(1, 1, 2, 2))


def test_masked_pixels_get_exactly_zero_gradient() -> None:
    logits = two_class_logits().clone().requires_grad_(True)
    result = pseudo_labels(logits, threshold=0.9)  # keeps pixels 0 and 3
    student = torch.randn(1, 2, 1, 4, requires_grad=True)
    MaskedCrossEntropyLoss()(student, result.labels, result.mask).backward()
    grad = student.grad.abs().sum(dim=1).flatten()
    assert grad[1] == 0 and grad[2] == 0  # masked: exactly no gradient
    assert grad[0] > 0 and grad[3] > 0  # kept: a gradient
    assert logits.grad is None  # nothing flows into the network that made the pseudo-labels


def test_all_masked_gives_zero_loss_and_zero_gradient() -> None:
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = MaskedCrossEntropyLoss()(student, torch.zeros(2, 1, 4, 4, dtype=torch.long), torch.zeros(2, 1, 4, 4))
    loss.backward()
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    assert torch.count_nonzero(student.grad) == 0


def test_sigmoid_binary_cross_entropy_per_channel() -> None:
    logits = torch.randn(2, 2, 3, 3, requires_grad=True)
    target = (torch.rand(2, 2, 3, 3) > 0.5).float()
    mask = torch.zeros(2, 2, 3, 3)
    mask[:, 0] = 1.0  # keep channel 0 only
    loss = MaskedCrossEntropyLoss(sigmoid=True)(logits, target, mask)
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], target[:, 0])
    torch.testing.assert_close(loss, expected / 2)  # default: over every element, half of them kept
    confident = MaskedCrossEntropyLoss(sigmoid=True, reduction="confident")(logits, target, mask)
    torch.testing.assert_close(confident, expected)
    loss.backward()
    assert torch.count_nonzero(logits.grad[:, 1]) == 0 and torch.all(logits.grad[:, 0] != 0)


def test_shape_errors() -> None:
    loss = MaskedCrossEntropyLoss()
    with pytest.raises(ValueError, match="class indices"):
        loss(torch.randn(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="mask"):
        loss(torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="sigmoid targets"):
        MaskedCrossEntropyLoss(sigmoid=True)(torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
