"""Tests of common.handlers.ema: the mean-teacher momentum sequence, the teacher as a running average, resumption."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events
from torch import nn

from common.handlers import EMAMomentumScheduler, EMATeacher, mean_teacher_alpha, teacher_copy


def test_alpha_rule() -> None:
    assert [mean_teacher_alpha(t) for t in (0, 1, 2, 3)] == pytest.approx([0.0, 0.5, 2 / 3, 0.75])
    assert mean_teacher_alpha(98) == pytest.approx(1 - 1 / 99)
    assert mean_teacher_alpha(99) == pytest.approx(0.99) and mean_teacher_alpha(5000) == 0.99


def counting_run(iterations: int, start_iteration: int = 0) -> tuple[list[float], list[float], EMATeacher]:
    """A student whose single weight equals the iteration index t; returns momenta and teacher weights per step."""
    student = nn.Linear(1, 1, bias=False)
    momenta: list[float] = []
    teacher_values: list[float] = []

    def step(engine: Engine, _: int) -> None:
        with torch.no_grad():
            student.weight.fill_(float(engine.state.iteration - 1))

    engine = Engine(step)
    teacher = EMATeacher(student, alpha=0.99)
    teacher.attach(engine)

    @engine.on(Events.ITERATION_COMPLETED)
    def record(engine: Engine) -> None:  # registered after the teacher: sees the updated teacher
        momenta.append(engine.state.ema_momentum)
        teacher_values.append(float(teacher.ema_model.weight))

    if start_iteration:
        engine.load_state_dict(
            {"iteration": start_iteration, "max_epochs": 1, "epoch_length": start_iteration + iterations}
        )
        engine.run(range(start_iteration + iterations))
    else:
        engine.run(range(iterations))
    return momenta, teacher_values, teacher


def test_momentum_sequence_and_running_average() -> None:
    momenta, teacher_values, teacher = counting_run(130)
    # Ignite momentum = 1 - alpha: 1, 1/2, 1/3, ... 1/100, then 0.01
    assert momenta[:4] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert momenta[98] == pytest.approx(1 / 99)
    assert momenta[99:] == pytest.approx([0.01] * 31)
    # while alpha = 1 - 1/(t+1) the teacher is the plain mean of the student's weights 0..t
    for t in (0, 1, 2, 10, 98):
        assert teacher_values[t] == pytest.approx(t / 2, rel=1e-5)
    # afterwards it is an exponential average: theta_T <- 0.99 theta_T + 0.01 t
    expected = teacher_values[99]
    for t in range(100, 130):
        expected = 0.99 * expected + 0.01 * t
    assert teacher_values[-1] == pytest.approx(expected, rel=1e-5)
    assert teacher.ema_model.training  # "ema_train": the teacher keeps its own batch statistics, as in the reference


def test_resumed_run_continues_the_momentum_schedule() -> None:
    momenta, _, _ = counting_run(3, start_iteration=150)
    assert momenta == pytest.approx([0.01] * 3)
    momenta, _, _ = counting_run(2, start_iteration=1)
    assert momenta == pytest.approx([0.5, 1 / 3])


def test_teacher_is_a_detached_copy_and_checkpointable() -> None:
    student = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))
    teacher = EMATeacher(student).ema_model
    assert teacher is not student and all(not p.requires_grad for p in teacher.parameters())
    restored = EMATeacher(nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))).ema_model
    restored.load_state_dict(teacher.state_dict())
    for a, b in zip(restored.parameters(), teacher.parameters()):
        torch.testing.assert_close(a, b)


def test_scheduler_alone_and_bad_alpha() -> None:
    engine = Engine(lambda e, b: None)
    EMAMomentumScheduler(alpha_max=0.9, param_name="m").attach(engine)
    values: list[float] = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: values.append(e.state.m))
    engine.run(range(12))
    assert values[:3] == pytest.approx([1.0, 0.5, 1 / 3]) and values[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="alpha_max"):
        EMAMomentumScheduler(alpha_max=1.0)


class DropoutNet(nn.Module):
    """A student with a batch-norm buffer and dropout: what the teacher's mode and buffers act on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.norm = nn.BatchNorm1d(2)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.linear(x)))


def test_teacher_copy_is_what_ema_handler_builds_and_the_handler_updates_it() -> None:
    torch.manual_seed(0)
    student = DropoutNet()
    given = teacher_copy(nn.parallel.DataParallel(student).module)  # a module, not the student itself
    assert given is not student and all(not p.requires_grad for p in given.parameters())
    own = EMATeacher(student).ema_model  # Ignite's own copy
    for (name, a), (_, b) in zip(given.state_dict().items(), own.state_dict().items()):
        assert torch.equal(a, b), name
    handler = EMATeacher(student, alpha=0.99, teacher=given)
    assert handler.ema_model is given and given.training  # "ema_train": the teacher runs in train mode
    assert not EMATeacher(student, handle_buffers="copy", teacher=teacher_copy(student)).ema_model.training

    # two steps with the given teacher and with EMAHandler's own copy: the same teacher after each
    reference = EMATeacher(student, alpha=0.99)
    engine = Engine(lambda e, _: [p.data.add_(1.0) for p in student.parameters()])
    handler.attach(engine)
    reference.attach(engine, name="reference_momentum")
    engine.run(range(2))
    for (name, a), (_, b) in zip(given.state_dict().items(), reference.ema_model.state_dict().items()):
        assert torch.equal(a, b), name
    # after t = 0 (momentum 1: the student's weights) and t = 1 (the mean of the two): student - 0.5
    torch.testing.assert_close(given.linear.weight, student.linear.weight - 0.5)


def test_a_teacher_of_another_shape_is_refused() -> None:
    student = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="teacher's tensors differ"):
        EMATeacher(student, teacher=nn.Linear(2, 3))
