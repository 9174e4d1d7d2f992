"""Procedural phantoms: the embedded default data set of each bundle, written to disk in the real data set's layout."""

from __future__ import annotations

from common.data.phantoms.lesion2d import LesionPhantom2D

__all__ = ["LesionPhantom2D"]
