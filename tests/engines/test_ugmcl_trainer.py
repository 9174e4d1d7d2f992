"""Tests of common.engines.ugmcl: the loss equals UG-MCL's formula recomputed independently, and a short training
run ramps the consistency weight while the EMA teacher moves away from the student."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from common.data import LabeledUnlabeledLoader
from common.engines import UGMCLTrainer
from common.handlers import EMATeacher, RampScheduler
from common.inferers import MCUncertaintyEstimator
from common.networks import DualTaskVNet

SIZE = (16, 16, 16)


def make_cases(count: int, labeled: bool, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(count):
        image = torch.randn(1, *SIZE, generator=generator)
        case = {"image": image}
        if labeled:
            case["label"] = (image > 0.3).float()
        cases.append(case)
    return cases


def make_trainer(epochs: int = 1, epoch_length: int = 2, rampup: float = 4.0) -> tuple[UGMCLTrainer, EMATeacher]:
    torch.manual_seed(0)
    network = DualTaskVNet(features=4)
    teacher_handler = EMATeacher(network, alpha=0.99)
    loader = LabeledUnlabeledLoader(
        DataLoader(Dataset(make_cases(4, True, 1)), batch_size=2, shuffle=True),
        DataLoader(Dataset(make_cases(4, False, 2)), batch_size=2, shuffle=True),
        epoch_length=epoch_length,
    )
    handlers = [
        RampScheduler("consistency_weight", length=rampup, end_value=0.1, step_size=1),
        RampScheduler(
            "uncertainty_threshold", length=epochs * epoch_length, start_value=0.75 * math.log(2), end_value=math.log(2)
        ),
        teacher_handler,
    ]
    trainer = UGMCLTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01),
        teacher=teacher_handler.ema_model,
        uncertainty=MCUncertaintyEstimator(num_passes=4, passes_per_batch=2),
        train_handlers=handlers,
    )
    return trainer, teacher_handler


def dice_loss(probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    smooth = 1e-5
    return 1 - (2 * (probability * target).sum() + smooth) / ((probability**2).sum() + (target**2).sum() + smooth)


def reference_loss(network, teacher, images, labels, weight, threshold, passes=4, per_batch=2) -> torch.Tensor:
    """UG-MCL's loss written out with plain torch operations, consuming the random numbers in the engine's order."""
    network.train()
    teacher.train()
    logits, sdf = network(images)
    with torch.no_grad():
        noisy = images + torch.clamp(torch.randn_like(images) * 0.1, -0.2, 0.2)
        teacher_logits, teacher_sdf = teacher(noisy)
        repeated = images.repeat(per_batch, 1, 1, 1, 1)
        total = 0
        for _ in range(passes // per_batch):
            out = teacher(repeated + torch.clamp(torch.randn_like(repeated) * 0.1, -0.2, 0.2))[0]
            total = total + torch.softmax(out, 1).reshape(per_batch, images.shape[0], *out.shape[1:]).sum(0)
        mean = total / passes
        entropy = -(mean * torch.log(mean + 1e-6)).sum(1, keepdim=True)
        mask = (entropy < threshold).float()
    n = labels.shape[0]
    target = labels[:, 0].long()
    probabilities = torch.softmax(logits, 1)
    ce = torch.nn.functional.cross_entropy(logits[:n], target)
    dice = dice_loss(probabilities[:n, 1], (target == 1).float())
    sdf_dice = dice_loss(torch.sigmoid(-1500 * sdf[:n, 1]), (target == 1).float())
    supervised = 0.5 * (ce + dice + sdf_dice)
    masked = lambda a, b: (mask * (a - b) ** 2).sum() / (2 * mask.sum() + 1e-16)  # noqa: E731
    intra = masked(probabilities, torch.softmax(teacher_logits, 1)) + masked(sdf, teacher_sdf)
    cross = ((torch.sigmoid(-1500 * sdf) - probabilities) ** 2).mean()
    return supervised + weight * (intra + cross)


def test_loss_and_update_match_the_formula() -> None:
    trainer, _ = make_trainer()
    batch = next(iter(trainer.data_loader))
    network_copy = copy.deepcopy(trainer.network)
    teacher_copy = copy.deepcopy(trainer.teacher)
    trainer.state.consistency_weight, trainer.state.uncertainty_threshold = 0.05, 0.6
    torch.manual_seed(123)
    output = trainer._iteration(trainer, batch)[0]
    torch.manual_seed(123)
    expected = reference_loss(network_copy, teacher_copy, batch["image"], batch["label"], 0.05, 0.6)
    assert output["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert output["loss_sup"] + 0.05 * (output["loss_intra"] + output["loss_cross"]) == pytest.approx(
        output["loss"].item(), rel=1e-5
    )
    expected.backward()
    with torch.no_grad():
        for trained, reference in zip(trainer.network.parameters(), network_copy.parameters()):
            torch.testing.assert_close(trained, reference - 0.01 * reference.grad, rtol=1e-4, atol=1e-6)
    assert 0 < output["certain_fraction"] <= 1
    for key in ("image", "label", "pred", "loss", "loss_ce", "loss_dice", "loss_sdf_dice", "consistency_weight"):
        assert key in output


def test_short_run_ramps_the_weight_and_the_teacher_departs_from_the_student() -> None:
    trainer, teacher_handler = make_trainer(epochs=2, epoch_length=3, rampup=6.0)
    initial = [p.detach().clone() for p in trainer.network.parameters()]
    weights: list[float] = []
    losses: list[float] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: weights.append(e.state.output[0]["consistency_weight"])
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()
    assert trainer.state.iteration == 6
    assert all(b > a for a, b in zip(weights, weights[1:])), weights
    assert weights[0] == pytest.approx(0.1 * math.exp(-5)) and weights[-1] == pytest.approx(0.1 * math.exp(-5 / 36))
    assert all(math.isfinite(v) for v in losses)
    teacher = list(teacher_handler.ema_model.parameters())
    student = list(trainer.network.parameters())
    assert any(not torch.allclose(t, s) for t, s in zip(teacher, student))  # the teacher lags behind the student
    assert any(not torch.allclose(t, i) for t, i in zip(teacher, initial))  # but it did move
    assert trainer.state.uncertainty_threshold > 0.75 * math.log(2)


def test_needs_a_teacher_and_valid_weights() -> None:
    network = DualTaskVNet(features=4)
    arguments = {
        "device": "cpu",
        "max_epochs": 1,
        "train_data_loader": [],
        "network": network,
        "optimizer": torch.optim.SGD(network.parameters(), lr=0.01),
    }
    with pytest.raises(ValueError, match="needs a teacher"):
        UGMCLTrainer(teacher=None, **arguments)
    with pytest.raises(ValueError, match="non-negative"):
        UGMCLTrainer(teacher=network, intra_sdf_weight=-1, **arguments)
