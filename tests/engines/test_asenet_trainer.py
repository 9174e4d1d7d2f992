"""Tests of common.engines.asenet with tiny tensors: what D1 and D2 see, the weighting of every term, gradient of the
supervised Dice, the one-channel (sigmoid) consistency, and a full iteration with the real discriminators."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

import common.engines.asenet as asenet_engine
from common.engines import ASENetTrainer, DiscriminatorSpec, d1_inputs, d2_inputs
from common.losses import ThreeWayConsistencyLoss, TwoClassAdversarialLoss
from common.networks import ASENetDiscriminator

NOISE = 0.1


class SpyDiscriminator(nn.Module):
    """Records its inputs; logits from the mean of prediction and image (enough to carry gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, pred: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        self.calls.append((pred.detach().clone(), image.detach().clone()))
        return self.linear(torch.stack([pred.flatten(1).mean(1), image.flatten(1).mean(1)], dim=1))


def batch(num_labeled: int = 2, total: int = 4, channels: int = 1) -> dict:
    torch.manual_seed(0)
    label = torch.zeros(num_labeled, 1, 8, 8)
    label[:, :, 2:6, 2:6] = 1
    return {"image": torch.randn(total, channels, 8, 8), "label": label, "labeled_batch_size": num_labeled}


def make_trainer(out_channels: int = 2, discriminators=(), loss=None, weight: float = 0.5, **kwargs) -> ASENetTrainer:
    torch.manual_seed(1)
    network = nn.Conv2d(1, out_channels, 3, padding=1)
    teacher = copy.deepcopy(network)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3)  # a teacher that differs from the student
    if loss is None:
        loss = DiceCELoss(
            to_onehot_y=out_channels > 1,
            softmax=out_channels > 1,
            sigmoid=out_channels == 1,
            lambda_ce=0.5,
            lambda_dice=0.5,
        )
    trainer = ASENetTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[batch()],
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3, betas=(0.9, 0.99)),
        teacher=teacher,
        loss_function=loss,
        discriminators=discriminators,
        **kwargs,
    )
    trainer.state.consistency_weight = weight
    return trainer


@pytest.fixture
def fixed_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asenet_engine, "add_input_noise", lambda images, std, clip: images + NOISE)


def spec(name: str, network: nn.Module, inputs) -> DiscriminatorSpec:
    return DiscriminatorSpec(
        name,
        network,
        torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4),
        inputs,
        weight=0.5,
        loss_function=TwoClassAdversarialLoss(),
        weight_key="consistency_weight",
    )


def test_d1_and_d2_see_the_inputs_methods_names(fixed_noise: None) -> None:
    d1, d2 = SpyDiscriminator(), SpyDiscriminator()
    trainer = make_trainer(discriminators=[spec("d1", d1, d1_inputs), spec("d2", d2, d2_inputs)])
    data = batch()
    x = data["image"]
    with torch.no_grad():
        p = torch.softmax(trainer.network(x), 1)
        p_xi = torch.softmax(trainer.network(x[2:] + NOISE), 1)
        q = torch.softmax(trainer.teacher(x[2:]), 1)
    trainer.state.device = torch.device("cpu")
    trainer._iteration(trainer, data)
    # segmenter step (frozen discriminators, fakes only), then the discriminator step on [real; fake]
    (d1_fake_pred, d1_fake_image), (d1_pred, d1_image) = d1.calls
    assert torch.allclose(d1_fake_pred, p[2:], atol=1e-6) and torch.equal(d1_fake_image, x[2:])
    assert torch.allclose(d1_pred, torch.cat([p[:2], p[2:]]), atol=1e-6) and torch.equal(d1_image, x)
    (d2_fake_pred, d2_fake_image), (d2_pred, d2_image) = d2.calls
    assert torch.allclose(d2_fake_pred, p_xi, atol=1e-6) and torch.equal(d2_fake_image, x[2:])
    assert torch.allclose(d2_pred, torch.cat([q, p_xi]), atol=1e-6)
    assert torch.equal(d2_image, torch.cat([x[2:], x[2:]]))  # both sides paired with the clean unlabeled image


def test_every_term_is_weighted_as_the_paper(fixed_noise: None) -> None:
    d1, d2 = SpyDiscriminator(), SpyDiscriminator()
    trainer = make_trainer(discriminators=[spec("d1", d1, d1_inputs), spec("d2", d2, d2_inputs)], weight=0.4)
    data = batch()
    x, y = data["image"], data["label"]
    with torch.no_grad():
        logits = trainer.network(x)
        noisy = trainer.network(x[2:] + NOISE)
        teacher = trainer.teacher(x[2:])
        sup = trainer.loss_function(logits[:2], y)
        cons = ThreeWayConsistencyLoss()(logits[2:], noisy, teacher)
        ce = TwoClassAdversarialLoss()
        adv1 = ce(d1(torch.softmax(logits[2:], 1), x[2:]), True)
        adv2 = ce(d2(torch.softmax(noisy, 1), x[2:]), True)
    d1.calls.clear()
    d2.calls.clear()
    trainer.state.device = torch.device("cpu")
    out = trainer._iteration(trainer, data)
    assert out["supervised"].item() == pytest.approx(sup.item(), abs=1e-6)
    assert out["consistency"].item() == pytest.approx(0.4 * cons.item(), abs=1e-7)
    assert out["adv_d1"].item() == pytest.approx(0.5 * 0.4 * adv1.item(), abs=1e-6)
    assert out["adv_d2"].item() == pytest.approx(0.5 * 0.4 * adv2.item(), abs=1e-6)
    total = sup + 0.4 * (cons + (adv1 + adv2) / 2)  # L_sup + lambda (adv + cons)
    assert out["loss"].item() == pytest.approx(total.item(), abs=1e-6)
    assert "d_d1" in out and "d_d2" in out and out["consistency_weight"] == 0.4


