"""Real-layout adapters: one class per public data set layout, found by name in a registry.

A bundle config names its layout (``"layout": "kvasir_seg"``); :func:`get_layout` returns the adapter that lists
the cases of a folder in that layout and writes phantom cases into it. New layouts (e.g. the 3D ones) subclass
:class:`Layout` and join with :func:`register_layout`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from common.data.layouts.atm22 import ATM22Layout
from common.data.layouts.base import Layout
from common.data.layouts.busi import BUSILayout
from common.data.layouts.isic import ISIC2016Layout, ISIC2018Layout
from common.data.layouts.kvasir import KvasirSegLayout
from common.data.layouts.la_heart import LAHeartLayout
from common.data.layouts.nifti import NiftiLayout

__all__ = [
    "LAYOUTS",
    "ATM22Layout",
    "BUSILayout",
    "ISIC2016Layout",
    "ISIC2018Layout",
    "KvasirSegLayout",
    "LAHeartLayout",
    "Layout",
    "NiftiLayout",
    "get_layout",
    "register_layout",
]

LAYOUTS: dict[str, type[Layout]] = {}
"""Layout name -> adapter class."""

LayoutType = TypeVar("LayoutType", bound=type[Layout])


def register_layout(layout_class: LayoutType) -> LayoutType:
    """Add an adapter class to :data:`LAYOUTS` under its ``name`` (usable as a class decorator).

    Args:
        layout_class: a :class:`Layout` subclass with a ``name``.

    Returns:
        The class, unchanged.

    Raises:
        TypeError: not a :class:`Layout` subclass.
        ValueError: another class is registered under the same name.
    """
    if not (isinstance(layout_class, type) and issubclass(layout_class, Layout)):
        raise TypeError(f"a layout must subclass common.data.layouts.Layout, got {layout_class!r}")
    registered = LAYOUTS.get(layout_class.name)
    if registered is not None and registered is not layout_class:
        raise ValueError(f"layout name {layout_class.name!r} is already taken by {registered.__qualname__}")
    LAYOUTS[layout_class.name] = layout_class
    return layout_class


def get_layout(name: str | Layout, **options: Any) -> Layout:
    """The adapter for a layout name, constructed with ``options``.

    Args:
        name: a registered layout name, or an adapter instance (returned as is).
        options: constructor arguments of the adapter (e.g. ``include_normal=True`` for ``"busi"``).

    Returns:
        The adapter instance.

    Raises:
        ValueError: unknown name (the message lists the known names), or options given with an instance.
    """
    if isinstance(name, Layout):
        if options:
            raise ValueError(f"options {sorted(options)} cannot be applied to the layout instance {name!r}")
        return name
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; known layouts: {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[name](**options)


for _layout_class in (KvasirSegLayout, ISIC2018Layout, ISIC2016Layout, BUSILayout):
    register_layout(_layout_class)
for _layout_class in (LAHeartLayout, NiftiLayout):
    register_layout(_layout_class)
register_layout(ATM22Layout)

from common.data.layouts.lits import LiTSLayout  # noqa: E402  (ASE-Net's LiTS, added after the registry exists)

register_layout(LiTSLayout)
__all__ += ["LiTSLayout"]
