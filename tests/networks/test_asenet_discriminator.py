"""Tests of common.networks.asenet_discriminator: inputs, architecture, output."""

from __future__ import annotations

import pytest
import torch

from common.networks.asenet_discriminator import ASENetDiscriminator
from common.networks.dybac import DyBAC


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
