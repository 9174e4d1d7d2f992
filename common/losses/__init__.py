"""Losses shared by the bundles."""

from __future__ import annotations

from .boundary_dou import BoundaryDoULoss

__all__ = ["BoundaryDoULoss"]
