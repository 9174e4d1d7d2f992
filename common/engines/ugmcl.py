"""UG-MCL's training step: uncertainty-guided intra-task and cross-task consistency (Zhang et al., AIIM 2022).

Per iteration, on a batch of labeled then unlabeled images ``x`` (labels ``y`` for the first ``n``):

1. the student (a dual-task network) predicts segmentation logits ``z`` and signed distance maps ``sdf`` for ``x``;
2. the teacher (the student's EMA) predicts ``z_T``, ``sdf_T`` for ``x + clamp(N(0, 0.1), -0.2, 0.2)``, and its
   uncertainty ``U`` is the entropy of the mean softmax of ``T = 8`` noisy passes with dropout active;
3. ``M = U < threshold(t)``, the threshold ramping from ``0.75 ln 2`` to ``ln 2``
   (``engine.state.uncertainty_threshold``);
4. ``L_sup = 0.5 [CE + Dice(softmax z) + Dice(sigmoid(-1500 sdf))]`` on the labeled part;
   ``L_intra = w_seg MSE_M(softmax z, softmax z_T) + w_sdf MSE_M(sdf, sdf_T)`` (masked, normalised by
   ``C sum(M) + 1e-16``); ``L_cross = mean((sigmoid(-1500 sdf) - softmax z)^2)`` on every case;
5. ``loss = L_sup + lambda(t) (L_intra + L_cross)`` with ``lambda(t)`` from ``engine.state.consistency_weight``
   (``0.1 sigmoid_rampup(floor(t / 150), L)``, written by a :class:`common.handlers.RampScheduler`).

The teacher is updated after the step by :class:`common.handlers.EMATeacher`, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer

from common.engines.base import MethodTrainer
from common.inferers.uncertainty import MCUncertaintyEstimator, add_input_noise
from common.losses.consistency import MaskedMSELoss
from common.losses.dual_task import CrossTaskConsistencyLoss, DualTaskSupervisedLoss

__all__ = ["UGMCLTrainer"]


class UGMCLTrainer(MethodTrainer):
    """Semi-supervised trainer with UG-MCL's uncertainty-guided mutual consistency step.

    Args:
        device: the device of the networks.
        max_epochs: epochs to train.
        train_data_loader: a :class:`common.data.LabeledUnlabeledLoader`.
        network: the dual-task student (e.g. :class:`common.networks.DualTaskVNet`), ``(z, sdf)`` in training mode.
        optimizer: the student's optimizer.
        teacher: the EMA teacher (``common.handlers.EMATeacher(...).ema_model``).
        loss_function: the supervised loss (default :class:`common.losses.DualTaskSupervisedLoss`).
        consistency_loss: the masked intra-task loss (default :class:`common.losses.MaskedMSELoss`).
        cross_task_loss: the cross-task loss (default :class:`common.losses.CrossTaskConsistencyLoss`).
        uncertainty: the teacher's Monte-Carlo uncertainty (default :class:`common.inferers.MCUncertaintyEstimator`:
            T = 8, noise 0.1 clipped at 0.2); its noise also perturbs the teacher's main pass.
        intra_seg_weight: weight of the segmentation part of ``L_intra``.
        intra_sdf_weight: weight of the signed-distance part of ``L_intra`` (UG-MCL's paper uses both tasks; the
            official BraTS code keeps only the segmentation part, scaled by 0.5: ``intra_seg_weight=0.5,
            intra_sdf_weight=0``).
        consistency_weight_key: ``engine.state`` attribute holding ``lambda(t)``.
        threshold_key: ``engine.state`` attribute holding the uncertainty threshold.
        kwargs: other arguments of :class:`common.engines.MethodTrainer` / MONAI's ``SupervisedTrainer``.

    Raises:
        ValueError: no teacher, or a negative weight.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: nn.Module,
        optimizer: Optimizer,
        teacher: nn.Module,
        loss_function: Callable | None = None,
        consistency_loss: Callable | None = None,
        cross_task_loss: Callable | None = None,
        uncertainty: MCUncertaintyEstimator | None = None,
        intra_seg_weight: float = 1.0,
        intra_sdf_weight: float = 1.0,
        consistency_weight_key: str = "consistency_weight",
        threshold_key: str = "uncertainty_threshold",
        **kwargs: Any,
    ) -> None:
        if teacher is None:
            raise ValueError("UG-MCL needs a teacher network (common.handlers.EMATeacher(...).ema_model)")
        if intra_seg_weight < 0 or intra_sdf_weight < 0:
            raise ValueError(f"intra-task weights must be non-negative, got {intra_seg_weight}, {intra_sdf_weight}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function if loss_function is not None else DualTaskSupervisedLoss(),
            teacher=teacher,
            **kwargs,
        )
        self.consistency_loss = consistency_loss if consistency_loss is not None else MaskedMSELoss()
        self.cross_task_loss = cross_task_loss if cross_task_loss is not None else CrossTaskConsistencyLoss()
        self.uncertainty = uncertainty if uncertainty is not None else MCUncertaintyEstimator()
        self.intra_seg_weight = float(intra_seg_weight)
        self.intra_sdf_weight = float(intra_sdf_weight)
        self.consistency_weight_key = consistency_weight_key
        self.threshold_key = threshold_key

    def _supervised_terms(
        self, logits: torch.Tensor, sdf: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        loss_function = self.loss_function
        if hasattr(loss_function, "components") and hasattr(loss_function, "combine"):
            terms = loss_function.components((logits, sdf), labels)
            return {**terms, "sup": loss_function.combine(terms)}
        return {"sup": loss_function((logits, sdf), labels)}

    def _iteration(self, engine: UGMCLTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        """UG-MCL's training step (see the module docstring).

        Returns:
            MONAI's ``image``, ``label``, ``pred`` (student logits) and ``loss``, plus ``loss_sup``, ``loss_intra``,
            ``loss_cross``, the supervised terms (``loss_ce``, ``loss_dice``, ``loss_sdf_dice``), the schedule values
            ``consistency_weight`` and ``uncertainty_threshold``, and ``certain_fraction`` (the share of voxels in
            the mask).
        """
        batch = engine.split_batch(batchdata)
        images, labels, num_labeled = batch
        weight = float(engine.state_value(engine.consistency_weight_key))
        threshold = float(engine.state_value(engine.threshold_key))
        engine.state.output = {Keys.IMAGE: images, Keys.LABEL: labels}
        engine.network.train()
        engine.teacher.train()  # the reference teacher runs in training mode: dropout active, batch statistics
        engine.zero_grad()
        estimator = engine.uncertainty
        with engine.autocast():
            logits, sdf = engine.inferer(images, engine.network)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            with torch.no_grad():
                teacher_logits, teacher_sdf = engine.teacher(
                    add_input_noise(images, estimator.noise_std, estimator.noise_clip)
                )
                uncertainty = estimator(engine.teacher, images)
                mask = (uncertainty.entropy < threshold).to(logits.dtype)
            supervised = self._supervised_terms(logits[:num_labeled], sdf[:num_labeled], labels)
            intra = engine.intra_seg_weight * engine.consistency_loss(
                torch.softmax(logits, dim=1), torch.softmax(teacher_logits, dim=1), mask
            )
            if engine.intra_sdf_weight > 0:
                intra = intra + engine.intra_sdf_weight * engine.consistency_loss(sdf, teacher_sdf, mask)
            cross = engine.cross_task_loss((logits, sdf))
            loss = supervised["sup"] + weight * (intra + cross)
        engine.state.output[Keys.PRED] = logits
        engine.state.output[Keys.LOSS] = loss
        engine.optimize(loss)
        engine.state.output[Keys.PRED] = logits.detach()  # the graph is spent: keep only the values for handlers
        engine.state.output[Keys.LOSS] = loss.detach()
        engine.state.output.update(
            {f"loss_{name}": value.detach() for name, value in supervised.items()}
            | {
                "loss_intra": intra.detach(),
                "loss_cross": cross.detach(),
                "consistency_weight": weight,
                "uncertainty_threshold": threshold,
                "certain_fraction": float(mask.mean()),
            }
        )
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
