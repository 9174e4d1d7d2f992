"""The airway metric handler: one computation, every metric stored with its ATM'22 alias, per-case details kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from common.handlers import AirwayMetricHandler
from common.metrics import airway_metrics


def tube_case(cut: int) -> tuple[torch.Tensor, torch.Tensor]:
    truth = np.zeros((24, 24, 40), dtype=bool)
    truth[10:15, 10:15, 4:36] = True  # odd width: Lee's thinning erases a straight bar of even width entirely
    pred = truth.copy()
    pred[:, :, cut:] = False
    return torch.from_numpy(pred)[None, None].float(), torch.from_numpy(truth)[None, None].float()


def run(handler: AirwayMetricHandler, name: str, cases: list) -> Engine:
    engine = Engine(lambda engine, batch: {"pred": batch[0], "label": batch[1]})
    engine.state.metric_details = {}
    handler.attach(engine, name)
    engine.run(cases, max_epochs=1)
    return engine


def test_every_metric_is_stored_with_aliases_and_details() -> None:
    cases = [tube_case(36), tube_case(20)]
    handler = AirwayMetricHandler(
        metric_name=["ccf", "iou", "dlr", "dbr"], output_transform=lambda out: (out["pred"], out["label"])
    )
    engine = run(handler, "val_ccf", cases)
    metrics = engine.state.metrics
    expected = [airway_metrics(p[0, 0], t[0, 0], ["ccf", "iou", "dlr", "dbr"]) for p, t in cases]
    for name in ("ccf", "iou", "dlr", "dbr"):
        mean = np.mean([e[name] for e in expected])
        key = f"val_{name}"
        assert (metrics[key] if key != "val_ccf" else metrics["val_ccf"]) == pytest.approx(mean), name
        assert engine.state.metric_details[key].shape == (2, 1)
    assert metrics["val_td"] == metrics["val_dlr"] and metrics["val_bd"] == metrics["val_dbr"]
    assert engine.state.metric_details["val_bd"][:, 0].tolist() == pytest.approx([1.0, 0.0])


def test_explicit_prefix_and_single_metric() -> None:
    handler = AirwayMetricHandler(metric_name="bd", prefix="test_", output_transform=lambda o: (o["pred"], o["label"]))
    engine = run(handler, "branches", [tube_case(36)])
    assert engine.state.metrics["branches"] == 1.0
    assert engine.state.metrics["test_bd"] == 1.0 and engine.state.metrics["test_dbr"] == 1.0
