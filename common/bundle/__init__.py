"""Bundle utilities: locating a bundle, listing inference inputs, distributed set-up."""

from __future__ import annotations

from .distributed import handlers_for_this_rank, init_distributed, is_main_process, local_device, wrap_ddp
from .inputs import find_inputs
from .locate import find_bundle_root, repository_root

__all__ = [
    "find_bundle_root",
    "repository_root",
    "find_inputs",
    "init_distributed",
    "local_device",
    "wrap_ddp",
    "is_main_process",
    "handlers_for_this_rank",
]
