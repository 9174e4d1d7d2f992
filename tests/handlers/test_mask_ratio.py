"""DMGSA's dynamic mask ratio: the formula by hand, the schedule in an engine, zero in the last epoch, resumption."""

from __future__ import annotations

import math

import pytest
from ignite.engine import Engine, Events

from common.handlers import DynamicMaskRatio, dynamic_mask_ratio


def test_formula_by_hand() -> None:
    # epoch 5 of 10, rho 2: sin(0.25 pi) * 0.35
    assert dynamic_mask_ratio(5, 10, rho=2.0, max_ratio=0.35) == pytest.approx(0.35 * math.sqrt(0.5))
    # rho 1: half way is the peak
    assert dynamic_mask_ratio(60, 120, rho=1.0, max_ratio=0.5) == pytest.approx(0.5)
    # rho 2: the peak is at e / e_max = 2^(-1/2)
    assert dynamic_mask_ratio(71, 100, rho=2.0, max_ratio=0.35) == pytest.approx(0.35, abs=1e-3)
    assert dynamic_mask_ratio(0, 120) == 0.0 and dynamic_mask_ratio(120, 120) == 0.0


def test_easy_hard_easy() -> None:
    values = [dynamic_mask_ratio(e, 120, rho=2.0, max_ratio=0.35) for e in range(1, 121)]
    peak = max(range(120), key=values.__getitem__)
    assert peak + 1 == 85  # (85 / 120)^2 = 0.502: the sine's top
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1]))  # rises to the peak
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1 :]))  # then falls
    assert values[-1] == 0.0 and 0 < values[0] < 0.01


def test_the_handler_writes_the_ratio_of_each_epoch() -> None:
    seen = []
    engine = Engine(lambda engine, batch: None)
    DynamicMaskRatio(rho=2.0, max_ratio=0.35).attach(engine)
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append((e.state.epoch, e.state.mask_ratio)))
    engine.run([0, 1], max_epochs=4)
    assert [epoch for epoch, _ in seen] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [ratio for _, ratio in seen] == pytest.approx([dynamic_mask_ratio(e // 2 + 1, 4) for e in range(8)])
    assert seen[-1][1] == 0.0  # the last epoch sees unmasked inputs, as at test time


def test_a_resumed_run_continues_the_schedule() -> None:
    seen = []
    engine = Engine(lambda engine, batch: None)
    DynamicMaskRatio().attach(engine)
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.mask_ratio))
    engine.load_state_dict({"epoch": 2, "max_epochs": 4, "epoch_length": 1})  # what a checkpoint restores
    engine.run([0])
    assert seen == pytest.approx([dynamic_mask_ratio(3, 4), 0.0])


def test_fixed_ratio_ablation_and_validation() -> None:
    engine = Engine(lambda engine, batch: None)
    DynamicMaskRatio(fixed_ratio=0.35, state_name="ratio").attach(engine)
    seen = []
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.ratio))
    engine.run([0], max_epochs=3)
    assert seen == [0.35, 0.35, 0.35]
    with pytest.raises(ValueError):
        DynamicMaskRatio(rho=0.0)
    with pytest.raises(ValueError):
        DynamicMaskRatio(fixed_ratio=1.2)
    with pytest.raises(ValueError):
        dynamic_mask_ratio(5, 4)
