"""Ignite handlers: checkpoints that survive a killed run, progress, figures."""

from __future__ import annotations

from .checkpoint import AtomicCheckpointSaver, ResumeCheckpointLoader, latest_checkpoint
from .figures import OverlayFigureSaver, draw_overlay
from .progress import TrainingProgressBar

__all__ = [
    "AtomicCheckpointSaver",
    "ResumeCheckpointLoader",
    "latest_checkpoint",
    "OverlayFigureSaver",
    "draw_overlay",
    "TrainingProgressBar",
]
