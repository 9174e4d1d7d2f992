"""Distributed data-parallel set-up for ``multi_gpu_train.json``: NCCL on GPUs, gloo on CPUs, one code path."""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from ignite.handlers import ProgressBar
from monai.handlers import CheckpointSaver, MetricsSaver, MLFlowHandler, TensorBoardHandler
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "init_distributed",
    "close_distributed",
    "local_device",
    "wrap_ddp",
    "is_main_process",
    "handlers_for_this_rank",
    "quiet_logging_on_other_ranks",
]


def init_distributed(backend: str | None = None) -> None:
    """Join the process group that ``torchrun`` set up through its environment variables (idempotent).

    Args:
        backend: ``"nccl"``, ``"gloo"``, or None for NCCL when CUDA is available and gloo otherwise.

    Raises:
        RuntimeError: when the process was not started by ``torchrun`` (no ``RANK``/``WORLD_SIZE``).
    """
    if dist.is_initialized():
        return
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "multi_gpu_train.json must be started with torchrun, e.g. "
            "`torchrun --nproc_per_node=2 -m monai.bundle run --config_file ...`"
        )
    dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    quiet_logging_on_other_ranks(dist.get_rank())


def close_distributed() -> None:
    """Leave the process group once every rank has finished (a no-op when none was joined).

    Rank 0 does work the others skip at the end of a run (the last checkpoint, the curves); a rank that destroyed its
    gloo group and exited meanwhile could take its peers down with it (torchrun ends them all when one process
    fails). A barrier first makes every rank leave together.
    """
    if not dist.is_initialized():
        return
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def quiet_logging_on_other_ranks(rank: int) -> None:
    """Keep only warnings and errors in the log of ranks other than 0, so that a run logs each line once.

    Every rank runs the same configs, handlers and data preparation; their INFO lines (the banner, the data checks,
    Ignite's epoch lines, MONAI's StatsHandler) would appear once per process. The root logger and every logger that
    sets its own level below WARNING are raised to WARNING; problems are still reported by every rank.

    Args:
        rank: this process's rank; 0 leaves logging unchanged.
    """
    if rank == 0:
        return
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
    ]
    for logger in loggers:
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def local_device() -> torch.device:
    """Return this process's device: ``cuda:<LOCAL_RANK>`` (made current) when CUDA is available, else CPU."""
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def wrap_ddp(network: torch.nn.Module, device: torch.device | str) -> DistributedDataParallel:
    """Move ``network`` to ``device`` and wrap it in ``DistributedDataParallel``.

    Args:
        network: the model.
        device: this process's device (see :func:`local_device`).

    Returns:
        the wrapped model; ``device_ids`` is set only for CUDA devices, as DDP requires on CPU.
    """
    device = torch.device(device)
    network = network.to(device)
    if device.type == "cuda":
        return DistributedDataParallel(network, device_ids=[device])
    return DistributedDataParallel(network)


def is_main_process() -> bool:
    """True on rank 0, or when not running distributed: the process that logs and writes checkpoints."""
    return not dist.is_initialized() or dist.get_rank() == 0


# handlers that write files or draw on the terminal: one process is enough, and several would collide
_MAIN_PROCESS_ONLY = (CheckpointSaver, MetricsSaver, MLFlowHandler, TensorBoardHandler, ProgressBar)


def handlers_for_this_rank(handlers: list | None) -> list | None:
    """Drop the handlers that only the main process should run (checkpoints, TensorBoard, MLflow, progress bars).

    Filtering by type rather than by list position keeps working when a config disables an entry or when
    ``--tracking mlflow`` appends a handler. Handlers of this project that write files say so with a class
    attribute ``main_process_only = True``.

    Args:
        handlers: the handler list of a trainer or evaluator.

    Returns:
        ``handlers`` unchanged on rank 0 (or when not distributed), else the handlers that every rank runs.
    """
    if handlers is None or is_main_process():
        return handlers
    kept = []
    for handler in handlers:
        if isinstance(handler, _MAIN_PROCESS_ONLY) or getattr(handler, "main_process_only", False):
            _discard_own_event_file(handler)
        else:
            kept.append(handler)
    return kept


def _discard_own_event_file(handler: object) -> None:
    # a TensorBoard handler opens its SummaryWriter, and with it an event file holding only a header, when the config
    # builds it, before it can be filtered out: close that writer and remove the file this process has just made, so
    # that only rank 0 leaves event files (a writer handed in from outside is not ours to close)
    if not isinstance(handler, TensorBoardHandler) or not getattr(handler, "internal_writer", False):
        return
    writer = handler._writer
    event_file = getattr(getattr(getattr(writer, "file_writer", None), "event_writer", None), "_file_name", None)
    writer.close()
    if event_file and os.path.isfile(event_file):
        os.remove(event_file)
