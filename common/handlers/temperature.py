"""DyBAC's temperature schedule: ``T(s) = max(T0 - 3 s, 1)`` written to ``engine.state`` and to the networks.

ASE-Net starts its kernel attention at ``T0 = 30`` (2D) or 34 (3D) and lowers it by 3 per step (Chen et al.'s
dynamic convolution anneals it so that every kernel learns before the attention sharpens). The official code stops at
``T = 1`` only when it hits 1 exactly, which 34 does (after 11 steps) but 30 never does (27, ..., 3, 0, -3: a
division by zero and then an inverted softmax); here the temperature is floored at ``min_temperature`` instead.

The step is ``s = floor(t / step_size)`` with ``t`` the iterations completed (``engine.state.iteration - 1`` at
``ITERATION_STARTED``), so a resumed run continues the schedule exactly without keeping state of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ignite.engine import Engine, Events
from ignite.handlers.state_param_scheduler import StateParamScheduler
from torch import nn

from common.networks.dybac import set_dybac_temperature

__all__ = ["DyBACTemperature", "dybac_temperature"]


def dybac_temperature(step: int, initial: float = 34.0, decrement: float = 3.0, minimum: float = 1.0) -> float:
    """``max(initial - decrement * step, minimum)``.

    Args:
        step: schedule steps completed (from 0).
        initial: ``T0`` (30 in 2D, 34 in 3D).
        decrement: the decrease per step (3).
        minimum: the floor (1).

    Raises:
        ValueError: a negative step, a non-positive floor, or a floor above ``initial``.
    """
    if step < 0 or minimum <= 0 or minimum > initial or decrement < 0:
        raise ValueError(
            f"need step >= 0, decrement >= 0 and 0 < minimum <= initial; got {step}, {decrement}, {minimum}, {initial}"
        )
    return max(initial - decrement * step, minimum)


class DyBACTemperature(StateParamScheduler):
    """Write the DyBAC temperature to ``engine.state.<param_name>`` and set it in every DyBAC of ``networks``.

    Args:
        networks: the modules whose DyBAC blocks follow the schedule (segmenter, its EMA teacher, discriminators).
        initial: ``T0`` (30 in 2D, 34 in 3D).
        step_size: iterations per schedule step (e.g. the epoch length).
        decrement: the decrease per step (3).
        minimum: the floor (1).
        param_name: the ``engine.state`` attribute.

    Raises:
        ValueError: invalid schedule parameters or a non-positive step size.
    """

    def __init__(
        self,
        networks: Sequence[nn.Module],
        initial: float = 34.0,
        step_size: int = 1,
        decrement: float = 3.0,
        minimum: float = 1.0,
        param_name: str = "dybac_temperature",
    ) -> None:
        dybac_temperature(0, initial, decrement, minimum)
        if step_size < 1:
            raise ValueError(f"step_size must be at least 1, got {step_size}")
        super().__init__(param_name=param_name, save_history=False, create_new=True)
        self.networks = list(networks)
        self.initial = float(initial)
        self.step_size = int(step_size)
        self.decrement = float(decrement)
        self.minimum = float(minimum)

    def value(self, t: int) -> float:
        """The temperature after ``t`` completed iterations."""
        return dybac_temperature(t // self.step_size, self.initial, self.decrement, self.minimum)

    def get_param(self) -> float:
        return self.value(self.event_index)

    def attach(self, engine: Engine, event: str | Events = Events.ITERATION_STARTED) -> None:  # type: ignore[override]
        """Attach at ``ITERATION_STARTED`` and apply ``T0`` at once (before the first iteration and any handler)."""
        super().attach(engine, event)
        self._apply(engine, self.value(0))

    def _apply(self, engine: Engine, value: float) -> None:
        setattr(engine.state, self.param_name, value)
        for network in self.networks:
            set_dybac_temperature(network, value)

    def __call__(self, engine: Engine) -> None:
        self.event_index = max(int(engine.state.iteration) - 1, 0)
        self._apply(engine, self.get_param())