def test_supervised_dice_carries_gradient() -> None:
    trainer = make_trainer(loss=DiceLoss(to_onehot_y=True, softmax=True))
    trainer.state.device = torch.device("cpu")
    _, terms = trainer.segmenter_step(trainer, batch())
    terms["supervised"].backward()
    assert terms["supervised"].requires_grad
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.network.parameters())


def test_consistency_is_non_zero_for_a_one_channel_output(fixed_noise: None) -> None:
    trainer = make_trainer(out_channels=1, weight=1.0)
    trainer.state.device = torch.device("cpu")
    data = batch()
    x = data["image"]
    outputs, terms = trainer.segmenter_step(trainer, data)
    with torch.no_grad():
        p, p_xi = torch.sigmoid(trainer.network(x[2:])), torch.sigmoid(trainer.network(x[2:] + NOISE))
        q = torch.sigmoid(trainer.teacher(x[2:]))
    expected = (((p - q) ** 2 + (p_xi - q) ** 2 + (p - p_xi) ** 2) / 3).mean()
    assert terms["consistency"].item() > 1e-4
    assert terms["consistency"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(outputs["unlabeled_prob"], p, atol=1e-6)  # sigmoid maps go to D1 too
    terms["consistency"].backward()
    assert trainer.network.weight.grad.abs().sum() > 0


def test_teacher_noise_switch_feeds_the_teacher_the_noisy_input(fixed_noise: None) -> None:
    trainer = make_trainer(teacher_noise=True, weight=1.0)
    trainer.state.device = torch.device("cpu")
    data = batch()
    x = data["image"]
    _, terms = trainer.segmenter_step(trainer, data)
    with torch.no_grad():
        expected = ThreeWayConsistencyLoss()(
            trainer.network(x[2:]), trainer.network(x[2:] + NOISE), trainer.teacher(x[2:] + NOISE)
        )
    assert terms["consistency"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_full_run_with_the_real_discriminators_updates_everything() -> None:
    d1 = ASENetDiscriminator(2, pred_channels=2, image_channels=1, features=4)
    d2 = ASENetDiscriminator(2, pred_channels=2, image_channels=1, features=4)
    before = [copy.deepcopy(d.state_dict()) for d in (d1, d2)]
    trainer = make_trainer(discriminators=[spec("d1", d1, d1_inputs), spec("d2", d2, d2_inputs)])
    trainer.state.consistency_weight = None  # must come from a handler

    @trainer.on(asenet_engine.Events.ITERATION_STARTED)
    def weight(engine: ASENetTrainer) -> None:
        engine.state.consistency_weight = 1.0

    trainer.run()
    for d, state in zip((d1, d2), before):
        assert not torch.equal(d.classifier.weight, state["classifier.weight"])
    assert trainer.state.output["pred"].requires_grad is False


def test_errors_are_named() -> None:
    trainer = make_trainer()
    trainer.state.device = torch.device("cpu")
    with pytest.raises(ValueError, match="labeled and unlabeled cases"):
        trainer.segmenter_step(trainer, batch(num_labeled=4, total=4))
    with pytest.raises(ValueError, match="LabeledUnlabeledLoader"):
        trainer.segmenter_step(trainer, {"image": torch.zeros(2, 1, 8, 8)})
    trainer.state.consistency_weight = None
    with pytest.raises(AttributeError, match="RampScheduler"):
        trainer.segmenter_step(trainer, batch())
    with pytest.raises(ValueError, match="teacher"):
        ASENetTrainer(
            "cpu", 1, [], nn.Conv2d(1, 2, 1), torch.optim.SGD(nn.Conv2d(1, 2, 1).parameters(), 0.1), None, DiceLoss()
        )


def test_discriminator_weight_key_scales_and_names_a_missing_handler() -> None:
    d = spec("d1", SpyDiscriminator(), d1_inputs)

    class State:
        consistency_weight = 0.3

    assert d.current_weight(State()) == pytest.approx(0.15)
    assert (
        DiscriminatorSpec("plain", SpyDiscriminator(), d.optimizer, d1_inputs, weight=0.7).current_weight(None) == 0.7
    )
    with pytest.raises(AttributeError, match="engine.state.consistency_weight is not set"):
        d.current_weight(object())
