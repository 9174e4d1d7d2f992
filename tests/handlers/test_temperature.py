"""Tests of common.handlers.temperature: the schedule's values, the floor, the networks it updates, resumption."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from common.handlers.temperature import DyBACTemperature, dybac_temperature
from common.networks.dybac import DyBAC, dybac_temperatures


def test_schedule_values() -> None:
    assert [dybac_temperature(s, 34.0) for s in (0, 1, 2, 10, 11, 12)] == [34, 31, 28, 4, 1, 1]
    # 30 (2D) would reach 0 and go negative in the official code: floored at 1 here
    assert [dybac_temperature(s, 30.0) for s in (9, 10, 11)] == [3, 1, 1]
    with pytest.raises(ValueError, match="minimum"):
        dybac_temperature(0, 30.0, minimum=0.0)
    with pytest.raises(ValueError, match="step >= 0"):
        dybac_temperature(-1)


def test_handler_updates_state_and_every_network_per_step() -> None:
    student, teacher = DyBAC(2, 4, 4), DyBAC(2, 4, 4)
    seen = []
    engine = Engine(lambda e, b: seen.append((e.state.dybac_temperature, *dybac_temperatures(student))))
    DyBACTemperature([student, teacher], initial=30.0, step_size=2).attach(engine)
    assert engine.state.dybac_temperature == 30.0 and dybac_temperatures(teacher) == [30.0]
    engine.run(range(5), max_epochs=1)
    assert seen == [(30.0, 30.0), (30.0, 30.0), (27.0, 27.0), (27.0, 27.0), (24.0, 24.0)]
    assert dybac_temperatures(teacher) == [24.0]


def test_resumed_engine_continues_the_schedule() -> None:
    net = DyBAC(2, 4, 4)
    seen = []
    engine = Engine(lambda e, b: seen.append(e.state.dybac_temperature))
    DyBACTemperature([net], initial=34.0, step_size=1).attach(engine)

    @engine.on(Events.STARTED)
    def resume(e: Engine) -> None:  # what a checkpoint loader does
        e.state.iteration, e.state.epoch = 4, 1

    engine.run(range(4), max_epochs=2)
    assert seen == [22.0, 19.0, 16.0, 13.0]  # iterations 5-8: 34 - 3 * (4 .. 7)


def test_invalid_step_size() -> None:
    with pytest.raises(ValueError, match="step_size"):
        DyBACTemperature([torch.nn.Identity()], step_size=0)
