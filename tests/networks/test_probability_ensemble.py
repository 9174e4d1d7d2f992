"""Tests of common.networks.probability_ensemble: the mean of the members' probabilities, state dict, TorchScript."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.networks import ProbabilityEnsemble


def conv(seed: int, out_channels: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(2, out_channels, kernel_size=3, padding=1)


def test_softmax_mean_of_the_members() -> None:
    a, b = conv(0), conv(1)
    ensemble = ProbabilityEnsemble([a, b])
    x = torch.randn(2, 2, 8, 8)
    expected = (torch.softmax(a(x), dim=1) + torch.softmax(b(x), dim=1)) / 2
    torch.testing.assert_close(ensemble(x), expected)
    torch.testing.assert_close(ensemble(x).sum(dim=1), torch.ones(2, 8, 8))
    members = ensemble.member_probabilities(x)
    torch.testing.assert_close(members[0], torch.softmax(a(x), dim=1))


def test_sigmoid_mean_of_the_members() -> None:
    a, b = conv(0, 1), conv(1, 1)
    ensemble = ProbabilityEnsemble([a, b], sigmoid=True)
    x = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(ensemble(x), (torch.sigmoid(a(x)) + torch.sigmoid(b(x))) / 2)


def test_state_dict_holds_every_member() -> None:
    ensemble = ProbabilityEnsemble([conv(0), conv(1)])
    assert set(ensemble.state_dict()) == {f"networks.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    other = ProbabilityEnsemble([conv(2), conv(3)])
    other.load_state_dict(ensemble.state_dict())
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(other(x), ensemble(x))


def test_one_member_is_that_network() -> None:
    a = conv(0)
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(ProbabilityEnsemble([a])(x), torch.softmax(a(x), dim=1))


def test_torchscript_matches_eager() -> None:
    ensemble = ProbabilityEnsemble([conv(0), conv(1)]).eval()
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(torch.jit.script(ensemble)(x), ensemble(x))


def test_needs_a_member() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ProbabilityEnsemble([])
