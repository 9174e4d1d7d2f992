"""Tests of common.networks.dual_task_vnet: shapes, the two heads, the shared-head switch, dropout, TorchScript."""

from __future__ import annotations

import pytest
import torch

from common.networks import DualTaskVNet


@pytest.mark.parametrize("spatial_dims, size", [(3, (32, 32, 16)), (2, (48, 32))])
def test_training_mode_gives_both_tasks_and_eval_mode_the_segmentation(spatial_dims: int, size: tuple) -> None:
    network = DualTaskVNet(spatial_dims=spatial_dims, in_channels=1, out_channels=3, features=4)
    x = torch.randn(2, 1, *size)
    logits, sdf = network(x)
    assert logits.shape == sdf.shape == (2, 3, *size)
    assert sdf.abs().max() <= 1.0  # tanh
    network.eval()
    output = network(x)
    assert isinstance(output, torch.Tensor) and output.shape == (2, 3, *size)


def test_backbone_has_the_benchmark_vnet_size() -> None:
    """The LA benchmark's V-Net (16 base features) has 9.44 M parameters; our dual-task version adds one 1x1 head."""
    network = DualTaskVNet(features=16)
    count = sum(p.numel() for p in network.parameters())
    head = 16 * 2 + 2
    assert count == pytest.approx(9.449e6, rel=1e-3)
    shared = DualTaskVNet(features=16, shared_head=True)
    assert count - sum(p.numel() for p in shared.parameters()) == head


def test_shared_head_is_tanh_of_the_logits() -> None:
    network = DualTaskVNet(features=4, shared_head=True, dropout_prob=0.0)
    logits, sdf = network(torch.randn(2, 1, 16, 16, 16))
    torch.testing.assert_close(sdf, torch.tanh(logits))
    assert network.sdf_head is None


def test_separate_heads_differ() -> None:
    network = DualTaskVNet(features=4, dropout_prob=0.0)
    logits, sdf = network(torch.randn(2, 1, 16, 16, 16))
    assert not torch.allclose(sdf, torch.tanh(logits))


def test_dropout_makes_training_passes_stochastic() -> None:
    torch.manual_seed(0)
    network = DualTaskVNet(features=4, dropout_prob=0.5)
    x = torch.randn(2, 1, 16, 16, 16)
    assert not torch.allclose(network(x)[0], network(x)[0])
    no_dropout = DualTaskVNet(features=4, dropout_prob=0.0).eval()
    torch.testing.assert_close(no_dropout(x), no_dropout(x))


def test_gradients_reach_every_parameter() -> None:
    network = DualTaskVNet(features=4)
    logits, sdf = network(torch.randn(2, 1, 16, 16, 16))
    (logits.mean() + sdf.mean()).backward()
    assert all(p.grad is not None for p in network.parameters())  # DDP needs every parameter used


def test_torchscript_matches_eager_in_both_modes() -> None:
    network = DualTaskVNet(features=4).eval()
    scripted = torch.jit.script(network)
    x = torch.randn(2, 1, 16, 16, 16)
    torch.testing.assert_close(scripted(x), network(x))
    network.train()
    scripted.train()
    torch.manual_seed(1)
    eager = network(x)
    torch.manual_seed(1)
    compiled = scripted(x)
    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        DualTaskVNet(spatial_dims=1)
    with pytest.raises(ValueError, match="dropout_prob"):
        DualTaskVNet(dropout_prob=1.0)
