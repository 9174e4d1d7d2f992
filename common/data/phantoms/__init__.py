"""Procedural phantoms: the embedded default data set of each bundle, written to disk in the real data set's layout."""

from __future__ import annotations

from common.data.phantoms.airway3d import AirwayPhantom3D
from common.data.phantoms.base import Phantom, ordered_range
from common.data.phantoms.lesion2d import LesionPhantom2D
from common.data.phantoms.organ3d import OrganPhantom3D

__all__ = ["AirwayPhantom3D", "LesionPhantom2D", "OrganPhantom3D", "Phantom", "ordered_range"]
