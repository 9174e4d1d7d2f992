"""Foreground/background separation: cosine similarity of the mean features, weighted by the truth's coverage."""

from __future__ import annotations

import pytest
import torch

from common.losses import ForegroundBackgroundSeparationLoss


def features_with(fg: list[float], bg: list[float], label: torch.Tensor) -> torch.Tensor:
    """Features equal to ``fg`` on the truth and ``bg`` elsewhere: ``(B, C, *spatial)``."""
    fg_t = torch.tensor(fg).view(1, -1, 1, 1, 1)
    bg_t = torch.tensor(bg).view(1, -1, 1, 1, 1)
    return label * fg_t + (1 - label) * bg_t


def test_values_by_hand() -> None:
    label = torch.zeros(1, 1, 4, 4, 4)
    label[:, :, :2] = 1
    loss = ForegroundBackgroundSeparationLoss()
    assert loss([features_with([1.0, 0.0], [0.0, 1.0], label)], label).item() == pytest.approx(0.0)  # orthogonal
    assert loss([features_with([1.0, 2.0], [2.0, 4.0], label)], label).item() == pytest.approx(1.0)  # parallel
    assert loss([features_with([1.0, 1.0], [-1.0, -1.0], label)], label).item() == pytest.approx(-1.0)
    # 45 degrees, one-hot truth accepted
    onehot = torch.cat([1 - label, label], dim=1)
    assert loss([features_with([1.0, 0.0], [1.0, 1.0], label)], onehot).item() == pytest.approx(2**-0.5)


def test_coarse_stages_use_the_area_weights() -> None:
    """At half resolution one feature voxel covers 8 voxels; a truth covering 2 of them weighs 1/4."""
    label = torch.zeros(1, 1, 4, 4, 4)
    label[0, 0, 0, 0, :2] = 1  # 2 voxels of the first 2x2x2 cell
    feature = torch.zeros(1, 2, 2, 2, 2)
    feature[0, 0, 0, 0, 0] = 1.0  # the cell holding the truth has feature (1, 0)
    feature[0, 1] = 1.0  # every cell has a 1 in channel 1
    weight = torch.zeros(2, 2, 2)
    weight[0, 0, 0] = 0.25
    fg = torch.stack([(feature[0, c] * weight).sum() / weight.sum() for c in range(2)])
    bg = torch.stack([(feature[0, c] * (1 - weight)).sum() / (1 - weight).sum() for c in range(2)])
    expected = torch.nn.functional.cosine_similarity(fg, bg, dim=0)
    assert ForegroundBackgroundSeparationLoss()([feature], label).item() == pytest.approx(expected.item())


def test_samples_without_foreground_are_skipped() -> None:
    label = torch.zeros(2, 1, 4, 4, 4)
    label[1, :, :2] = 1
    features = features_with([1.0, 0.0], [0.0, 1.0], label)
    features[0] = torch.randn(2, 4, 4, 4)  # sample 0 has no airway: its features do not matter
    assert ForegroundBackgroundSeparationLoss()([features], label).item() == pytest.approx(0.0)
    empty = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    loss = ForegroundBackgroundSeparationLoss()([empty], torch.zeros(1, 1, 4, 4, 4))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(empty.grad == 0)


def test_minimising_pushes_the_means_apart() -> None:
    torch.manual_seed(0)
    label = (torch.rand(1, 1, 6, 6, 6) > 0.7).float()
    features = torch.rand(1, 4, 6, 6, 6, requires_grad=True)
    optimizer = torch.optim.SGD([features], lr=5.0)
    loss_fn = ForegroundBackgroundSeparationLoss()
    before = loss_fn([features], label).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss_fn([features], label).backward()
        optimizer.step()
    assert loss_fn([features], label).item() < before - 0.2
