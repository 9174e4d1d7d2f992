"""Losses of dual-task (segmentation + signed distance) networks: UG-MCL's supervised and cross-task terms.

With ``z`` the segmentation logits, ``sdf`` the signed-distance head's output (``tanh``, negative inside) and ``y`` the
label, UG-MCL (Zhang et al., AIIM 2022) trains with

- supervised, on labeled cases: ``0.5 [CE(z, y) + Dice(softmax z, y) + Dice(sigmoid(-k sdf), y)]``, ``k = 1500``;
- cross-task consistency, on every case: ``mean((sigmoid(-k sdf) - softmax z)^2)``.

``sigmoid(-k sdf)`` (:func:`sdf_to_probability`) is the soft inverse of the signed distance transform: about 1 inside
(``sdf < 0``), 0 outside. Dice is the squared-denominator soft Dice over the whole batch on the foreground classes,
``1 - (2 sum(p y) + s) / (sum(p^2) + sum(y^2) + s)``, ``s = 1e-5`` (MONAI's ``DiceLoss`` with ``squared_pred``,
``batch=True``, ``include_background=False``): for two classes exactly the reference code's ``dice_loss`` on channel 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

from common.transforms.sdf import signed_distance_map

__all__ = ["CrossTaskConsistencyLoss", "DualTaskSupervisedLoss", "sdf_to_probability"]

DEFAULT_SHARPNESS = 1500.0
"""UG-MCL's (and DTC's) ``k`` in ``sigmoid(-k sdf)``."""


def sdf_to_probability(sdf: torch.Tensor, sharpness: float = DEFAULT_SHARPNESS) -> torch.Tensor:
    """Soft inverse of the signed distance transform: ``sigmoid(-sharpness * sdf)`` (1 inside, 0 outside).

    Args:
        sdf: signed distance maps, negative inside, any shape.
        sharpness: ``k``; large values approach the hard mask ``sdf < 0``.
    """
    return torch.sigmoid(-sharpness * sdf)


def _split(prediction: torch.Tensor | tuple | list) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(prediction, tuple | list) or len(prediction) != 2:
        raise ValueError(
            "expected the dual-task output (segmentation logits, signed distance map); got "
            f"{type(prediction).__name__} (is the network in training mode?)"
        )
    logits, sdf = prediction
    if logits.shape != sdf.shape:
        raise ValueError(f"segmentation logits {tuple(logits.shape)} and SDF {tuple(sdf.shape)} differ in shape")
    return logits, sdf


class DualTaskSupervisedLoss(_Loss):
    """UG-MCL's supervised loss: ``scale * [CE(z, y) + Dice(softmax z, y) + Dice(sigmoid(-k sdf), y)]``.

    Optionally adds ``sdf_mse_weight * mean((sdf - SDF(y))^2)``, the regression of the distance head onto the
    label's signed distance map (DTC's ``L_sdf``; UG-MCL's formula does not have it: default weight 0). ``SDF(y)`` is
    :func:`common.transforms.signed_distance_map` of the one-hot label, computed on the fly.

    Args:
        sharpness: ``k`` of :func:`sdf_to_probability` (1500).
        scale: the factor in front of the sum (0.5).
        smooth: the Dice smoothing term ``s`` (1e-5, numerator and denominator).
        sdf_mse_weight: weight of the optional SDF regression term.

    Inputs: ``prediction = (z, sdf)``, each ``(B, C, *spatial)`` (C classes, background included); ``target``
    ``(B, 1, *spatial)`` class indices. Returns the scalar loss.
    """

    def __init__(
        self,
        sharpness: float = DEFAULT_SHARPNESS,
        scale: float = 0.5,
        smooth: float = 1e-5,
        sdf_mse_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if sharpness <= 0:
            raise ValueError(f"sharpness must be positive, got {sharpness}")
        if sdf_mse_weight < 0:
            raise ValueError(f"sdf_mse_weight must be non-negative, got {sdf_mse_weight}")
        self.sharpness = float(sharpness)
        self.scale = float(scale)
        self.sdf_mse_weight = float(sdf_mse_weight)
        dice = {"include_background": False, "to_onehot_y": True, "squared_pred": True, "batch": True}
        self.seg_dice = DiceLoss(softmax=True, smooth_nr=smooth, smooth_dr=smooth, **dice)
        self.sdf_dice = DiceLoss(softmax=False, smooth_nr=smooth, smooth_dr=smooth, **dice)

    def components(
        self, prediction: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms: ``{"ce", "dice", "sdf_dice"[, "sdf_mse"]}``, each a scalar tensor.

        Args:
            prediction: ``(z, sdf)``, ``(B, C, *spatial)`` each.
            target: ``(B, 1, *spatial)`` class indices.

        Raises:
            ValueError: ``prediction`` is not a pair of equally shaped tensors, or ``target`` has a channel axis
                other than 1.
        """
        logits, sdf = _split(prediction)
        if target.ndim != logits.ndim or target.shape[1] != 1:
            raise ValueError(f"target must be (B, 1, *spatial) class indices, got {tuple(target.shape)}")
        terms = {
            "ce": F.cross_entropy(logits, target[:, 0].long()),
            "dice": self.seg_dice(logits, target),
            "sdf_dice": self.sdf_dice(sdf_to_probability(sdf, self.sharpness), target),
        }
        if self.sdf_mse_weight > 0:
            truth = torch.stack([signed_distance_map(item, num_classes=logits.shape[1]) for item in target.detach()])
            terms["sdf_mse"] = F.mse_loss(sdf, truth.to(sdf))
        return terms

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss from :meth:`components`' terms."""
        loss = self.scale * (terms["ce"] + terms["dice"] + terms["sdf_dice"])
        if "sdf_mse" in terms:
            loss = loss + self.sdf_mse_weight * terms["sdf_mse"]
        return loss

    def forward(self, prediction: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """The supervised loss of ``prediction = (z, sdf)`` against ``target`` (see the class docstring)."""
        return self.combine(self.components(prediction, target))


class CrossTaskConsistencyLoss(_Loss):
    """UG-MCL's cross-task consistency: ``mean((sigmoid(-k sdf) - softmax(z))^2)`` over every element.

    Args:
        sharpness: ``k`` of :func:`sdf_to_probability` (1500).

    Inputs: ``prediction = (z, sdf)``, each ``(B, C, *spatial)``. Returns the scalar loss (gradients reach both heads).
    """

    def __init__(self, sharpness: float = DEFAULT_SHARPNESS) -> None:
        super().__init__()
        if sharpness <= 0:
            raise ValueError(f"sharpness must be positive, got {sharpness}")
        self.sharpness = float(sharpness)

    def forward(self, prediction: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The consistency of the two heads of ``prediction = (z, sdf)``."""
        logits, sdf = _split(prediction)
        return torch.mean((sdf_to_probability(sdf, self.sharpness) - torch.softmax(logits, dim=1)) ** 2)
