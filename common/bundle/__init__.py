"""Bundle utilities: locating a bundle, listing inference inputs, distributed set-up; sharing: self-contained export,
the collection index, MONAI Label's contract, ranking cases by uncertainty (``python -m common.bundle --help``)."""

from __future__ import annotations

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
from .export import ExportError, export_bundle, stage_bundle
from .inputs import announce_inference_size, find_inputs, inference_datalist, inference_output_root
from .locate import find_bundle_root, repository_root
from .monai_label import check_monai_label_contract
from .uncertainty import rank_by_uncertainty
from .workers import available_cpus, loader_workers

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
