"""What a training says about itself: a start banner, an ETA, and a config-friendly progress bar."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

__all__ = ["TrainingBanner", "TrainingProgressBar", "format_duration"]

logger = logging.getLogger("common.handlers")


def format_duration(seconds: float) -> str:
    """A duration for people: ``"45 s"``, ``"3 min 20 s"``, ``"7 h 05 min"``, ``"2 d 03 h"``.

    Args:
        seconds: the duration in seconds (negative values count as 0).

    Returns:
        the duration rounded to its two largest units.
    """
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def _quick_command(bundle_root: str) -> str | None:
    configs = Path(bundle_root) / "configs"
    if not (configs / "quick.json").is_file():
        return None
    with contextlib.suppress(ValueError):  # the documented form runs from the repository root: keep paths short
        configs = configs.resolve().relative_to(Path.cwd().resolve())
    files = f"['{configs / 'train.json'}','{configs / 'quick.json'}']"
    return f'python -m monai.bundle run training --config_file "{files}"'


class TrainingBanner:
    """Say what a training is about to do before its first iteration, then how long it will take.

    At ``STARTED`` (after a resumed checkpoint has set the iteration), one banner: device, AMP on/off, the data set
    folder and the number of cases per datalist split, iterations per epoch, in total and still to run. After the
    ``warmup`` iterations (the first one allocates memory and fills caches: it can take twice as long) and ``eta_after``
    timed ones, the measured time per iteration and the ETA of the remaining ones (training steps only: validation
    comes on top). When the device is a CPU and that ETA exceeds ``cpu_warning_seconds``
    (a recipe meant for a GPU), a warning with the ETA and the command of the quick CPU config instead.

    A 3D recipe on a CPU can take minutes per iteration; the banner makes sure that the run is never silent
    until the progress bar's first update.

    Args:
        datalist: the bundle's datalist (``common.data.prepare_datalist``); every list in it is counted.
        dataset_dir: the data set folder, shown in the banner.
        bundle_root: the bundle's folder; when it has ``configs/quick.json``, the CPU warning gives the command that
            layers it on ``train.json``.
        eta_after: iterations timed before the ETA is logged.
        warmup: iterations run before the timing starts.
        cpu_warning_seconds: ETA above which a CPU run gets the warning.
    """

    main_process_only = True

    def __init__(
        self,
        datalist: Mapping[str, Any] | None = None,
        dataset_dir: str | None = None,
        bundle_root: str | None = None,
        eta_after: int = 1,
        warmup: int = 1,
        cpu_warning_seconds: float = 1800.0,
    ) -> None:
        if eta_after < 1 or warmup < 0:
            raise ValueError(f"eta_after must be at least 1 and warmup at least 0, got {eta_after} and {warmup}")
        self.datalist = datalist
        self.dataset_dir = dataset_dir
        self.quick_command = _quick_command(bundle_root) if bundle_root else None
        self.eta_after = int(eta_after)
        self.warmup = int(warmup)
        self.cpu_warning_seconds = float(cpu_warning_seconds)
        self._start_iteration = 0
        self._timer_start: float | None = None

    def attach(self, engine: Engine) -> None:
        """Log the banner at ``STARTED`` and time the first iterations for the ETA.

        Args:
            engine: the trainer (a MONAI workflow: ``state.device`` and ``amp`` are read when present).
        """
        engine.add_event_handler(Events.STARTED, self.banner)
        engine.add_event_handler(Events.ITERATION_STARTED, self._start_timer)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._estimate)

    @staticmethod
    def _device(engine: Engine) -> torch.device | None:
        device = getattr(engine.state, "device", None)
        return torch.device(device) if device is not None else None

    def _total(self, engine: Engine) -> int:
        return int(engine.state.max_epochs or 0) * int(engine.state.epoch_length or 0)

    def banner(self, engine: Engine) -> str:
        """Log (and return) the start banner.

        Args:
            engine: the trainer.

        Returns:
            the banner's text.
        """
        device = self._device(engine)
        per_epoch = int(engine.state.epoch_length or 0)
        total = self._total(engine)
        self._start_iteration = int(engine.state.iteration)
        self._timer_start = None
        counts = ""
        if self.datalist:
            splits = [
                f"{k} {len(v)}" for k, v in self.datalist.items() if isinstance(v, Sequence) and not isinstance(v, str)
            ]
            counts = ", ".join(splits)
        amp = "on" if getattr(engine, "amp", False) else "off"
        lines = [
            f"device {device if device is not None else 'unknown'}, AMP {amp}",
            f"data {self.dataset_dir or '(not given)'}" + (f": {counts} cases" if counts else ""),
            f"{per_epoch} iterations per epoch x {engine.state.max_epochs} epochs = {total} iterations"
            + (f", {total - self._start_iteration} still to run (resumed)" if self._start_iteration else ""),
        ]
        text = "training starts: " + "; ".join(lines)
        logger.info(text)
        return text

    def _start_timer(self, engine: Engine) -> None:
        # Ignite counts the iteration before it fires ITERATION_STARTED: this is the first timed one
        if self._timer_start is None and int(engine.state.iteration) - self._start_iteration == self.warmup + 1:
            self._timer_start = time.perf_counter()

    def _estimate(self, engine: Engine) -> None:
        done = int(engine.state.iteration) - self._start_iteration - self.warmup
        if done != self.eta_after or self._timer_start is None:
            return
        per_iteration = (time.perf_counter() - self._timer_start) / done
        self.report_eta(engine, per_iteration)

    def report_eta(self, engine: Engine, per_iteration: float) -> str:
        """Log (and return) the ETA from a measured time per iteration; warn on a CPU when it is long.

        Args:
            engine: the trainer.
            per_iteration: seconds per training iteration.

        Returns:
            the logged text.
        """
        remaining = max(0, self._total(engine) - int(engine.state.iteration))
        eta = per_iteration * remaining
        text = (
            f"{format_duration(per_iteration)} per iteration (measured over {self.eta_after} after {self.warmup} "
            f"warm-up): about "
            f"{format_duration(eta)} for the {remaining} remaining iterations (validation not included)"
        )
        device = self._device(engine)
        if device is not None and device.type == "cpu" and eta > self.cpu_warning_seconds:
            text = f"this recipe is meant for a GPU: on this CPU, {text}"
            if self.quick_command:
                text += f". For a quick CPU run use the quick config instead: {self.quick_command}"
            logger.warning(text)
        else:
            logger.info(text)
        return text


class TrainingProgressBar(ProgressBar):
    """Ignite's tqdm ``ProgressBar`` whose display options are constructor arguments.

    MONAI's workflows attach handlers with ``handler.attach(engine)`` only, so what Ignite takes at attach time
    (the loss to show, metrics, ``engine.state`` attributes such as a ramped consistency weight) is given here.

    Args:
        output_keys: keys of the engine output shown by name (e.g. ``["loss"]``; MONAI's trainers output a dict, or
            a list of dicts after decollation, with the batch value in every item).
        metric_names: names in ``engine.state.metrics`` to show, or ``"all"``.
        state_attributes: names of ``engine.state`` attributes to show (schedules written by other handlers).
        persist: keep the finished bar of each epoch on screen.
        tqdm_kwargs: other arguments of :class:`ignite.handlers.ProgressBar` / tqdm.
    """

    main_process_only = True

    def __init__(
        self,
        output_keys: Sequence[str] | None = ("loss",),
        metric_names: str | Sequence[str] | None = None,
        state_attributes: Sequence[str] | None = None,
        persist: bool = True,
        **tqdm_kwargs,
    ) -> None:
        super().__init__(persist=persist, **tqdm_kwargs)
        self.output_keys = list(output_keys) if output_keys else []
        self.metric_names = metric_names
        self.state_attributes = list(state_attributes) if state_attributes else None

    def _named_outputs(self, output) -> dict:
        # a decollated output repeats the batch value in every item: the first one is enough
        item = output[0] if isinstance(output, list) else output
        return {k: float(item[k]) for k in self.output_keys}

    def attach(self, engine: Engine, *args, **kwargs) -> None:  # type: ignore[override]
        if args or kwargs:  # Ignite's own signature stays usable
            return super().attach(engine, *args, **kwargs)
        names = self.metric_names
        if names is not None and not isinstance(names, str):
            names = list(names)
        super().attach(
            engine,
            metric_names=names,
            output_transform=self._named_outputs if self.output_keys else None,
            state_attributes=self.state_attributes,
        )
