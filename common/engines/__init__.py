"""Engines: MONAI trainers whose ``_iteration`` is a method's training step."""

from __future__ import annotations

from .adversarial import DiscriminatorSpec, MultiDiscriminatorTrainer
from .asenet import ASENetTrainer, d1_inputs, d2_inputs
from .base import MethodTrainer, SupervisedMethodTrainer, schedule_value
from .dfcps import DFCPSTrainer
from .dmgsa import DMGSATrainer
from .semi_supervised import SemiSupervisedBatch, split_semi_supervised_batch
from .ugmcl import UGMCLTrainer

__all__ = [
    "ASENetTrainer",
    "DFCPSTrainer",
    "DMGSATrainer",
    "DiscriminatorSpec",
    "MethodTrainer",
    "MultiDiscriminatorTrainer",
    "SemiSupervisedBatch",
    "SupervisedMethodTrainer",
    "UGMCLTrainer",
    "d1_inputs",
    "d2_inputs",
    "schedule_value",
    "split_semi_supervised_batch",
]
