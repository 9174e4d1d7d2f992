"""Losses shared by the bundles."""

from __future__ import annotations

from .boundary_dou import BoundaryDoULoss
from .consistency import MaskedMSELoss
from .dual_task import CrossTaskConsistencyLoss, DualTaskSupervisedLoss, sdf_to_probability
from .pseudo_label import MaskedCrossEntropyLoss, PseudoLabels, pseudo_labels
from .reconstruction import MaskedSmoothL1Loss
from .separation import ForegroundBackgroundSeparationLoss

__all__ = [
    "BoundaryDoULoss",
    "CrossTaskConsistencyLoss",
    "DualTaskSupervisedLoss",
    "ForegroundBackgroundSeparationLoss",
    "MaskedCrossEntropyLoss",
    "MaskedMSELoss",
    "MaskedSmoothL1Loss",
    "PseudoLabels",
    "pseudo_labels",
    "sdf_to_probability",
]
from .three_way_consistency import ThreeWayConsistencyLoss, segmentation_probabilities
from .two_class_adversarial import TwoClassAdversarialLoss

__all__ += ["ThreeWayConsistencyLoss", "TwoClassAdversarialLoss", "segmentation_probabilities"]
