"""The mean teacher: an Ignite ``EMAHandler`` model driven by the mean-teacher momentum rule.

Mean-teacher methods (UA-MT, UG-MCL, ASE-Net, ...) update the teacher after every student step as
``theta_T <- alpha theta_T + (1 - alpha) theta_S`` with ``alpha = min(1 - 1/(t + 1), alpha_max)``
(``alpha_max = 0.99``), ``t`` the number of steps completed before this one: the teacher starts as a copy of the
student (``alpha = 0``) and is a true running average until the exponential average takes over. Ignite's
``EMAHandler`` updates ``theta_T <- (1 - m) theta_T + m theta_S`` with the momentum ``m = 1 - alpha`` read from
``engine.state``; :class:`EMAMomentumScheduler` writes that momentum and :class:`EMATeacher` attaches both, scheduler
first.

In a bundle config the teacher network has its own id, built by :func:`teacher_copy` and handed to the handler
(``"teacher": "$common.handlers.teacher_copy(@network)"``, ``EMATeacher(model=@network, teacher=@teacher)``), so that
the trainer, the checkpoint and the validator reference it by name, not by the handler's place in the list.
"""

from __future__ import annotations

import copy

from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.handlers import EMAHandler
from ignite.handlers.state_param_scheduler import StateParamScheduler
from torch import nn

__all__ = ["EMAMomentumScheduler", "EMATeacher", "mean_teacher_alpha", "teacher_copy"]


def _unwrapped(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def teacher_copy(model: nn.Module) -> nn.Module:
    """The mean teacher before any update: a copy of the student whose parameters carry no gradient.

    What Ignite's ``EMAHandler`` builds as its ``ema_model`` (a deep copy of the student, ``DistributedDataParallel``
    unwrapped, parameters detached), as an object of its own for :class:`EMATeacher`'s ``teacher``.

    Args:
        model: the student (or its ``DistributedDataParallel`` wrapper).
    """
    teacher = copy.deepcopy(_unwrapped(model))
    for param in teacher.parameters():
        param.detach_()
    return teacher


def mean_teacher_alpha(t: int, alpha_max: float = 0.99) -> float:
    """``min(1 - 1/(t + 1), alpha_max)``: the teacher's decay after ``t`` completed steps.

    Args:
        t: student steps completed before this update (0 for the first update).
        alpha_max: the decay once the running average has warmed up.
    """
    return min(1.0 - 1.0 / (t + 1), alpha_max)


class EMAMomentumScheduler(StateParamScheduler):
    """Write Ignite's EMA momentum ``1 - min(1 - 1/(t + 1), alpha_max)`` to ``engine.state.<param_name>``.

    ``t = engine.state.iteration - 1``: at ``ITERATION_COMPLETED`` of the first iteration ``t = 0`` (momentum 1, the
    teacher becomes the student), as the reference code's ``update_ema_variables(..., global_step=iter_num)`` does
    before ``iter_num`` is incremented. The value depends only on the engine's counter, so a resumed run continues it.

    Args:
        alpha_max: the decay after warm-up (0.99 in the mean-teacher methods).
        param_name: the ``engine.state`` attribute ``EMAHandler`` reads.

    Raises:
        ValueError: ``alpha_max`` outside ``(0, 1)``.
    """

    def __init__(self, alpha_max: float = 0.99, param_name: str = "ema_momentum") -> None:
        if not 0.0 < alpha_max < 1.0:
            raise ValueError(f"alpha_max must be in (0, 1), got {alpha_max}")
        super().__init__(param_name=param_name, save_history=False, create_new=True)
        self.alpha_max = float(alpha_max)

    def get_param(self) -> float:
        """The momentum for ``t = event_index`` completed steps."""
        return 1.0 - mean_teacher_alpha(self.event_index, self.alpha_max)

    def __call__(self, engine: Engine) -> None:
        self.event_index = max(int(engine.state.iteration) - 1, 0)
        setattr(engine.state, self.param_name, self.get_param())


class EMATeacher(EMAHandler):
    """Ignite's ``EMAHandler`` whose momentum follows the mean-teacher rule; ``ema_model`` is the teacher.

    Checkpoint ``ema_model`` with the student (it is an ``nn.Module``): a resumed run restores it, and the momentum
    schedule resumes from the engine's iteration counter.

    Args:
        model: the student (``DistributedDataParallel`` is unwrapped by ``EMAHandler``).
        alpha: the decay after warm-up, ``alpha_max`` of the rule (0.99).
        handle_buffers: ``EMAHandler``'s buffer policy. ``"ema_train"`` (default) keeps the teacher in train mode with
            its own batch-norm statistics, as the reference code does (its teacher runs in train mode); ``"copy"``
            copies the student's buffers after every update.
        momentum_name: the ``engine.state`` attribute holding the momentum.
        teacher: the teacher network to update, e.g. :func:`teacher_copy` of the student at a config id of its own
            (None: ``EMAHandler``'s own copy of the student); ``ema_model`` is then this object. It must have the
            student's tensors (names and shapes); its parameters are detached and it is put in train mode
            (``"ema_train"``) or eval mode as ``EMAHandler`` does with its own copy.

    Raises:
        ValueError: ``teacher`` has other tensors than the student.
    """

    def __init__(
        self,
        model: nn.Module,
        alpha: float = 0.99,
        handle_buffers: str = "ema_train",
        momentum_name: str = "ema_momentum",
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__(model, momentum=1.0 - alpha, handle_buffers=handle_buffers)
        if teacher is not None:
            teacher = _unwrapped(teacher)
            shapes = {name: tuple(t.shape) for name, t in teacher.state_dict().items()}
            expected = {name: tuple(t.shape) for name, t in self.model.state_dict().items()}
            if shapes != expected:
                different = sorted(set(shapes.items()) ^ set(expected.items()))[:5]
                raise ValueError(f"the teacher's tensors differ from the student's: {different}")
            for param in teacher.parameters():
                param.detach_()
            teacher.train(self.handle_buffers == "ema_train")
            self.ema_model = teacher  # EMAHandler's own copy (made above) is dropped
        self.alpha = float(alpha)
        self.momentum_name = momentum_name
        self.momentum_scheduler = EMAMomentumScheduler(alpha_max=alpha, param_name=momentum_name)

    def attach(
        self,
        engine: Engine,
        name: str | None = None,
        warn_if_exists: bool = False,
        event: str | Events | CallableEventWithFilter | EventsList = Events.ITERATION_COMPLETED,
    ) -> None:
        """Attach the momentum scheduler, then the EMA update, to ``event`` (so the update reads the new momentum).

        Args:
            engine: the trainer.
            name: the momentum attribute (default: ``momentum_name``).
            warn_if_exists: passed to ``EMAHandler.attach`` (the scheduler creates the attribute first).
            event: when to update the teacher (every iteration).
        """
        name = name or self.momentum_name
        if name != self.momentum_scheduler.param_name:
            self.momentum_scheduler = EMAMomentumScheduler(alpha_max=self.alpha, param_name=name)
        self.momentum_scheduler.attach(engine, event)
        super().attach(engine, name=name, warn_if_exists=warn_if_exists, event=event)
