"""Tests of common.inferers.uncertainty: entropy of known distributions, MC averaging, the noise, MC dropout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from common.inferers import MCUncertaintyEstimator, add_input_noise, mc_dropout, predictive_entropy


def entropy_of(p: float) -> float:
    return -(p * math.log(p + 1e-6) + (1 - p) * math.log(1 - p + 1e-6))


class FixedLogits(nn.Module):
    """Logits log(p), log(1 - p) with p = 0.9 on the left half of the image and 0.5 on the right: a known entropy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.full_like(x, 0.9)
        p[..., x.shape[-1] // 2 :] = 0.5
        return torch.cat([torch.log(p), torch.log(1 - p)], dim=1)


class AlternatingLogits(nn.Module):
    """Certain of class 0 on odd calls and of class 1 on even calls: the mean of two passes is (0.5, 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        sign = 1.0 if self.calls % 2 else -1.0
        logits = torch.cat([torch.full_like(x, 20.0 * sign), torch.zeros_like(x)], dim=1)
        return logits, torch.tanh(logits)  # a dual-task output: the first element is used


def test_entropy_of_known_distributions() -> None:
    probabilities = torch.tensor([0.5, 0.9, 1.0]).view(1, 1, 3)
    probabilities = torch.cat([probabilities, 1 - probabilities], dim=1)
    entropy = predictive_entropy(probabilities)
    assert entropy.shape == (1, 1, 3)
    assert entropy.flatten().tolist() == pytest.approx([entropy_of(0.5), entropy_of(0.9), 0.0], abs=1e-5)
    assert entropy_of(0.5) == pytest.approx(math.log(2), abs=1e-5)


def test_uncertainty_mask_for_a_case_with_known_entropy() -> None:
    """p = 0.9 (U = 0.325) is certain and p = 0.5 (U = ln 2) is not, at the starting threshold 0.75 ln 2 = 0.520."""
    estimator = MCUncertaintyEstimator(num_passes=8, noise_std=0.0)
    result = estimator(FixedLogits(), torch.zeros(2, 1, 4, 6))
    assert result.probabilities.shape == (2, 2, 4, 6) and result.entropy.shape == (2, 1, 4, 6)
    torch.testing.assert_close(result.entropy[..., :3], torch.full((2, 1, 4, 3), entropy_of(0.9)))
    torch.testing.assert_close(result.entropy[..., 3:], torch.full((2, 1, 4, 3), entropy_of(0.5)))
    mask = result.entropy < 0.75 * math.log(2)
    assert mask[..., :3].all() and not mask[..., 3:].any()


@pytest.mark.parametrize("passes_per_batch", [1, 2])
def test_passes_are_averaged_before_the_entropy(passes_per_batch: int) -> None:
    network = AlternatingLogits()
    estimator = MCUncertaintyEstimator(num_passes=2, passes_per_batch=passes_per_batch, noise_std=0.0)
    if passes_per_batch == 2:  # one call on the batch repeated twice: make the two copies disagree instead

        class Halves(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                half = x.shape[0] // 2
                sign = torch.ones(x.shape[0], 1, *x.shape[2:])
                sign[half:] = -1.0
                return torch.cat([20.0 * sign, torch.zeros_like(sign)], dim=1)

        network = Halves()
    result = estimator(network, torch.zeros(3, 1, 5))
    torch.testing.assert_close(result.probabilities, torch.full((3, 2, 5), 0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.entropy, torch.full((3, 1, 5), math.log(2)), atol=1e-5, rtol=0)


def test_noise_is_clipped_gaussian() -> None:
    torch.manual_seed(0)
    images = torch.zeros(200_000)
    noise = add_input_noise(images, std=0.1, clip=0.2)
    assert noise.abs().max() <= 0.2 + 1e-7
    assert float(noise.std()) == pytest.approx(0.1 * math.sqrt(1 - 0.1), rel=0.05)  # clipping at 2 sigma trims ~5%
    assert (noise.abs() == 0.2).float().mean() == pytest.approx(0.0455, abs=0.005)  # P(|z| > 2)


def test_mc_dropout_activates_dropout_only_and_restores_modes() -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv3d(1, 8, 1), nn.BatchNorm3d(8), nn.Dropout3d(0.5), nn.Conv3d(8, 2, 1)).eval()
    with mc_dropout(network):
        assert network[2].training and not network[1].training and not network.training
    assert not network[2].training
    images = torch.randn(1, 1, 4, 4, 4)
    single = torch.softmax(network(images), dim=1)
    plain = MCUncertaintyEstimator(num_passes=4, noise_std=0.0, force_dropout=False)(network, images)
    torch.testing.assert_close(plain.probabilities, single)  # eval mode, no noise: every pass is the same
    sampled = MCUncertaintyEstimator(num_passes=4, noise_std=0.0)(network, images)
    assert (sampled.probabilities - single).abs().max() > 1e-3  # dropout made the passes differ
    assert not network[2].training  # and the mode is restored
