"""Bundle utilities: locating a bundle, listing inference inputs, distributed set-up; sharing: self-contained export,
the collection index, MONAI Label's contract, ranking cases by uncertainty (``python -m common.bundle --help``)."""

from __future__ import annotations

from .distributed import handlers_for_this_rank, init_distributed, is_main_process, local_device, wrap_ddp
from .export import ExportError, export_bundle, stage_bundle
from .inputs import find_inputs, inference_datalist, inference_output_root
from .locate import find_bundle_root, repository_root
from .monai_label import check_monai_label_contract
from .uncertainty import rank_by_uncertainty

__all__ = [
    "find_bundle_root",
    "repository_root",
    "find_inputs",
    "inference_datalist",
    "inference_output_root",
    "init_distributed",
    "local_device",
    "wrap_ddp",
    "is_main_process",
    "handlers_for_this_rank",
    "ExportError",
    "export_bundle",
    "stage_bundle",
    "check_monai_label_contract",
    "rank_by_uncertainty",
]
