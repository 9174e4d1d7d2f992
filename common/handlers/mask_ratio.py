"""DMGSA's dynamic mask ratio (DMR): an easy -> hard -> easy schedule written to ``engine.state.mask_ratio``.

``gamma(e) = sin((e / e_max)^rho * pi) * r`` with ``e`` the current epoch (1-based, as Ignite counts) and ``e_max``
the number of epochs: small at first, ``r`` at ``e / e_max = 2^(-1/rho)`` (epoch 71 of 100 for ``rho = 2``), and
exactly 0 in the last epoch, so that the network ends its training on unmasked inputs as it sees them at test time.
"""

from __future__ import annotations

import math

from ignite.engine import Engine, Events

__all__ = ["DynamicMaskRatio", "dynamic_mask_ratio"]


def dynamic_mask_ratio(epoch: int, max_epochs: int, rho: float = 2.0, max_ratio: float = 0.35) -> float:
    """``sin((epoch / max_epochs)^rho * pi) * max_ratio``, clipped at 0 (the sine's rounding below 0 at the end).

    Args:
        epoch: the current epoch, 1-based (``engine.state.epoch`` during an epoch).
        max_epochs: the number of epochs.
        rho: the exponent: larger values keep the ratio low for longer (the paper: 1 to 3, default 2).
        max_ratio: the peak ratio ``r`` (the paper: 0.15 to 0.5, default 0.35).

    Returns:
        The fraction of the input to mask.

    Raises:
        ValueError: an epoch outside ``[0, max_epochs]`` or a negative parameter.
    """
    if max_epochs < 1 or not 0 <= epoch <= max_epochs:
        raise ValueError(f"epoch must be in [0, max_epochs] with max_epochs >= 1, got {epoch} of {max_epochs}")
    if rho <= 0 or not 0 <= max_ratio <= 1:
        raise ValueError(f"rho must be positive and max_ratio in [0, 1], got rho={rho}, max_ratio={max_ratio}")
    if epoch == max_epochs:
        return 0.0  # sin(pi) is 1.2e-16 in floating point; the last epoch is unmasked by definition
    return max(0.0, math.sin((epoch / max_epochs) ** rho * math.pi) * max_ratio)


class DynamicMaskRatio:
    """Write the DMR schedule to ``engine.state.<state_name>`` at the start of every epoch (and at start-up).

    The value depends only on ``engine.state.epoch`` and ``engine.state.max_epochs``, so a resumed run and every
    process of a distributed run compute the same ratio without any state of their own. Ignite's
    ``LambdaStateScheduler`` counts its events instead, which a resumed run would restart from zero.

    Args:
        rho: see :func:`dynamic_mask_ratio`.
        max_ratio: see :func:`dynamic_mask_ratio`.
        fixed_ratio: when given, this constant is written instead of the schedule (the "no DMR" ablation: a fixed
            mask ratio throughout).
        state_name: the ``engine.state`` attribute to write.
    """

    def __init__(
        self,
        rho: float = 2.0,
        max_ratio: float = 0.35,
        fixed_ratio: float | None = None,
        state_name: str = "mask_ratio",
    ) -> None:
        dynamic_mask_ratio(0, 1, rho, max_ratio)  # validates the parameters
        if fixed_ratio is not None and not 0 <= fixed_ratio <= 1:
            raise ValueError(f"fixed_ratio must be in [0, 1], got {fixed_ratio}")
        self.rho = rho
        self.max_ratio = max_ratio
        self.fixed_ratio = fixed_ratio
        self.state_name = state_name

    def value(self, epoch: int, max_epochs: int) -> float:
        """The ratio of ``epoch`` (1-based) out of ``max_epochs``."""
        if self.fixed_ratio is not None:
            return float(self.fixed_ratio)
        return dynamic_mask_ratio(epoch, max_epochs, self.rho, self.max_ratio)

    def attach(self, engine: Engine) -> None:
        """Update the ratio at ``STARTED`` (a resumed run has its epoch by then) and at every ``EPOCH_STARTED``."""
        setattr(engine.state, self.state_name, 0.0)
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = min(max(engine.state.epoch, 1), engine.state.max_epochs)
        setattr(engine.state, self.state_name, self.value(epoch, engine.state.max_epochs))
