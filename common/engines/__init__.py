"""Engines: MONAI trainers whose ``_iteration`` is a method's training step."""

from __future__ import annotations

from .adversarial import DiscriminatorSpec, MultiDiscriminatorTrainer
from .dfcps import DFCPSTrainer
from .dmgsa import DMGSATrainer
from .semi_supervised import SemiSupervisedBatch, SemiSupervisedTrainer
from .ugmcl import UGMCLTrainer

__all__ = [
    "DMGSATrainer",
    "DiscriminatorSpec",
    "MultiDiscriminatorTrainer",
    "SemiSupervisedBatch",
    "SemiSupervisedTrainer",
    "UGMCLTrainer",
]
__all__ += ["DFCPSTrainer"]
from .asenet import ASENetTrainer, d1_inputs, d2_inputs  # noqa: E402

__all__ += ["ASENetTrainer", "d1_inputs", "d2_inputs"]
