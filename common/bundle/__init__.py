"""Bundle utilities: locating a bundle, listing inference inputs, distributed set-up; sharing: self-contained export,
the collection index, MONAI Label's contract, ranking cases by uncertainty (``python -m common.bundle --help``).

Training imports only what it runs: the sharing tools (``export``, ``vendor``, ``model_info``, ``monai_label``,
``uncertainty``) are commands, and their names below are imported on first access (PEP 562), so that a config's
``"$import common"`` does not load them into every training process.
"""

from __future__ import annotations

import importlib
from typing import Any

from .command_line import BundleInputError, check_command_line, install_error_hook
from .distributed import (
    close_distributed,
    handlers_for_this_rank,
    init_distributed,
    is_main_process,
    local_device,
    quiet_logging_on_other_ranks,
    wrap_ddp,
)
from .inputs import announce_inference_size, find_inputs, inference_datalist, inference_output_root
from .locate import find_bundle_root, repository_root
from .workers import available_cpus, loader_workers

_LAZY_EXPORTS = {
    "ExportError": "export",
    "export_bundle": "export",
    "stage_bundle": "export",
    "check_monai_label_contract": "monai_label",
    "rank_by_uncertainty": "uncertainty",
}  # name -> its module in this package, imported by __getattr__ on first use (the vendoring reads this table)

__all__ = [
    "BundleInputError",
    "check_command_line",
    "install_error_hook",
    "find_bundle_root",
    "repository_root",
    "announce_inference_size",
    "find_inputs",
    "inference_datalist",
    "inference_output_root",
    "init_distributed",
    "close_distributed",
    "local_device",
    "wrap_ddp",
    "is_main_process",
    "handlers_for_this_rank",
    "quiet_logging_on_other_ranks",
    "ExportError",
    "export_bundle",
    "stage_bundle",
    "check_monai_label_contract",
    "rank_by_uncertainty",
    "available_cpus",
    "loader_workers",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_EXPORTS[name]}"), name)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_EXPORTS})
