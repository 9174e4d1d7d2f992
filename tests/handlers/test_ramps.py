"""Tests of common.handlers.ramps: ramp values at chosen steps and the schedulers writing engine.state."""

from __future__ import annotations

import math

import pytest
from ignite.engine import Engine, Events

from common.handlers import RampScheduler, cosine_rampdown, cosine_rampup, linear_rampup, sigmoid_rampup


def test_sigmoid_rampup_values() -> None:
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))  # 0.0067379
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-1.25))  # 0.2865048
    assert sigmoid_rampup(30, 40) == pytest.approx(math.exp(-5 * 0.25**2))
    assert sigmoid_rampup(40, 40) == 1.0 and sigmoid_rampup(400, 40) == 1.0
    assert sigmoid_rampup(-3, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(7, 0) == 1.0


def test_linear_and_cosine_values() -> None:
    assert [linear_rampup(x, 4) for x in (0, 1, 2, 4, 9)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert cosine_rampup(0, 10) == pytest.approx(0.0)
    assert cosine_rampup(5, 10) == pytest.approx(0.5)
    assert cosine_rampup(2.5, 10) == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    assert cosine_rampup(10, 10) == pytest.approx(1.0)
    assert cosine_rampdown(2.5, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ValueError, match="non-negative"):
        linear_rampup(1, -1)


def test_ugmcl_consistency_weight_at_chosen_iterations() -> None:
    """lambda(t) = 0.1 sigmoid_rampup(floor(t / 150), 40) on the 6000-iteration LA protocol."""
    schedule = RampScheduler("consistency_weight", length=40, end_value=0.1, step_size=150)
    expected = {
        0: 0.1 * math.exp(-5),
        149: 0.1 * math.exp(-5),
        150: 0.1 * math.exp(-5 * (39 / 40) ** 2),
        3000: 0.1 * math.exp(-1.25),
        5999: 0.1 * math.exp(-5 / 40**2),
        6000: 0.1,
    }
    for t, value in expected.items():
        assert schedule.value(t) == pytest.approx(value, rel=1e-12), t


def test_uncertainty_threshold_at_chosen_iterations() -> None:
    """(0.75 + 0.25 sigmoid_rampup(t, t_max)) ln 2."""
    schedule = RampScheduler(
        "uncertainty_threshold", length=6000, start_value=0.75 * math.log(2), end_value=math.log(2)
    )
    assert schedule.value(0) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert schedule.value(3000) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * math.log(2))
    assert schedule.value(6000) == pytest.approx(math.log(2))


def test_scheduler_writes_engine_state_from_the_iteration_counter() -> None:
    seen: list[float] = []
    engine = Engine(lambda e, b: seen.append(e.state.weight))
    RampScheduler("weight", ramp="linear", length=4, end_value=2.0).attach(engine)
    assert engine.state.weight == 0.0  # created at attach time, with the value for t = 0
    engine.run(range(3), max_epochs=2)
    assert seen == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_resumed_run_continues_the_schedule() -> None:
    seen: list[float] = []
    engine = Engine(lambda e, b: seen.append(e.state.weight))
    RampScheduler("weight", ramp="linear", length=8, end_value=1.0).attach(engine)
    engine.load_state_dict({"iteration": 4, "max_epochs": 3, "epoch_length": 4})  # as a checkpoint restores it
    engine.run(range(4))
    assert seen == [0.5, 0.625, 0.75, 0.875, 1.0, 1.0, 1.0, 1.0]


def test_epoch_level_and_history() -> None:
    engine = Engine(lambda e, b: None)
    scheduler = RampScheduler("weight", ramp="linear", length=2, end_value=1.0, epoch_level=True, save_history=True)
    scheduler.attach(engine)
    engine.run(range(2), max_epochs=3)
    assert engine.state.param_history["weight"] == [0.0, 0.5, 1.0]
    assert RampScheduler.simulate_values(3, param_name="w", ramp="linear", length=2) == [[0, 0.0], [1, 0.5], [2, 1.0]]


def test_attach_to_a_custom_event_and_bad_arguments() -> None:
    engine = Engine(lambda e, b: None)
    RampScheduler("weight", ramp="linear", length=10).attach(engine, Events.ITERATION_COMPLETED)
    engine.run(range(3))
    assert engine.state.weight == pytest.approx(0.2)
    with pytest.raises(ValueError, match="unknown ramp"):
        RampScheduler("w", ramp="exponential")
    with pytest.raises(ValueError, match="step_size"):
        RampScheduler("w", step_size=0)
    with pytest.raises(ValueError, match="length"):
        RampScheduler("w", length=-1)
