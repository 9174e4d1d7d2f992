"""Ignite handlers of the airway metrics, for MONAI evaluators (validation and evaluation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from common.metrics.airway import CCF_BETA, AirwayMetric, canonical_name

__all__ = ["AirwayMetricHandler"]

_ATM22_NAMES = {"dlr": ("td",), "dbr": ("bd",)}


class AirwayMetricHandler(IgniteMetricHandler):
    """Airway metrics of an evaluator's outputs; several metrics from one computation per case.

    The first name of ``metric_name`` is the handler's value (``engine.state.metrics[<attached name>]``, usable as the
    key metric). Every requested metric is also stored as ``engine.state.metrics[prefix + name]`` and, with
    ``save_details``, its per-case values as ``engine.state.metric_details[prefix + name]`` (what MONAI's
    ``MetricsSaver`` writes). For DLR and DBR the ATM'22 names (``td``, ``bd``) are stored too, so reports carry both.

    Args:
        metric_name: one or several airway metrics (see ``common.metrics.AIRWAY_METRICS``).
        prefix: prefix of the stored names (e.g. ``"test_"``); default: the attached name without the first metric's
            name at its end (``"val_ccf"`` -> ``"val_"``), else the attached name and ``"_"``.
        crop_margin: see :class:`~common.metrics.AirwayMetric`.
        min_iou: see :class:`~common.metrics.AirwayMetric`.
        max_rank: see :class:`~common.metrics.AirwayMetric`.
        beta: see :class:`~common.metrics.AirwayMetric`.
        reduction: MONAI reduction over cases.
        output_transform: ``engine.state.output`` -> ``(y_pred, y)``, e.g. ``from_engine(["pred", "label"])``.
        save_details: keep the per-case values.
    """

    def __init__(
        self,
        metric_name: str | Sequence[str] = "ccf",
        prefix: str | None = None,
        crop_margin: int = 20,
        min_iou: float = 0.1,
        max_rank: int = 5,
        beta: float = CCF_BETA,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric = AirwayMetric(
            metric_name=metric_name,
            crop_margin=crop_margin,
            min_iou=min_iou,
            max_rank=max_rank,
            beta=beta,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric, output_transform=output_transform, save_details=save_details)
        self.prefix = prefix

    def _prefix(self) -> str:
        if self.prefix is not None:
            return self.prefix
        name, first = self._name or "", self.metric_fn.metric_name[0]
        return name[: -len(first)] if name.endswith(first) and len(name) > len(first) else f"{name}_"

    def _stored_names(self, metric: str) -> list[str]:
        prefix, canonical = self._prefix(), canonical_name(metric)
        names = [metric, canonical, *_ATM22_NAMES.get(canonical, ())]
        return [prefix + name for name in dict.fromkeys(names)]

    def compute(self):
        """Store every requested metric (and its per-case values) and return the first one."""
        results = self.metric_fn.aggregate()
        results = results if isinstance(results, list) else [results]
        columns = self.metric_fn.buffer_columns() if self.save_details else {}
        engine: Engine | None = self._engine
        if engine is None or self._name is None:
            raise RuntimeError("please call the attach() function to connect expected engine first.")
        values = []
        for metric, result in zip(self.metric_fn.metric_name, results):
            value = result.squeeze().item() if hasattr(result, "squeeze") else float(result)
            values.append(value)
            for stored in self._stored_names(metric):
                if stored != self._name:
                    engine.state.metrics[stored] = value
                if self.save_details:
                    engine.state.metric_details[stored] = columns[metric]
        if self.save_details:
            engine.state.metric_details[self._name] = columns[self.metric_fn.metric_name[0]]
        self._is_reduced = True
        return values[0]
