"""The base of semi-supervised trainers: MONAI's ``SupervisedTrainer`` fed labeled + unlabeled batches.

A method subclasses :class:`SemiSupervisedTrainer` and overrides ``_iteration`` only; the base gives it the pieces
every semi-supervised step needs, so that each method's ``_iteration`` reads as its paper's loss:

- :meth:`SemiSupervisedTrainer.split_batch`: a batch of :class:`common.data.LabeledUnlabeledLoader` (``image`` for
  all cases, labeled first; ``label`` for the labeled part; ``labeled_batch_size``) moved to the device;
- :meth:`SemiSupervisedTrainer.state_value`: a schedule written to ``engine.state`` by a handler (ramped consistency
  weight, uncertainty threshold, ...), with a clear error when the handler is missing;
- :meth:`SemiSupervisedTrainer.autocast` and :meth:`SemiSupervisedTrainer.optimize`: mixed precision, zeroing,
  backward and optimizer step, firing MONAI's iteration events as ``SupervisedTrainer`` does;
- the data loader's ``set_epoch`` is called at every epoch start, so ``DistributedSampler`` shuffles differ per epoch;
- ``teacher``: the mean teacher (e.g. ``common.handlers.EMATeacher(...).ema_model``) for methods that have one.

Outputs use MONAI's keys (``image``, ``label``, ``pred``, ``loss``) plus the loss terms, so stock handlers
(``StatsHandler``, ``CheckpointSaver``, ``ValidationHandler``, TensorBoard, MLflow) work unchanged. Training outputs are
not decollated by default (``decollate=False``): the labeled part of a batch is smaller than the batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer

from common.data.semi_supervised import LABELED_BATCH_SIZE_KEY

__all__ = ["SemiSupervisedBatch", "SemiSupervisedTrainer", "split_semi_supervised_batch"]


class SemiSupervisedBatch(NamedTuple):
    """A semi-supervised batch on the device: ``images`` ``(B, ...)`` (labeled first), ``labels`` of the first
    ``num_labeled`` cases."""

    images: torch.Tensor
    labels: torch.Tensor
    num_labeled: int


def split_semi_supervised_batch(
    engine: Engine,
    batchdata: dict[str, Any] | None,
    image_key: str = Keys.IMAGE,
    label_key: str = Keys.LABEL,
    need_unlabeled: bool = False,
) -> SemiSupervisedBatch:
    """Move a batch of :class:`common.data.LabeledUnlabeledLoader` to the engine's device, labeled cases first.

    Args:
        engine: a MONAI trainer (its ``state.device``, ``non_blocking`` and ``to_kwargs`` are used).
        batchdata: ``{"image": (B, ...), "label": (L, ...), "labeled_batch_size": L}``.
        image_key: batch key of the images.
        label_key: batch key of the labels.
        need_unlabeled: the method needs unlabeled cases in every batch (``L < B``).

    Raises:
        ValueError: no batch, a missing key, or inconsistent sizes.
    """
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    missing = [key for key in (image_key, label_key, LABELED_BATCH_SIZE_KEY) if key not in batchdata]
    if missing:
        raise ValueError(
            f"a semi-supervised batch needs {missing} (use common.data.LabeledUnlabeledLoader); got keys "
            f"{sorted(batchdata)}"
        )
    num_labeled = int(batchdata[LABELED_BATCH_SIZE_KEY])
    device, to_kwargs = engine.state.device, engine.to_kwargs  # type: ignore[attr-defined]
    images = batchdata[image_key].to(device, non_blocking=engine.non_blocking, **to_kwargs)  # type: ignore[attr-defined]
    labels = batchdata[label_key].to(device, non_blocking=engine.non_blocking, **to_kwargs)  # type: ignore[attr-defined]
    most = images.shape[0] - 1 if need_unlabeled else images.shape[0]
    if labels.shape[0] != num_labeled or not 0 < num_labeled <= most:
        needs = " (the method needs labeled and unlabeled cases in every batch)" if need_unlabeled else ""
        raise ValueError(
            f"inconsistent batch: {images.shape[0]} images, {labels.shape[0]} labels, labeled_batch_size "
            f"{num_labeled}{needs}"
        )
    return SemiSupervisedBatch(images, labels, num_labeled)


class SemiSupervisedTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for batches of labeled and unlabeled cases; subclasses implement ``_iteration``.

    Args:
        device: the device of the networks.
        max_epochs: epochs to train (``max_epochs * epoch_length`` is the iteration budget).
        train_data_loader: a :class:`common.data.LabeledUnlabeledLoader` (or any iterable of such batches).
        network: the student network.
        optimizer: the student's optimizer.
        loss_function: the supervised loss on the labeled part.
        teacher: the teacher network for mean-teacher methods (None when the method has none).
        image_key: batch key of the images.
        label_key: batch key of the labels.
        epoch_length: iterations per epoch (default: ``len(train_data_loader)``).
        decollate: decollate the outputs (False: the labeled part is smaller than the batch).
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
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,  # type: ignore[arg-type]
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            decollate=decollate,
            **kwargs,
        )
        self.teacher = teacher
        self.image_key = image_key
        self.label_key = label_key
        if hasattr(train_data_loader, "set_epoch"):
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: train_data_loader.set_epoch(engine.state.epoch))

    def split_batch(self, batchdata: dict[str, Any]) -> SemiSupervisedBatch:
        """Move a semi-supervised batch to the device and say how many cases are labeled.

        Args:
            batchdata: ``{"image": (B, ...), "label": (L, ...), "labeled_batch_size": L}``.

        Returns:
            :class:`SemiSupervisedBatch`.

        Raises:
            ValueError: no batch, a missing key, or inconsistent sizes.
        """
        return split_semi_supervised_batch(self, batchdata, self.image_key, self.label_key)

    def state_value(self, name: str) -> Any:
        """A value a handler writes to ``engine.state`` (e.g. ``"consistency_weight"``).

        Raises:
            AttributeError: no handler wrote it (the message says which handler to attach).
        """
        value = getattr(self.state, name, None)
        if value is None:
            raise AttributeError(
                f"engine.state.{name} is not set: attach the handler that schedules it (e.g. "
                f'common.handlers.RampScheduler(param_name="{name}", ...)) to the trainer'
            )
        return value

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context when ``amp`` is on (and a grad scaler exists), else a no-op context."""
        if self.amp and self.scaler is not None:
            return torch.autocast("cuda", **self.amp_kwargs)
        return contextlib.nullcontext()

    def zero_grad(self, optimizers: Sequence[Optimizer] | None = None) -> None:
        """Zero the gradients of ``optimizers`` (default: the trainer's optimizer)."""
        for optimizer in optimizers or (self.optimizer,):
            optimizer.zero_grad(set_to_none=self.optim_set_to_none)

    def optimize(self, loss: torch.Tensor, optimizer: Optimizer | Sequence[Optimizer] | None = None) -> None:
        """Back-propagate ``loss`` and step ``optimizer`` (default: the trainer's), through the grad scaler with AMP.

        ``optimizer`` may be a sequence (co-training methods with one optimizer per network, e.g. CPS / DFCPS): one
        backward pass, then every optimizer steps (through the one grad scaler, updated once, with AMP).

        Fires ``LOSS_COMPLETED`` before and ``BACKWARD_COMPLETED`` after the backward pass, as MONAI's trainers do.
        """
        optimizer = optimizer or self.optimizer
        optimizers = tuple(optimizer) if isinstance(optimizer, Sequence) else (optimizer,)
        self.fire_event(IterationEvents.LOSS_COMPLETED)
        if self.amp and self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.fire_event(IterationEvents.BACKWARD_COMPLETED)
            for each in optimizers:
                self.scaler.step(each)
            self.scaler.update()
        else:
            loss.backward()
            self.fire_event(IterationEvents.BACKWARD_COMPLETED)
            for each in optimizers:
                each.step()

    def _iteration(self, engine: SemiSupervisedTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        """One training step of the method: subclasses implement it (the only method-specific part)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _iteration (the method's training step)")
