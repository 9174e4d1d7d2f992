"""A trainer with one segmenter and any number of discriminators, each with its own inputs and optimizer.

One iteration of :class:`MultiDiscriminatorTrainer`, in the order of ASE-Net's official code
(``train_ASE-Net_3D.py``: discriminators first, then the segmenter):

1. the discriminators' step: the segmenter, in **eval mode** and without gradient, produces the discriminators'
   inputs (:meth:`MultiDiscriminatorTrainer.discriminator_outputs`; by default the outputs of
   :meth:`MultiDiscriminatorTrainer.segmenter_step`); each discriminator ``D_i``, in **train mode**, scores its real
   and its fake inputs in two separate forward passes (so that its batch-norm statistics never mix real and fake
   cases) and takes one optimizer step on ``L_d_i = (L_adv(D_i(real), real) + L_adv(D_i(fake), fake)) / 2``;
2. the segmenter step, the segmenter in train mode: :meth:`MultiDiscriminatorTrainer.segmenter_step` runs it and
   returns its outputs and weighted loss terms (by default the supervised loss of ``network(image)`` against
   ``label``); for every discriminator, frozen and in **eval mode** (no dropout, running batch-norm statistics), its
   input builder picks the fake from those outputs and the adversarial term ``w_i * L_adv(D_i(fake), real)`` (the
   segmenter wants its fakes taken for real) is added. The segmenter takes one optimizer step on the sum:
   ``min_G L_pa - sum_i w_i L_d_i`` in the usual non-saturating form.

DMGSA (two discriminators on its reconstructed multi-order images and gradients) subclasses it with its own segmenter
step; ASE-Net's two discriminators (labeled vs unlabeled predictions, teacher vs noisy student) fit the same shape:
their input builders return ``(prediction, image)`` tuples, passed to the discriminator as positional arguments.

It builds on the collection's trainer base :class:`common.engines.MethodTrainer` (MONAI's ``SupervisedTrainer``: the
optimizer steps, AMP with one gradient scaler per discriminator besides the segmenter's, schedule lookup) rather than
on MONAI's ``AdversarialTrainer``: the latter has one discriminator, and it keeps its networks and optimizers in
``engine.state`` and lists them among the engine's ``state_dict`` keys, so a trainer checkpoint would pickle whole
modules instead of holding plain state (the project's checkpoints load with ``weights_only=True``).

The output holds MONAI's standard keys (``image``, ``label``, ``pred``, ``loss``) plus every loss term under its name
and each discriminator's loss under ``d_<name>``, so stock handlers (StatsHandler, TensorBoard, checkpoints) work
and the terms can be logged. Discriminators and their optimizers are plain objects of the config: list them in the
checkpoint's ``save_dict`` to save and resume them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.losses import PatchAdversarialLoss
from monai.utils.enums import CommonKeys as Keys
from torch.nn.parallel import DistributedDataParallel
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from common.engines.base import MethodTrainer, schedule_value

__all__ = ["DiscriminatorSpec", "MultiDiscriminatorTrainer", "discriminator_logits"]

Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def _as_tuple(value: Inputs) -> tuple[torch.Tensor, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def discriminator_logits(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The logits of a discriminator's output (MONAI's ``PatchDiscriminator`` returns its features, logits last)."""
    return output[-1] if isinstance(output, list | tuple) else output


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Turn off the gradients of ``module``'s parameters inside the block (restoring them after)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class DiscriminatorSpec:
    """One discriminator of a :class:`MultiDiscriminatorTrainer`: network, optimizer, inputs and weight.

    Args:
        name: names its outputs: ``adv_<name>`` (the segmenter's adversarial term) and ``d_<name>`` (its own loss).
        network: the discriminator (may be wrapped in ``DistributedDataParallel``); it returns logits, or a list of
            features whose last element is the logits.
        optimizer: the discriminator's optimizer.
        inputs: which outputs of the segmenter step it compares: a pair of keys ``(real_key, fake_key)``, or a
            callable ``outputs -> (real, fake)`` where each side is a tensor or a tuple of tensors (passed to the
            discriminator as positional arguments, e.g. ``(prediction, image)``).
        weight: the adversarial term's weight in the segmenter's loss.
        loss_function: the adversarial criterion ``(logits, target_is_real, for_discriminator) -> loss``; default
            MONAI's ``PatchAdversarialLoss(criterion="bce")`` (sigmoid + binary cross-entropy).
        weight_key: an ``engine.state`` attribute (written by a schedule handler, e.g. a ramped consistency weight)
            that multiplies ``weight`` at every iteration; None: ``weight`` alone.
    """

    def __init__(
        self,
        name: str,
        network: torch.nn.Module,
        optimizer: Optimizer,
        inputs: Sequence[str] | Callable[[Mapping[str, Any]], tuple[Inputs, Inputs]],
        weight: float = 1.0,
        loss_function: Callable | None = None,
        weight_key: str | None = None,
    ) -> None:
        if not name:
            raise ValueError("a discriminator needs a name")
        if not callable(inputs) and (isinstance(inputs, str) or len(inputs) != 2):
            raise ValueError(f"inputs must be a (real_key, fake_key) pair or a callable, got {inputs!r}")
        if weight < 0:
            raise ValueError(f"the adversarial weight must be non-negative, got {weight}")
        self.name = name
        self.network = network
        self.optimizer = optimizer
        self.inputs = inputs
        self.weight = float(weight)
        self.loss_function = loss_function or PatchAdversarialLoss(criterion="bce")
        self.weight_key = weight_key

    def current_weight(self, state: Any) -> float:
        """``weight``, times ``state.<weight_key>`` when a key is given.

        Raises:
            AttributeError: the key is not on the state (the handler that writes it is not attached).
        """
        if self.weight_key is None:
            return self.weight
        return self.weight * float(schedule_value(state, self.weight_key, owner=f"discriminator {self.name!r}"))

    @property
    def module(self) -> torch.nn.Module:
        """The discriminator without its ``DistributedDataParallel`` wrapper (the segmenter step runs it frozen)."""
        return self.network.module if isinstance(self.network, DistributedDataParallel) else self.network

    def real_and_fake(self, outputs: Mapping[str, Any]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The ``(real, fake)`` inputs from the segmenter step's outputs, each as a tuple of tensors.

        Raises:
            KeyError: a key names no output (the message lists the outputs).
        """
        if callable(self.inputs):
            real, fake = self.inputs(outputs)
        else:
            missing = [key for key in self.inputs if key not in outputs]
            if missing:
                raise KeyError(f"discriminator {self.name!r}: no output {missing} among {sorted(outputs)}")
            real, fake = outputs[self.inputs[0]], outputs[self.inputs[1]]
        real, fake = _as_tuple(real), _as_tuple(fake)
        if len(real) != len(fake):
            raise ValueError(f"discriminator {self.name!r}: real and fake inputs differ in number")
        return real, fake

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight}, inputs={self.inputs!r})"


class MultiDiscriminatorTrainer(MethodTrainer):
    """Discriminators then segmenter, one optimizer step each per iteration (see the module docstring).

    Args:
        device: the device to train on.
        max_epochs: the number of epochs.
        train_data_loader: the training data loader.
        network: the segmenter (may be wrapped in ``DistributedDataParallel``).
        optimizer: the segmenter's optimizer.
        loss_function: the supervised loss ``(pred, label) -> loss`` of the default segmenter step.
        discriminators: the discriminators, each a :class:`DiscriminatorSpec` (none: plain supervised training).
        decollate: decollate the batch and the output after each iteration (MONAI's default).
        kwargs: other arguments of :class:`common.engines.MethodTrainer` / ``monai.engines.SupervisedTrainer``
            (``epoch_length``, ``prepare_batch``, ``inferer`` of the default segmenter step, ``train_handlers``,
            ``amp``: mixed precision on CUDA, with one gradient scaler per optimizer, ...).

    Raises:
        ValueError: two discriminators of one name.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        discriminators: Sequence[DiscriminatorSpec] = (),
        decollate: bool = True,
        **kwargs: Any,
    ) -> None:
        names = [spec.name for spec in discriminators]
        if len(set(names)) != len(names):
            raise ValueError(f"discriminator names must be unique, got {names}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            decollate=decollate,
            **kwargs,
        )
        self.discriminators = list(discriminators)
        self._d_losses: dict[str, torch.Tensor] = {}

    def own_scaler_names(self) -> Sequence[str]:
        """Each discriminator's name: with AMP, every discriminator's optimizer has a gradient scaler of its own."""
        return [spec.name for spec in self.discriminators]

    def segmenter_step(
        self, engine: MultiDiscriminatorTrainer, batchdata: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The segmenter's forward pass and loss terms (runs under autocast when ``amp``).

        Override it for a method's own step; the default is supervised training.

        Args:
            engine: this trainer.
            batchdata: the batch from the data loader.

        Returns:
            ``(outputs, terms)``: ``outputs`` holds at least ``image``, ``label`` and ``pred`` and whatever the
            discriminators' input builders read; ``terms`` maps each loss term's name to its weighted scalar.
        """
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        image, label = batch[0], batch[1]
        pred = engine.inferer(image, engine.network)
        outputs = {Keys.IMAGE: image, Keys.LABEL: label, Keys.PRED: pred}
        return outputs, {"supervised": engine.loss_function(pred, label).mean()}

    def discriminator_outputs(self, engine: MultiDiscriminatorTrainer, batchdata: dict[str, Any]) -> dict[str, Any]:
        """The outputs the discriminators' input builders read for their own step (called in eval mode, no grad).

        The default runs :meth:`segmenter_step` and drops its loss terms. A method whose discriminators see other
        passes than its segmenter step (ASE-Net's teacher on the clean input) overrides it.

        Args:
            engine: this trainer (its segmenter already in eval mode, inside ``torch.no_grad()``).
            batchdata: the batch from the data loader.
        """
        return engine.segmenter_step(engine, batchdata)[0]

    def _discriminator_step(self, engine: MultiDiscriminatorTrainer, batchdata: dict[str, Any]) -> None:
        """Step 1 of the module docstring: every discriminator's update, before the segmenter's."""
        engine.network.eval()  # the official code scores predictions of the segmenter in eval mode here
        with torch.no_grad(), engine.autocast():
            outputs = engine.discriminator_outputs(engine, batchdata)
        for spec in engine.discriminators:
            real, fake = spec.real_and_fake(outputs)
            spec.network.train()
            engine.zero_grad([spec.optimizer])
            # real and fake in separate passes: one mixed batch would give batch norm statistics of both at once
            with engine.autocast():
                real_logits = discriminator_logits(spec.network(*(r.detach() for r in real))).float()
                fake_logits = discriminator_logits(spec.network(*(f.detach() for f in fake))).float()
            d_loss = 0.5 * (
                spec.loss_function(real_logits, target_is_real=True, for_discriminator=True)
                + spec.loss_function(fake_logits, target_is_real=False, for_discriminator=True)
            )
            engine.optimize(d_loss, spec.optimizer, scaler_name=spec.name, fire_events=False)
            engine._d_losses[spec.name] = d_loss.detach()

    def _iteration(self, engine: MultiDiscriminatorTrainer, batchdata: dict[str, Any]) -> dict[str, Any]:
        """The discriminators' steps, then the segmenter's (see the module docstring).

        Returns:
            ``image``, ``label``, ``pred``, ``loss`` (the segmenter's total), each loss term, and ``d_<name>`` per
            discriminator.

        Raises:
            ValueError: no batch data.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        engine._d_losses = {}
        if engine.discriminators:
            engine._discriminator_step(engine, batchdata)
        engine.network.train()
        for spec in engine.discriminators:  # scored for the segmenter as at test time: no dropout, running BN stats
            spec.network.eval()
        engine.zero_grad()
        with engine.autocast():
            outputs, terms = engine.segmenter_step(engine, batchdata)
            engine.state.output = outputs
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            fake_logits = {}
            for spec in engine.discriminators:
                _, fake = spec.real_and_fake(outputs)
                with _frozen(spec.module):
                    fake_logits[spec.name] = discriminator_logits(spec.module(*fake))
        for spec in engine.discriminators:  # the adversarial criteria in float32 (BCE is unsafe under autocast)
            adversarial = spec.loss_function(
                fake_logits[spec.name].float(), target_is_real=True, for_discriminator=False
            )
            terms[f"adv_{spec.name}"] = spec.current_weight(engine.state) * adversarial
        loss = torch.stack([term.float() for term in terms.values()]).sum()
        engine.state.output[Keys.LOSS] = loss
        engine.optimize(loss)  # LOSS_COMPLETED, backward, BACKWARD_COMPLETED, step
        engine.state.output[Keys.LOSS] = loss.detach()  # the graph is spent: handlers get values only

        for name, d_loss in engine._d_losses.items():
            engine.state.output[f"d_{name}"] = d_loss
        for name, term in terms.items():
            engine.state.output[name] = term.detach()
        for key, value in engine.state.output.items():  # predictions too: keep no graph alive past the step
            if isinstance(value, torch.Tensor) and value.requires_grad:
                engine.state.output[key] = value.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
