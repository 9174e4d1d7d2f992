"""ASE-Net's training step: supervised + adversarial (D1, D2) + three-way consistency on the shared adversarial trainer.

Per iteration, on a batch of labeled images ``x_l`` (labels ``y``) then unlabeled images ``x_u``, with one noise draw
``xi = clamp(N(0, 0.1), -0.2, 0.2)`` shared by both steps (as ``train_ASE-Net_3D.py`` draws ``ema_inputs`` once):

1. the discriminators' step (from :class:`~common.engines.adversarial.MultiDiscriminatorTrainer`, first, as in the
   official 3D code): the student in eval mode and the teacher predict without gradient; D1 learns
   ``(p(x_l), x_l) -> 1``, ``(p(x_u), x_u) -> 0``; D2 ``(q(x_u), x_u) -> 1`` (the teacher on the clean input),
   ``(p(x_u + xi), x_u) -> 0`` (both see the clean image, so the noise itself cannot give the fake away); real and
   fake in separate passes;
2. the segmenter step, the student in train mode: logits for every image and for ``x_u + xi``; the teacher (the
   student's EMA, no gradient) predicts ``x_u + xi`` for the consistency (the official 2D and 3D code;
   ``teacher_noise=False``, ours, gives it the clean ``x_u``); probabilities are a softmax (sigmoid for one output
   channel);

   - ``supervised = L_sup(logits(x_l), y)`` (``0.5 (CE + Dice)``, the Dice foreground-only over the batch as the
     official ``losses.dice_loss``), computed on the graph of this step so that both parts carry gradient;
   - ``consistency = lambda(t) * mean([(p - q)^2 + (p_xi - q)^2 + (p - p_xi)^2] / 3)`` on the unlabeled cases;
   - the adversarial terms ``0.5 lambda(t) CE(D_i(fake), real)`` through the frozen discriminators in eval mode
     (discriminator specs with ``weight=0.5`` and ``weight_key`` the consistency weight, giving
     ``lambda (adv_1 + adv_2) / 2``), where D1 sees ``(p(x_u), x_u)`` and D2 ``(p(x_u + xi), x_u)``.

``lambda(t)`` is read from ``engine.state.consistency_weight`` (``1.0 sigmoid_rampup(floor(t / 150), 40)``, a
:class:`common.handlers.RampScheduler`); the teacher is updated after the step by :class:`common.handlers.EMATeacher`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.optim.optimizer import Optimizer

from common.engines.adversarial import DiscriminatorSpec, MultiDiscriminatorTrainer
from common.inferers.uncertainty import add_input_noise
from common.losses.three_way_consistency import ThreeWayConsistencyLoss, segmentation_probabilities

__all__ = ["ASENetTrainer", "d1_inputs", "d2_inputs"]

LABELED_PROB, UNLABELED_PROB, NOISY_PROB, TEACHER_PROB = "labeled_prob", "unlabeled_prob", "noisy_prob", "teacher_prob"
LABELED_IMAGE, UNLABELED_IMAGE = "labeled_image", "unlabeled_image"


def d1_inputs(outputs: Mapping[str, Any]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """D1's ``(real, fake)``: ``(p(x_l), x_l)`` and ``(p(x_u), x_u)``."""
    return (outputs[LABELED_PROB], outputs[LABELED_IMAGE]), (outputs[UNLABELED_PROB], outputs[UNLABELED_IMAGE])


