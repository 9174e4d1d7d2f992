"""Tests of common.engines.asenet with tiny tensors: what D1 and D2 see, the weighting of every term, gradient of the
supervised Dice, the one-channel (sigmoid) consistency, and a full iteration with the real discriminators."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
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
    # the discriminators' step on real, then on fake (separate passes); then the segmenter step (fakes only)
    (d1_real, d1_real_image), (d1_fake, d1_fake_image), (d1_adv, d1_adv_image) = d1.calls
    assert torch.allclose(d1_real, p[:2], atol=1e-6) and torch.equal(d1_real_image, x[:2])
    assert torch.allclose(d1_fake, p[2:], atol=1e-6) and torch.equal(d1_fake_image, x[2:])
    assert torch.allclose(d1_adv, p[2:], atol=1e-6) and torch.equal(d1_adv_image, x[2:])
    (d2_real, d2_real_image), (d2_fake, d2_fake_image), (d2_adv, d2_adv_image) = d2.calls
    assert torch.allclose(d2_real, q, atol=1e-6)  # the teacher on the clean x_u
    assert torch.allclose(d2_fake, p_xi, atol=1e-6) and torch.allclose(d2_adv, p_xi, atol=1e-6)
    for image in (d2_real_image, d2_fake_image, d2_adv_image):  # every side paired with the clean unlabeled image
        assert torch.equal(image, x[2:])


def test_every_term_is_weighted_as_the_paper(fixed_noise: None) -> None:
    d1, d2 = SpyDiscriminator(), SpyDiscriminator()
    trainer = make_trainer(discriminators=[spec("d1", d1, d1_inputs), spec("d2", d2, d2_inputs)], weight=0.4)
    data = batch()
    x, y = data["image"], data["label"]
    with torch.no_grad():
        logits = trainer.network(x)
        noisy = trainer.network(x[2:] + NOISE)
        teacher = trainer.teacher(x[2:] + NOISE)  # the official code's teacher input for the consistency
        sup = trainer.loss_function(logits[:2], y)
        cons = ThreeWayConsistencyLoss()(logits[2:], noisy, teacher)
    trainer.state.device = torch.device("cpu")
    out = trainer._iteration(trainer, data)[0]
    with torch.no_grad():  # through the discriminators as updated by their step, which comes first
        ce = TwoClassAdversarialLoss()
        adv1 = ce(d1(torch.softmax(logits[2:], 1), x[2:]), True)
        adv2 = ce(d2(torch.softmax(noisy, 1), x[2:]), True)
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
        q = torch.sigmoid(trainer.teacher(x[2:] + NOISE))
    expected = (((p - q) ** 2 + (p_xi - q) ** 2 + (p - p_xi) ** 2) / 3).mean()
    assert terms["consistency"].item() > 1e-4
    assert terms["consistency"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(outputs["unlabeled_prob"], p, atol=1e-6)  # sigmoid maps go to D1 too
    terms["consistency"].backward()
    assert trainer.network.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("teacher_noise", "noisy_teacher"), [(None, True), (True, True), (False, False)])
def test_teacher_input_is_noisy_by_default_and_clean_with_the_switch(
    fixed_noise: None, teacher_noise: bool | None, noisy_teacher: bool
) -> None:
    """The official 2D and 3D code feed the teacher x_u + xi for the consistency; teacher_noise=False is ours."""
    kwargs = {} if teacher_noise is None else {"teacher_noise": teacher_noise}
    trainer = make_trainer(weight=1.0, **kwargs)
    with torch.no_grad():  # a teacher whose softmax differs from the student's (one channel's weights moved)
        trainer.teacher.weight[0].add_(torch.linspace(-1.0, 1.0, 9).view(1, 3, 3))
    trainer.state.device = torch.device("cpu")
    data = batch()
    x = data["image"]
    _, terms = trainer.segmenter_step(trainer, data)
    with torch.no_grad():
        expected = ThreeWayConsistencyLoss()(
            trainer.network(x[2:]),
            trainer.network(x[2:] + NOISE),
            trainer.teacher(x[2:] + NOISE if noisy_teacher else x[2:]),
        )
        other = ThreeWayConsistencyLoss()(
            trainer.network(x[2:]),
            trainer.network(x[2:] + NOISE),
            trainer.teacher(x[2:] if noisy_teacher else x[2:] + NOISE),
        )
    assert terms["consistency"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(expected.item() - other.item()) > 1e-4  # the two inputs are told apart


def test_full_run_with_the_real_discriminators_updates_everything() -> None:
    d1 = ASENetDiscriminator(2, pred_channels=2, image_channels=1, features=4)
    d2 = ASENetDiscriminator(2, pred_channels=2, image_channels=1, features=4)
    before = [copy.deepcopy(d.state_dict()) for d in (d1, d2)]
    trainer = make_trainer(discriminators=[spec("d1", d1, d1_inputs), spec("d2", d2, d2_inputs)])
    trainer.state.consistency_weight = None  # must come from a handler

    @trainer.on(Events.ITERATION_STARTED)
    def weight(engine: ASENetTrainer) -> None:
        engine.state.consistency_weight = 1.0

    trainer.run()
    for d, state in zip((d1, d2), before):
        assert not torch.equal(d.classifier.weight, state["classifier.weight"])
    assert trainer.state.output[0]["pred"].requires_grad is False


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


class NormDropoutDiscriminator(nn.Module):
    """(prediction, image) -> two logits through batch norm and dropout, so that its mode changes its output."""

    def __init__(self) -> None:
        super().__init__()
        self.pred_conv = nn.Conv2d(2, 4, 3, padding=1)
        self.image_conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout2d(0.5)
        self.classifier = nn.Linear(4, 2)

    def forward(self, pred: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.nn.functional.leaky_relu(self.norm(self.pred_conv(pred) + self.image_conv(image)), 0.2))
        return self.classifier(x.mean(dim=(2, 3)))


def test_modes_and_order_of_the_official_step_with_batch_norm_and_dropout() -> None:
    """train_ASE-Net_3D.py: model.eval(), D1/D2 train() and updated on real and fake apart (their fakes without
    grad); then model.train(), D1/D2 eval() for the segmenter's adversarial terms; one noise draw for both steps."""
    torch.manual_seed(2)
    student = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Dropout2d(0.5), nn.Conv2d(2, 2, 1))
    teacher = copy.deepcopy(student)
    d1, d2 = NormDropoutDiscriminator(), NormDropoutDiscriminator()
    specs = [spec("d1", d1, d1_inputs), spec("d2", d2, d2_inputs)]
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3, betas=(0.9, 0.99))
    trainer = ASENetTrainer(
        "cpu", 1, [batch()], student, optimizer, teacher, DiceCELoss(to_onehot_y=True, softmax=True), specs
    )
    trainer.state.consistency_weight = 1.0
    events: list[tuple] = []

    def record(name: str):
        def hook(module, args):
            frozen = not any(p.requires_grad for p in module.parameters())
            events.append((name, module.training, torch.is_grad_enabled() and not frozen, args[0].clone()))

        return hook

    for name, module in (("student", student), ("teacher", teacher), ("d1", d1), ("d2", d2)):
        module.register_forward_pre_hook(record(name))
    for name, optim in (("d1", specs[0].optimizer), ("d2", specs[1].optimizer), ("student", optimizer)):
        optim.register_step_pre_hook(lambda *_, name=name: events.append((f"step {name}",)))
    trainer.run()

    assert [e[:3] for e in events] == [
        ("student", False, False),  # D's inputs: the student in eval mode, no grad, on x ...
        ("student", False, False),  # ... and on x_u + xi
        ("teacher", True, False),  # the teacher (train mode, as the official EMA model) on x_u
        ("d1", True, True),  # D1 on real (labeled) ...
        ("d1", True, True),  # ... and on fake (unlabeled), apart
        ("step d1",),
        ("d2", True, True),  # D2 on real (teacher) ...
        ("d2", True, True),  # ... and on fake (noisy student), apart
        ("step d2",),
        ("student", True, True),  # the segmenter step, train mode
        ("student", True, True),
        ("teacher", True, False),  # the teacher on x_u + xi for the consistency
        ("d1", False, False),  # adversarial terms: D1, D2 in eval mode and frozen
        ("d2", False, False),
        ("step student",),
    ]
    x = batch()["image"]
    noisy_for_d, noisy_for_segmenter, noisy_for_teacher = events[1][3], events[10][3], events[11][3]
    assert not torch.equal(noisy_for_d, x[2:])
    assert torch.equal(noisy_for_d, noisy_for_segmenter) and torch.equal(noisy_for_d, noisy_for_teacher)  # one xi
    assert torch.equal(events[2][3], x[2:])  # D2's real: the teacher on the clean x_u
    assert [e[3].shape[0] for e in events if e[0] in ("d1", "d2")] == [2, 2, 2, 2, 2, 2]  # never a mixed batch
