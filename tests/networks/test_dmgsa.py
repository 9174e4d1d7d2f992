"""DMGSA's network: shapes, the GMGS block's arithmetic and effect on the output, TorchScript, the training model."""

from __future__ import annotations

import pytest
import torch

from common.networks import DMGSANet, DMGSATrainingModel, GMGSBlock, dmgsa_architecture
from common.networks.dmgsa import generalized_mean

CHANNELS = (4, 8, 16)


def small_net(**kwargs) -> DMGSANet:
    torch.manual_seed(0)
    return DMGSANet(channels=CHANNELS, **kwargs).eval()


def test_generalized_mean_by_hand() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # (B=1, C=1, N=4)
    assert generalized_mean(x, torch.tensor(1.0)).item() == pytest.approx(2.5)  # p = 1: the mean
    assert generalized_mean(x, torch.tensor(3.0)).item() == pytest.approx(((1 + 8 + 27 + 64) / 4) ** (1 / 3))
    assert generalized_mean(x, torch.tensor(50.0)).item() == pytest.approx(4.0, rel=0.03)  # towards the max
    assert generalized_mean(-x, torch.tensor(3.0), eps=0.5).item() == pytest.approx(0.5)  # floored at eps


def test_gmgs_block_is_the_formula() -> None:
    torch.manual_seed(0)
    block = GMGSBlock(spatial_dims=3, channels=3)
    x = torch.randn(2, 3, 4, 5, 6)
    out, features = block(x)
    assert block.p.item() == 3.0 and block.p.requires_grad
    # by hand: point-wise features, coordinates in [-1, 1], GeM, linear, channel-wise modulation
    expected_features = torch.einsum("oc,bcxyz->boxyz", block.point.weight[:, :, 0, 0, 0], x)
    expected_features += block.point.bias.view(1, 3, 1, 1, 1)
    torch.testing.assert_close(features, expected_features, atol=1e-5, rtol=1e-5)
    grid = torch.stack(torch.meshgrid([torch.linspace(-1, 1, n) for n in (4, 5, 6)], indexing="ij"))
    embedding = torch.einsum("oc,cxyz->oxyz", block.position.weight[:, :, 0, 0, 0], grid)
    embedding += block.position.bias.view(3, 1, 1, 1)
    embedded = (expected_features + embedding).clamp(min=1e-6)
    pooled = (embedded**3).flatten(2).mean(2) ** (1 / 3)
    gate = 1 + torch.tanh(block.linear(pooled))
    torch.testing.assert_close(out, x * gate.view(2, 3, 1, 1, 1), atol=1e-5, rtol=1e-5)


def test_gmgs_changes_the_segmentation_output() -> None:
    net = small_net()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        before = net(x)
        net.gmgs[-1].linear.bias.add_(1.0)  # the infused global semantics of the last stage
        after_linear = net(x)
        net.gmgs[0].p.fill_(1.5)  # the GeM power of the deepest stage
        after_p = net(x)
        net.gmgs[1].position.weight.mul_(-3.0)  # the position embedding
        after_pe = net(x)
    assert not torch.allclose(before, after_linear, atol=1e-4)
    assert not torch.allclose(after_linear, after_p, atol=1e-6)
    assert not torch.allclose(after_p, after_pe, atol=1e-6)


def test_the_gem_power_learns() -> None:
    net = small_net().train()
    net(torch.randn(2, 1, 8, 8, 8)).pow(2).mean().backward()
    assert all(block.p.grad is not None and block.p.grad.abs() > 0 for block in net.gmgs)


def test_shapes_without_gmgs_and_in_2d() -> None:
    net = small_net(use_gmgs=False)
    assert len(net.gmgs) == 0 and not any("gmgs" in name for name, _ in net.named_parameters())
    logits, features, pointwise = net.forward_features(torch.randn(2, 1, 8, 8, 8))
    assert logits.shape == (2, 2, 8, 8, 8) and features.shape == (2, 4, 8, 8, 8) and pointwise == []
    net2d = DMGSANet(spatial_dims=2, in_channels=3, out_channels=4, channels=CHANNELS)
    assert net2d(torch.randn(1, 3, 16, 12)).shape == (1, 4, 16, 12)
    assert [f.shape[1] for f in net2d.forward_features(torch.randn(1, 3, 16, 12))[2]] == [8, 4]
    with pytest.raises(ValueError):
        DMGSANet(channels=(8,))


def test_torchscript_matches_eager() -> None:
    net = small_net()
    x = torch.randn(1, 1, 16, 12, 8)
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)


def test_training_model_outputs_and_reconstruction_switch() -> None:
    model = DMGSATrainingModel(small_net(), recon_channels=8)
    out = model(torch.randn(2, 1, 8, 8, 8))
    assert out["pred"].shape == (2, 2, 8, 8, 8) and out["recon"].shape == (2, 8, 8, 8, 8)
    assert [f.shape[1] for f in out["gmgs"]] == [8, 4]
    without = DMGSATrainingModel(small_net(), recon_channels=0)
    assert without.recon_head is None and "recon" not in without(torch.randn(1, 1, 8, 8, 8))
    # the network inside is the one inference loads: same weights, same logits
    x = torch.randn(1, 1, 8, 8, 8)
    torch.testing.assert_close(model(x)["pred"], model.network(x))


def test_architecture_is_read_back_from_a_state_dict(tmp_path) -> None:
    missing = dmgsa_architecture(tmp_path / "none.pt", channels=[32, 64])
    assert missing == {"in_channels": 1, "out_channels": 2, "channels": [32, 64], "use_gmgs": True}
    torch.save(
        DMGSANet(in_channels=1, out_channels=3, channels=(4, 8, 16), use_gmgs=False).state_dict(), tmp_path / "m.pt"
    )
    found = dmgsa_architecture(tmp_path / "m.pt")
    assert found == {"in_channels": 1, "out_channels": 3, "channels": [4, 8, 16], "use_gmgs": False}
    DMGSANet(**found).load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not hold a DMGSANet"):
        dmgsa_architecture(tmp_path / "other.pt")