def d2_inputs(outputs: Mapping[str, Any]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """D2's ``(real, fake)``: ``(q(x_u), x_u)`` (teacher) and ``(p(x_u + xi), x_u)`` (noisy student)."""
    return (outputs[TEACHER_PROB], outputs[UNLABELED_IMAGE]), (outputs[NOISY_PROB], outputs[UNLABELED_IMAGE])


class ASENetTrainer(MultiDiscriminatorTrainer):
    """ASE-Net's training step (see the module docstring).

    Args:
        device: the device of the networks.
        max_epochs: epochs to train.
        train_data_loader: a :class:`common.data.LabeledUnlabeledLoader` (``image`` labeled first, ``label`` for the
            labeled part, ``labeled_batch_size``).
        network: the student segmenter (logits ``(B, C, *spatial)``; ``C = 1`` is read as sigmoid).
        optimizer: the student's optimizer (Adam 1e-3, betas (0.9, 0.99)).
        teacher: the EMA teacher (``common.handlers.EMATeacher(...).ema_model``).
        loss_function: the supervised loss ``(logits, label)``.
        discriminators: D1 and D2 as :class:`DiscriminatorSpec` with inputs :func:`d1_inputs` / :func:`d2_inputs`,
            ``weight=0.5`` and ``weight_key="consistency_weight"``; none: the mean-teacher ablation.
        consistency_loss: default :class:`common.losses.ThreeWayConsistencyLoss`.
        noise_std: standard deviation of ``xi``.
        noise_clip: ``xi`` is clipped to ``[-noise_clip, noise_clip]``.
        teacher_noise: the teacher predicts ``x_u + xi`` for the consistency term (default, the official 2D and 3D
            code); False (ours) gives it the clean ``x_u``. D2 always gets the teacher's clean prediction.
        consistency_weight_key: the ``engine.state`` attribute holding ``lambda(t)``.
        decollate: False (the labeled part of a batch is smaller than the batch).
        kwargs: other arguments of :class:`MultiDiscriminatorTrainer` / :class:`common.engines.MethodTrainer`
            (``image_key``, ``label_key``, ``train_handlers``, ``amp``, ...).

    Raises:
        ValueError: no teacher, or a negative noise level.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: nn.Module,
        optimizer: Optimizer,
        teacher: nn.Module,
        loss_function: Callable,
        discriminators: Sequence[DiscriminatorSpec] = (),
        consistency_loss: Callable | None = None,
        noise_std: float = 0.1,
        noise_clip: float = 0.2,
        teacher_noise: bool = True,
        consistency_weight_key: str = "consistency_weight",
        decollate: bool = False,
        **kwargs: Any,
    ) -> None:
        if teacher is None:
            raise ValueError("ASE-Net needs a teacher network (common.handlers.EMATeacher(...).ema_model)")
        if noise_std < 0 or noise_clip < 0:
            raise ValueError(f"noise_std and noise_clip must be non-negative, got {noise_std}, {noise_clip}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            discriminators=discriminators,
            teacher=teacher,
            decollate=decollate,
            **kwargs,
        )
        self.consistency_loss = consistency_loss if consistency_loss is not None else ThreeWayConsistencyLoss()
        self.noise_std = float(noise_std)
        self.noise_clip = float(noise_clip)
        self.teacher_noise = bool(teacher_noise)
        self.consistency_weight_key = consistency_weight_key
        self._prepared: tuple[int, tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]] | None = None

    def _inputs(
        self, engine: ASENetTrainer, batchdata: dict[str, Any], keep: bool
    ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        """``(images, labels, n_labeled, x_u + xi)`` of a batch, the noise drawn once per batch.

        With ``keep`` (the discriminators' step) the result is kept for the segmenter step of the same batch, which
        takes it (and draws afresh for any other batch), so that both steps see the same ``xi``.
        """
        if self._prepared is not None and self._prepared[0] == id(batchdata) and not keep:
            prepared = self._prepared[1]
            self._prepared = None
            return prepared
        images, labels, n = engine.split_batch(batchdata, need_unlabeled=True)
        prepared = (images, labels, n, add_input_noise(images[n:], engine.noise_std, engine.noise_clip))
        self._prepared = (id(batchdata), prepared) if keep else None
        return prepared

    def discriminator_outputs(self, engine: ASENetTrainer, batchdata: dict[str, Any]) -> dict[str, Any]:
        """What D1 and D2 learn from (step 1 of the module docstring; called in eval mode without gradient).

        Returns:
            the probability maps and images :func:`d1_inputs` and :func:`d2_inputs` read: the student's maps of the
            batch and of ``x_u + xi``, the teacher's map of the clean ``x_u``.
        """
        images, _, n, noisy = engine._inputs(engine, batchdata, keep=True)
        probabilities = segmentation_probabilities(engine.inferer(images, engine.network))
        engine.teacher.train()  # the reference teacher runs in training mode (dropout active), as in the official code
        return {
            LABELED_PROB: probabilities[:n],
            UNLABELED_PROB: probabilities[n:],
            NOISY_PROB: segmentation_probabilities(engine.inferer(noisy, engine.network)),
            TEACHER_PROB: segmentation_probabilities(engine.teacher(images[n:])),
            LABELED_IMAGE: images[:n],
            UNLABELED_IMAGE: images[n:],
        }

    def segmenter_step(
        self, engine: ASENetTrainer, batchdata: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The student and teacher passes, the supervised and consistency terms, and the discriminators' fakes.

        Returns:
            ``(outputs, terms)``: outputs ``image``, ``label``, ``pred`` (student logits of the whole batch), the
            probability maps and images the discriminators read (the teacher's map is the one of the consistency
            term), ``consistency_weight``; terms ``supervised`` and ``consistency`` (already times ``lambda(t)``).

        Raises:
            AttributeError: no handler writes the consistency weight.
        """
        weight = float(engine.state_value(engine.consistency_weight_key))
        images, labels, n, noisy = engine._inputs(engine, batchdata, keep=False)
        unlabeled = images[n:]
        logits = engine.inferer(images, engine.network)
        noisy_logits = engine.inferer(noisy, engine.network)
        engine.teacher.train()  # the reference teacher runs in training mode (dropout active)
        with torch.no_grad():
            teacher_logits = engine.teacher(noisy if engine.teacher_noise else unlabeled)
        probabilities = segmentation_probabilities(logits)
        terms = {
            "supervised": engine.loss_function(logits[:n], labels).mean(),
            "consistency": weight * engine.consistency_loss(logits[n:], noisy_logits, teacher_logits),
        }
        outputs = {
            Keys.IMAGE: images,
            Keys.LABEL: labels,
            Keys.PRED: logits,
            LABELED_PROB: probabilities[:n],
            UNLABELED_PROB: probabilities[n:],
            NOISY_PROB: segmentation_probabilities(noisy_logits),
            TEACHER_PROB: segmentation_probabilities(teacher_logits),
            LABELED_IMAGE: images[:n],
            UNLABELED_IMAGE: unlabeled,
            "consistency_weight": weight,
        }
        return outputs, terms
