"""Training curves: loss terms, schedules and validation metrics recorded during training and drawn as one PNG."""

from __future__ import annotations

import csv
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys

__all__ = ["TrainingCurvesSaver", "scalar_outputs"]

logger = logging.getLogger(__name__)

# batch tensors a MONAI trainer puts in its output beside the losses: never curves
_BATCH_KEYS = (CommonKeys.IMAGE, CommonKeys.LABEL, CommonKeys.PRED)


def _as_float(value: Any) -> float | None:
    """A Python number or a one-element tensor as a float; None for anything else (images, predictions, lists)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Number):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().float().cpu().item())
    return None


def scalar_outputs(output: Any, keys: Sequence[str] | None = None) -> dict[str, float]:
    """The scalar entries of a trainer's ``engine.state.output``.

    Args:
        output: a dict (MONAI's trainers), a list of dicts after decollation (every item repeats the batch values,
            so the first one is read) or a bare loss tensor/number (recorded as ``"loss"``).
        keys: the keys to read (a missing key raises); None reads every scalar entry except the batch tensors.

    Returns:
        ``{key: value}`` in the output's order.

    Raises:
        KeyError: when a requested key is not in the output.
    """
    item = output[0] if isinstance(output, (list, tuple)) and output else output
    if not isinstance(item, Mapping):
        value = _as_float(item)
        return {} if value is None else {"loss": value}
    if keys is not None:
        missing = [k for k in keys if k not in item]
        if missing:
            raise KeyError(f"engine output has no {missing}; it has {sorted(map(str, item))}.")
        return {k: float(_as_float(item[k])) for k in keys}
    found = {}
    for key, value in item.items():
        if key in _BATCH_KEYS:
            continue
        number = _as_float(value)
        if number is not None:
            found[str(key)] = number
    return found


class TrainingCurvesSaver:
    """Record a trainer's loss terms, schedules and validation metrics, and draw them as a PNG (and a CSV).

    Per iteration it records the scalar entries of ``engine.state.output`` (every loss term a method's
    ``_iteration`` returns, and schedule values it reports, such as UG-MCL's ``consistency_weight``) and the named
    ``engine.state`` attributes (values written by schedule handlers); after each run of the ``validator`` (MONAI's
    ``ValidationHandler`` runs it on the trainer's epochs) it records the validator's ``state.metrics`` against the
    trainer's epoch. When training completes it writes ``<output_dir>/<filename>`` with three panels (loss terms
    per iteration with their per-epoch mean; other recorded values per iteration; validation metrics per epoch)
    and the raw values as ``<stem>.csv`` (columns ``kind, epoch, iteration, name, value``).

    Under DDP only rank 0 records and writes (``main_process_only`` also lets
    :func:`common.bundle.handlers_for_this_rank` drop the handler on the other ranks). A resumed run records from
    the iteration it resumes at; one that records nothing leaves existing curves in place.

    Args:
        output_dir: folder of the PNG and CSV (created when missing).
        output_keys: keys of the trainer output to record; None records every scalar entry.
        state_attributes: names of ``engine.state`` attributes to record each iteration (missing ones are skipped).
        validator: the evaluator whose metrics to record (e.g. ``@validate#evaluator``); None records none.
        interval: record every ``interval`` iterations.
        filename: PNG file name.
        title: figure title.
    """

    main_process_only = True

    def __init__(
        self,
        output_dir: str | Path,
        output_keys: Sequence[str] | None = None,
        state_attributes: Sequence[str] | None = None,
        validator: Engine | None = None,
        interval: int = 1,
        filename: str = "training_curves.png",
        title: str = "",
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be a positive number of iterations, got {interval}.")
        if not filename.endswith(".png"):
            raise ValueError(f"filename must name a .png file, got {filename!r}.")
        self.output_dir = Path(output_dir)
        self.output_keys = None if output_keys is None else list(output_keys)
        self.state_attributes = list(state_attributes) if state_attributes else []
        self.validator = validator
        self.interval = interval
        self.filename = filename
        self.title = title
        self.iterations: dict[str, list[tuple[int, int, float]]] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self._trainer: Engine | None = None

    @property
    def png_path(self) -> Path:
        """The PNG written at the end of training."""
        return self.output_dir / self.filename

    @property
    def csv_path(self) -> Path:
        """The CSV of the recorded values, beside the PNG."""
        return self.png_path.with_suffix(".csv")

    def attach(self, engine: Engine) -> None:
        """Attach to a trainer (and to the validator given at construction).

        Args:
            engine: the trainer.
        """
        if idist.get_rank() != 0:
            return
        self._trainer = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.record_iteration)
        engine.add_event_handler(Events.COMPLETED, self.save)
        if self.validator is not None:
            self.validator.add_event_handler(Events.COMPLETED, self.record_validation)

    def record_iteration(self, engine: Engine) -> None:
        """Record the scalar outputs and state attributes of the trainer's current iteration."""
        values = scalar_outputs(engine.state.output, self.output_keys)
        for name in self.state_attributes:
            value = _as_float(getattr(engine.state, name, None))
            if value is not None:
                values[name] = value
        for name, value in values.items():
            self.iterations.setdefault(name, []).append((engine.state.epoch, engine.state.iteration, value))

    def record_validation(self, validator: Engine) -> None:
        """Record the validator's metrics against the trainer's epoch."""
        epoch = self._trainer.state.epoch if self._trainer is not None else validator.state.epoch
        for name, value in validator.state.metrics.items():
            number = _as_float(value)
            if number is not None:
                self.metrics.setdefault(name, []).append((epoch, number))

    def save(self, engine: Engine | None = None) -> Path:
        """Write the CSV and the PNG of everything recorded so far.

        Args:
            engine: unused (Ignite passes the trainer).

        Returns:
            the PNG path.

        A run that recorded nothing (a finished training run again: it resumes at its last iteration and trains
        none) writes nothing, so that the curves of the run that trained stay as they were.
        """
        if not self.iterations and not self.metrics:
            kept = [str(p) for p in (self.png_path, self.csv_path) if p.exists()]
            logger.info(
                f"nothing recorded: training curves not written{' (kept ' + ', '.join(kept) + ')' if kept else ''}"
            )
            return self.png_path
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "epoch", "iteration", "name", "value"])
            for name, rows in self.iterations.items():
                writer.writerows(("iteration", e, i, name, v) for e, i, v in rows)
            for name, rows in self.metrics.items():
                writer.writerows(("validation", e, "", name, v) for e, v in rows)
        self._draw()
        logger.info(f"training curves written to {self.png_path}")
        return self.png_path

    def _draw(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        losses = {k: v for k, v in self.iterations.items() if "loss" in k.lower()}
        others = {k: v for k, v in self.iterations.items() if k not in losses}
        panels = [(losses, "loss terms", "iteration"), (others, "schedules and other outputs", "iteration")]
        panels.append((self.metrics, "validation metrics", "epoch"))
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for ax, (series, title, xlabel) in zip(axes, panels):
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            if not series:
                ax.text(0.5, 0.5, "nothing recorded", ha="center", va="center", transform=ax.transAxes)
                continue
            for name, rows in series.items():
                if xlabel == "epoch":
                    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=name)
                    continue
                line = ax.plot([r[1] for r in rows], [r[2] for r in rows], alpha=0.35, linewidth=0.8)[0]
                epochs = sorted({r[0] for r in rows})
                ends = [max(r[1] for r in rows if r[0] == e) for e in epochs]
                means = [(end, _mean([r[2] for r in rows if r[0] == e])) for end, e in zip(ends, epochs)]
                ax.plot([m[0] for m in means], [m[1] for m in means], color=line.get_color(), marker=".", label=name)
            if xlabel == "iteration" and all(v > 0 for rows in series.values() for *_, v in rows) and _spread(series):
                ax.set_yscale("log")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        if self.title:
            fig.suptitle(self.title)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=100)
        plt.close(fig)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _spread(series: dict[str, list[tuple[int, int, float]]]) -> bool:
    """Whether the values span more than two decades (then a log axis shows them all)."""
    values = [v for rows in series.values() for *_, v in rows]
    return max(values) / min(values) > 100.0
