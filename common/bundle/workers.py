"""How many data-loader worker processes a machine can give: the preferred number, capped by the CPUs available."""

from __future__ import annotations

import os

__all__ = ["available_cpus", "loader_workers"]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: what a container or ``taskset`` allows), at least 1.

    Returns:
        ``len(os.sched_getaffinity(0))`` where the platform has it, else ``os.cpu_count()``.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def loader_workers(preferred: int) -> int:
    """The ``num_workers`` of a bundle's loaders: ``preferred``, but no more than the CPUs available.

    PyTorch's ``DataLoader`` warns ("This DataLoader will create 4 worker processes in total. Our suggested max
    number of worker in current system is 2") when asked for more workers than ``os.sched_getaffinity`` allows, and
    such workers only compete with the training for the same cores. A value given on the command line
    (``--num_workers 0``) replaces this expression and is used as it is.

    Args:
        preferred: the recipe's number of workers (e.g. 4 on a GPU machine).

    Returns:
        ``min(preferred, available_cpus())``; 0 stays 0 (loading in the main process).

    Raises:
        ValueError: when ``preferred`` is negative.
    """
    if preferred < 0:
        raise ValueError(f"preferred must be 0 or more, got {preferred}")
    return min(int(preferred), available_cpus())
