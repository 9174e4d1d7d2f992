"""Tests of common.networks.dybac_discriminator: inputs, architecture, output."""

from __future__ import annotations

import pytest
import torch

from common.networks.dybac import DyBAC
from common.networks.dybac_discriminator import ASENetDiscriminator


@pytest.mark.parametrize(("dims", "spatial"), [(2, (32, 24)), (3, (16, 16, 8))])
def test_two_logits_from_prediction_and_image(dims: int, spatial: tuple[int, ...]) -> None:
    d = ASENetDiscriminator(dims, pred_channels=2, image_channels=3, features=4)
    out = d(torch.rand(5, 2, *spatial), torch.rand(5, 3, *spatial))
    assert out.shape == (5, 2)


def test_architecture_of_the_paper() -> None:
    d = ASENetDiscriminator(3, pred_channels=2, image_channels=1)
    assert d.pred_conv.stride == (2, 2, 2) and d.image_conv.stride == (2, 2, 2)
    assert [block.conv.pointwise.out_channels for block in d.blocks] == [128, 256, 512]
    assert all(isinstance(block, DyBAC) and block.conv.stride == 2 for block in d.blocks)
    assert d.act.negative_slope == 0.2 and d.dropout.p == 0.5
    assert (d.classifier.in_features, d.classifier.out_features) == (512, 2)


def test_both_inputs_matter() -> None:
    d = ASENetDiscriminator(2, 2, 1, features=4, dropout_prob=0.0).eval()
    pred, image = torch.rand(2, 2, 16, 16), torch.rand(2, 1, 16, 16)
    base = d(pred, image)
    assert not torch.allclose(base, d(torch.rand_like(pred), image))
    assert not torch.allclose(base, d(pred, torch.rand_like(image)))


def test_mismatched_inputs_are_named() -> None:
    d = ASENetDiscriminator(2, 2, 1, features=4)
    with pytest.raises(ValueError, match="differ in batch or spatial size"):
        d(torch.rand(2, 2, 16, 16), torch.rand(2, 1, 8, 16))


def test_leaky_relu_acts_on_negative_pre_activations() -> None:
    """The DyBAC blocks end at their batch norm; the LeakyReLU after them passes negatives with slope 0.2.

    With the block's own ReLU first (the official code's order) the block output is never negative and the
    LeakyReLU is the identity: this test fails there.
    """
    torch.manual_seed(0)
    d = ASENetDiscriminator(2, pred_channels=2, image_channels=1, features=4).eval()
    seen: dict[str, torch.Tensor] = {}
    d.blocks[0].register_forward_hook(lambda module, args, out: seen.setdefault("block", out.clone()))
    d.blocks[1].register_forward_pre_hook(lambda module, args: seen.setdefault("next_input", args[0].clone()))
    d(torch.rand(2, 2, 32, 32), torch.rand(2, 1, 32, 32))
    pre = seen["block"]
    assert (pre < 0).float().mean() > 0.2  # batch norm output: about half of it negative
    torch.testing.assert_close(seen["next_input"], torch.where(pre < 0, 0.2 * pre, pre))  # eval: no dropout
    assert all(isinstance(block.act, torch.nn.Identity) for block in d.blocks)


def test_dybac_keeps_its_relu_by_default() -> None:
    block = DyBAC(2, 4, 8).eval()
    assert isinstance(block.act, torch.nn.ReLU)
    assert block(torch.randn(2, 4, 8, 8)).min() >= 0
    assert DyBAC(2, 4, 8, act=False).eval()(torch.randn(2, 4, 8, 8)).min() < 0
