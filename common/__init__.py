"""Shared components of the label-efficient segmentation bundle collection.

The bundles under ``bundles/`` name these components in their JSON configs as ``common.<package>.<Name>``:
``data`` (datalists, real-layout adapters, phantoms, input checks), ``transforms``, ``networks``, ``losses``,
``handlers`` and ``bundle`` (locating a bundle, listing inputs, distributed set-up), ``engines`` (trainers whose
``_iteration`` is a method's step) and ``inferers`` (sliding windows, Monte-Carlo uncertainty), ``metrics``
(airway topology metrics).
Sub-packages are imported on first use, so a config's ``"$import common"`` gives access to all of them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBPACKAGES = ("bundle", "data", "handlers", "losses", "networks", "transforms", "engines", "inferers", "metrics")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
