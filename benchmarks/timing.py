"""Timing shared by the benchmark scripts: seconds per Ignite iteration and a one-line description of the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch
from ignite.engine import Engine, Events

__all__ = ["IterationTimer", "describe_machine"]


def describe_machine(device: torch.device) -> str:
    """``"<GPU name>"`` or ``"CPU, <n> torch threads"``, then the processor, core count and torch version."""
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} torch threads"
    return f"{where}; {platform.processor() or platform.machine()}; {os.cpu_count()} cores; torch {torch.__version__}"


class IterationTimer:
    """Wall time of every iteration of an engine, synchronising CUDA so that queued kernels are counted.

    Args:
        device: the engine's device.
        digits: decimals of the printed seconds.
        verbose: print each iteration's time as it ends.
    """

    def __init__(self, device: torch.device, digits: int = 1, verbose: bool = True) -> None:
        self.device = device
        self.digits = digits
        self.verbose = verbose
        self.durations: list[float] = []
        self._started = 0.0

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self, _: Engine) -> None:
        self._synchronize()
        self._started = time.perf_counter()

    def _stop(self, engine: Engine) -> None:
        self._synchronize()
        self.durations.append(time.perf_counter() - self._started)
        if self.verbose:
            total = engine.state.epoch_length * engine.state.max_epochs
            print(f"iteration {engine.state.iteration}/{total}: {self.durations[-1]:.{self.digits}f} s", flush=True)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._stop)

    def timed(self, warmup: int) -> list[float]:
        """The durations after the first ``warmup`` (all of them when there are no more)."""
        return self.durations[warmup:] or self.durations

    def summary(self, warmup: int) -> str:
        """``"<mean> s per iteration (min, max), mean of <n> after <warmup> warm-up"``."""
        timed, d = self.timed(warmup), self.digits
        spread = f" (min {min(timed):.{d}f}, max {max(timed):.{d}f})" if len(timed) > 1 else ""
        return f"{statistics.mean(timed):.{d}f} s per iteration{spread}, mean of {len(timed)} after {warmup} warm-up"
