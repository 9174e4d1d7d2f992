"""The one trainer base of the collection: MONAI's ``SupervisedTrainer`` with the step, AMP and schedule lookup.

A method engine subclasses :class:`MethodTrainer` (directly, or through
:class:`common.engines.MultiDiscriminatorTrainer` for adversarial methods) and writes its training step only; the
base gives that step every shared piece, so that it reads as the paper's loss:

- :meth:`MethodTrainer.split_batch`: a batch of :class:`common.data.LabeledUnlabeledLoader` (``image`` for all
  cases, labeled first; ``label`` for the labeled part; ``labeled_batch_size``) moved to the device;
- :meth:`MethodTrainer.state_value` (and :func:`schedule_value` for objects that hold no engine): a schedule a
  handler writes to ``engine.state`` (ramped consistency weight, uncertainty threshold, mask ratio, ...); a missing
  one raises an error naming the schedule and the handler that should write it, never a silent default;
- :meth:`MethodTrainer.autocast`, :meth:`MethodTrainer.zero_grad` and :meth:`MethodTrainer.optimize`: mixed
  precision, zeroing, backward and optimizer step(s), firing MONAI's iteration events as ``SupervisedTrainer`` does;
- the AMP gradient scalers: MONAI's ``scaler`` for the trainer's optimizer(s), and one scaler of its own per name of
  :meth:`MethodTrainer.own_scaler_names` (each discriminator's), in ``d_scalers``; both are attributes of the
  engine, which :class:`common.handlers.GradScalerStates` saves in checkpoints (``"scaler"``, ``"d_scalers.<name>"``);
- the data loader's ``set_epoch`` is called at every epoch start, so ``DistributedSampler`` shuffles differ per epoch;
- ``teacher``: the mean teacher for methods that have one (in a config: ``common.handlers.teacher_copy(@network)`` at
  an id of its own, updated by the inline :class:`common.handlers.EMATeacher` handler).

Outputs use MONAI's keys (``image``, ``label``, ``pred``, ``loss``) plus the loss terms, in the form MONAI's
stock handlers read from ``SupervisedTrainer``: a list of dicts, ``loss`` in the first, so
``monai.handlers.from_engine(["loss"], first=True)`` (the transform of MONAI's bundle configs and of its default
``--tracking mlflow`` settings) is the loss. MONAI gets that list by decollating every batch into one dict per image
(``decollate=True``), which no handler of the training configs needs and which cost CMUNeXt's quick step more CPU
time than the step itself (+145 %); with ``decollate=False`` (the default here) the whole batch's output stays one
dict, handed on as a one-item list ``[output]`` (see :meth:`MethodTrainer.iteration_output`).
:class:`SupervisedMethodTrainer` is MONAI's supervised step on this base (the supervised baselines and CMUNeXt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer

from common.engines.semi_supervised import SemiSupervisedBatch, split_semi_supervised_batch

__all__ = ["MethodTrainer", "SupervisedMethodTrainer", "schedule_value"]


def schedule_value(state: Any, name: str, handler: str | None = None, owner: str | None = None, hint: str = "") -> Any:
    """The schedule ``state.<name>`` that a handler writes (the one way every engine reads a schedule).

    Args:
        state: an engine's ``state``.
        name: the attribute, e.g. ``"consistency_weight"``.
        handler: the handler that should write it, as the error names it (default
            ``common.handlers.RampScheduler(param_name="<name>", ...)``).
        owner: who reads it (e.g. ``"discriminator 'd1'"``), named first in the error.
        hint: more advice appended to the error (e.g. how to do without the schedule).

    Raises:
        AttributeError: the value is missing or None: no handler wrote it.
    """
    value = getattr(state, name, None)
    if value is None:
        handler = handler or f'common.handlers.RampScheduler(param_name="{name}", ...)'
        prefix = f"{owner}: " if owner else ""
        raise AttributeError(f"{prefix}engine.state.{name} is not set: attach {handler} to the trainer{hint}")
    return value


class MethodTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` whose ``_iteration`` is a method's training step (see the module docstring).

    Args:
        device: the device of the networks.
        max_epochs: epochs to train (``max_epochs * epoch_length`` is the iteration budget).
        train_data_loader: the training batches (a :class:`common.data.LabeledUnlabeledLoader` for semi-supervised
            methods).
        network: the (student) network.
        optimizer: its optimizer.
        loss_function: the supervised loss.
        teacher: the teacher network for mean-teacher methods (None when the method has none).
        image_key: batch key of the images (:meth:`split_batch`).
        label_key: batch key of the labels (:meth:`split_batch`).
        epoch_length: iterations per epoch (default: ``len(train_data_loader)``).
        decollate: True: MONAI's decollation of the batch and the output into one dict per image (for a
            ``postprocessing`` of ``monai.transforms`` or per-image training metrics); False (default): the output
            stays one dict for the whole batch, as the one item of a list (:meth:`iteration_output`), and the batch
            stays as loaded (the labeled part of a semi-supervised batch is smaller than the batch, so it cannot be
            split per image anyway).
        kwargs: other arguments of ``monai.engines.SupervisedTrainer`` (``train_handlers``, ``amp``, ``inferer``, ...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        teacher: nn.Module | None = None,
        image_key: str = Keys.IMAGE,
        label_key: str = Keys.LABEL,
        epoch_length: int | None = None,
        decollate: bool = False,
        **kwargs: Any,
    ) -> None:
        self.decollate_per_image = bool(decollate)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,  # type: ignore[arg-type]
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            decollate=True,  # always calls _register_decollate, which picks per-image or one-item (below)
            **kwargs,
        )
        self.teacher = teacher
        self.image_key = image_key
        self.label_key = label_key
        self.d_scalers: dict[str, torch.amp.GradScaler] = {}
        if hasattr(train_data_loader, "set_epoch"):
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: train_data_loader.set_epoch(engine.state.epoch))

    @staticmethod
    def iteration_output(output: Any) -> Any:
        """The output handlers get without per-image decollation: a dict becomes the one item of a list.

        MONAI's stock handlers read a trainer's output as a decollated list, the batch's loss in every item
        (``from_engine(["loss"], first=True)`` is ``output[0]["loss"]``; on a bare dict it returns a 1-tuple, which
        ``MLFlowHandler`` cannot log and ``StatsHandler`` skips). The one item holds the whole batch: ``pred`` and
        ``label`` stay batch-first tensors (``output[0]["pred"]`` is ``(B, C, *spatial)``). As MONAI's decollation,
        it detaches the tensors (MONAI's supervised step leaves ``loss`` and ``pred`` on the spent graph, which would
        stay alive until the next step). A list (already decollated) or anything else is returned as it is.

        Args:
            output: the step's ``engine.state.output``.
        """
        if not isinstance(output, dict):
            return output
        return [{k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in output.items()}]

    def _register_decollate(self) -> None:
        """At ``MODEL_COMPLETED``, where MONAI decollates: MONAI's per-image decollation with ``decollate=True``,
        else :meth:`iteration_output` (registered at the same place, before the handlers, so every handler sees it)."""
        if self.decollate_per_image:
            super()._register_decollate()
            return

        @self.on(IterationEvents.MODEL_COMPLETED)
        def _output_as_list(engine: MethodTrainer) -> None:
            engine.state.output = engine.iteration_output(engine.state.output)

    def own_scaler_names(self) -> Sequence[str]:
        """Names of the optimizers that get a gradient scaler of their own with AMP (none here; each discriminator's
        in :class:`common.engines.MultiDiscriminatorTrainer`), in ``d_scalers[name]``."""
        return ()

    def run(self) -> None:  # type: ignore[override]
        """Run the training; with ``amp``, MONAI's ``scaler`` plus one scaler per :meth:`own_scaler_names`."""
        self.d_scalers = {name: torch.amp.GradScaler("cuda") for name in self.own_scaler_names()} if self.amp else {}
        super().run()

    def split_batch(self, batchdata: dict[str, Any], need_unlabeled: bool = False) -> SemiSupervisedBatch:
        """Move a semi-supervised batch to the device and say how many cases are labeled.

        Args:
            batchdata: ``{"image": (B, ...), "label": (L, ...), "labeled_batch_size": L}``.
            need_unlabeled: the method needs unlabeled cases in every batch (``L < B``).

        Returns:
            :class:`common.engines.SemiSupervisedBatch`.

        Raises:
            ValueError: no batch, a missing key, or inconsistent sizes.
        """
        return split_semi_supervised_batch(self, batchdata, self.image_key, self.label_key, need_unlabeled)

    def state_value(self, name: str, handler: str | None = None, hint: str = "") -> Any:
        """A schedule a handler writes to ``engine.state`` (e.g. ``"consistency_weight"``): :func:`schedule_value`.

        Raises:
            AttributeError: no handler wrote it (the message names the schedule and the handler to attach).
        """
        return schedule_value(self.state, name, handler=handler, hint=hint)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context when ``amp`` is on (and a grad scaler exists), else a no-op context."""
        if self.amp and self.scaler is not None:
            return torch.autocast("cuda", **self.amp_kwargs)
        return contextlib.nullcontext()

    def zero_grad(self, optimizers: Sequence[Optimizer] | None = None) -> None:
        """Zero the gradients of ``optimizers`` (default: the trainer's optimizer)."""
        for optimizer in optimizers or (self.optimizer,):
            optimizer.zero_grad(set_to_none=self.optim_set_to_none)

    def optimize(
        self,
        loss: torch.Tensor,
        optimizer: Optimizer | Sequence[Optimizer] | None = None,
        scaler_name: str | None = None,
        fire_events: bool = True,
    ) -> None:
        """Back-propagate ``loss`` and step ``optimizer`` (default: the trainer's), through a grad scaler with AMP.

        ``optimizer`` may be a sequence (co-training methods with one optimizer per network, e.g. CPS / DFCPS): one
        backward pass, then every optimizer steps (through the one grad scaler, updated once, with AMP).

        Args:
            loss: the scalar to back-propagate.
            optimizer: the optimizer(s) to step.
            scaler_name: None: MONAI's ``scaler``; a name of :meth:`own_scaler_names`: that optimizer's own scaler.
            fire_events: fire ``LOSS_COMPLETED`` before and ``BACKWARD_COMPLETED`` after the backward pass, as MONAI's
                trainers do, so that gradient handlers (clipping, norms) act on this step's gradients; False for
                inner steps no handler should see (a discriminator's).
        """
        optimizer = optimizer or self.optimizer
        optimizers = tuple(optimizer) if isinstance(optimizer, Sequence) else (optimizer,)
        if scaler_name is None:
            scaler = self.scaler if self.amp else None
        else:
            scaler = self.d_scalers.get(scaler_name)
        if fire_events:
            self.fire_event(IterationEvents.LOSS_COMPLETED)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if fire_events:
            self.fire_event(IterationEvents.BACKWARD_COMPLETED)
        for each in optimizers:
            if scaler is not None:
                scaler.step(each)
            else:
                each.step()
        if scaler is not None:
            scaler.update()

    def _iteration(self, engine: MethodTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        """One training step of the method: subclasses implement it (the only method-specific part)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _iteration (the method's training step)")


class SupervisedMethodTrainer(MethodTrainer):
    """MONAI's supervised step (``SupervisedTrainer._iteration``: forward, loss, backward, step) on the trainer base.

    The same arguments and training as ``monai.engines.SupervisedTrainer``; what the base adds: the output handlers
    read without per-image decollation (``decollate=False``, the default; :meth:`MethodTrainer.iteration_output`),
    ``set_epoch`` of a loader that has one, and the base's AMP scalers. The supervised baselines and CMUNeXt train
    with it.
    """

    _iteration = SupervisedTrainer._iteration  # type: ignore[assignment]
