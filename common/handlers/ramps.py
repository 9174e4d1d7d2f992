"""Ramp-ups of semi-supervised training, as Ignite state parameter schedulers writing ``engine.state.<name>``.

The ramp functions map a step ``x`` and a ramp length ``L`` to [0, 1]:

- ``sigmoid_rampup(x, L) = exp(-5 (1 - clip(x / L, 0, 1))^2)`` (Laine & Aila 2017; the mean-teacher family);
- ``linear_rampup(x, L) = clip(x / L, 0, 1)``;
- ``cosine_rampup(x, L) = 0.5 (1 - cos(pi clip(x / L, 0, 1)))``, and ``cosine_rampdown(x, L) = 1 - cosine_rampup``.

:class:`RampScheduler` writes ``start + (end - start) * ramp(floor(t / step_size), length)`` into ``engine.state``,
with ``t`` the number of iterations completed before the current one (the ``iter_num`` of the reference code). The
UG-MCL consistency weight is ``RampScheduler("consistency_weight", end_value=0.1, length=40, step_size=150)``
(``lambda(t) = 0.1 sigmoid_rampup(floor(t / 150), 40)``); its uncertainty threshold is
``RampScheduler("uncertainty_threshold", start_value=0.75 ln 2, end_value=ln 2, length=t_max)``. The engine reads the
values from ``engine.state``; nothing else computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.handlers.state_param_scheduler import StateParamScheduler

__all__ = ["RAMPS", "RampScheduler", "cosine_rampdown", "cosine_rampup", "linear_rampup", "sigmoid_rampup"]


def _fraction(current: float, length: float) -> float:
    if length < 0:
        raise ValueError(f"ramp length must be non-negative, got {length}")
    if length == 0:
        return 1.0
    return min(max(float(current) / float(length), 0.0), 1.0)


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - clip(current / length, 0, 1))^2)``: 0.0067 at 0, 1 from ``length`` on (1 when ``length`` is 0).

    Args:
        current: the step (e.g. ``floor(iteration / 150)``).
        length: the ramp length in the same steps.

    Returns:
        The ramp value in (0, 1].
    """
    phase = 1.0 - _fraction(current, length)
    return float(math.exp(-5.0 * phase * phase))


def linear_rampup(current: float, length: float) -> float:
    """``clip(current / length, 0, 1)`` (1 when ``length`` is 0)."""
    return _fraction(current, length)


def cosine_rampup(current: float, length: float) -> float:
    """``0.5 (1 - cos(pi clip(current / length, 0, 1)))``: 0 at 0, 1 from ``length`` on (1 when ``length`` is 0)."""
    return float(0.5 * (1.0 - math.cos(math.pi * _fraction(current, length))))


def cosine_rampdown(current: float, length: float) -> float:
    """``0.5 (1 + cos(pi clip(current / length, 0, 1)))``: 1 at 0, 0 from ``length`` on (mean teacher's rampdown)."""
    return 1.0 - cosine_rampup(current, length)


RAMPS: dict[str, Callable[[float, float], float]] = {
    "sigmoid": sigmoid_rampup,
    "linear": linear_rampup,
    "cosine": cosine_rampup,
    "cosine_down": cosine_rampdown,
}
"""Ramp name -> function, the names :class:`RampScheduler` accepts."""


class RampScheduler(StateParamScheduler):
    """Write ``start_value + (end_value - start_value) * ramp(floor(t / step_size), length)`` to ``engine.state``.

    ``t = engine.state.iteration - 1`` is the number of iterations completed before the current one when attached to
    ``ITERATION_STARTED`` (the default), so the first iteration sees ``t = 0``. Because the value is a function of the
    engine's own iteration counter, a resumed run continues the schedule exactly, without the scheduler in the
    checkpoint. With ``epoch_level=True`` the step is ``t = engine.state.epoch - 1`` instead.

    Args:
        param_name: the ``engine.state`` attribute to write (e.g. ``"consistency_weight"``).
        ramp: ``"sigmoid"``, ``"linear"``, ``"cosine"`` or ``"cosine_down"`` (see :data:`RAMPS`).
        length: ramp length, in steps of ``step_size`` iterations (or epochs).
        start_value: the value at ramp 0.
        end_value: the value at ramp 1.
        step_size: iterations (or epochs) per ramp step; 150 turns iterations into the reference code's "epochs".
        epoch_level: count epochs instead of iterations.
        save_history: also append every value to ``engine.state.param_history[param_name]``.

    Raises:
        ValueError: unknown ramp, negative length or non-positive step size.
    """

    def __init__(
        self,
        param_name: str,
        ramp: str = "sigmoid",
        length: float = 40.0,
        start_value: float = 0.0,
        end_value: float = 1.0,
        step_size: int = 1,
        epoch_level: bool = False,
        save_history: bool = False,
    ) -> None:
        if ramp not in RAMPS:
            raise ValueError(f"unknown ramp {ramp!r}; choose one of {sorted(RAMPS)}")
        if length < 0:
            raise ValueError(f"length must be non-negative, got {length}")
        if step_size < 1:
            raise ValueError(f"step_size must be at least 1, got {step_size}")
        super().__init__(param_name=param_name, save_history=save_history, create_new=True)
        self.ramp = ramp
        self.length = float(length)
        self.start_value = float(start_value)
        self.end_value = float(end_value)
        self.step_size = int(step_size)
        self.epoch_level = epoch_level

    def value(self, t: int) -> float:
        """The scheduled value after ``t`` completed iterations (or epochs).

        Args:
            t: completed iterations (epochs with ``epoch_level``), from 0.

        Returns:
            ``start_value + (end_value - start_value) * ramp(floor(t / step_size), length)``.
        """
        ramp = RAMPS[self.ramp](t // self.step_size, self.length)
        return self.start_value + (self.end_value - self.start_value) * ramp

    def get_param(self) -> float:
        """The value at the current ``event_index`` (set from the engine's counter by :meth:`__call__`)."""
        return self.value(self.event_index)

    def attach(
        self,
        engine: Engine,
        event: str | Events | CallableEventWithFilter | EventsList | None = None,
    ) -> None:
        """Attach to ``engine`` (default event: ``ITERATION_STARTED``, or ``EPOCH_STARTED`` with ``epoch_level``).

        The attribute is created on ``engine.state`` at once with the value for ``t = 0``, so that handlers reading it
        before the first event (e.g. a progress bar) find it.
        """
        if event is None:
            event = Events.EPOCH_STARTED if self.epoch_level else Events.ITERATION_STARTED
        super().attach(engine, event)
        setattr(engine.state, self.param_name, self.value(0))

    def __call__(self, engine: Engine) -> None:
        counter = engine.state.epoch if self.epoch_level else engine.state.iteration
        self.event_index = max(int(counter) - 1, 0)
        value = self.get_param()
        setattr(engine.state, self.param_name, value)
        if self.save_history:
            engine.state.param_history[self.param_name].append(value)  # type: ignore[attr-defined]

    @classmethod
    def simulate_values(cls, num_events: int, **scheduler_kwargs: Any) -> list[list[float]]:
        """``[[t, value(t)] for t in range(num_events)]`` (Ignite's helper for plotting a schedule).

        Args:
            num_events: number of iterations (or epochs) to simulate.
            scheduler_kwargs: constructor arguments.
        """
        scheduler = cls(**{key: value for key, value in scheduler_kwargs.items() if key != "save_history"})
        return [[t, scheduler.value(t)] for t in range(num_events)]
