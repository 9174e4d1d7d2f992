"""Tests of the accuracy benchmark's tables: a missed case counts as a failure and every table says how many there were.

The rows are built from the evaluate handlers themselves (``common.handlers.HausdorffDistanceMM`` and
``SurfaceDistanceMM`` on an empty prediction, an empty truth, and both empty), so the chain handler -> row -> table is
what is checked.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from common.handlers import HausdorffDistanceMM, SurfaceDistanceMM, image_diagonal

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy  # noqa: E402

SHAPE = (10, 10, 10)
SPACING = (1.0, 1.0, 2.0)
DIAGONAL = image_diagonal(SHAPE, SPACING)  # sqrt(100 + 100 + 400) = 24.49 mm


def mask(filled: bool) -> MetaTensor:
    """One-hot (2, 10, 10, 10): a 4-voxel cube when ``filled``, else empty."""
    foreground = torch.zeros(1, *SHAPE)
    if filled:
        foreground[0, 3:7, 3:7, 3:7] = 1
    return MetaTensor(torch.cat([1 - foreground, foreground]), affine=torch.diag(torch.tensor([*SPACING, 1.0])))


def evaluate(pairs: list[tuple[bool, bool]]) -> dict[str, float]:
    """The test metrics the evaluate config's handlers write for ``(prediction filled, truth filled)`` cases."""
    engine = Engine(lambda e, batch: batch)
    HausdorffDistanceMM(percentile=95).attach(engine, "test_hd95")
    SurfaceDistanceMM().attach(engine, "test_asd")
    engine.run([[[mask(p) for p, _ in pairs], [mask(t) for _, t in pairs]]])
    return dict(engine.state.metrics)


def row(seed: int, metrics: dict[str, float], method: str = "ugmcl") -> dict[str, object]:
    return {"bundle": "ugmcl", "method": method, "fraction": 0.2, "labeled": 4, "seed": seed, **metrics}


@pytest.mark.parametrize(
    "case, missed",
    [((False, True), 1), ((True, False), 1), ((False, False), 0)],
    ids=["empty prediction", "empty truth", "both empty"],
)
def test_handlers_to_table_for_each_empty_case(case, missed):
    metrics = evaluate([(True, True), case])
    assert metrics["test_hd95_missed"] == missed and metrics["test_asd_missed"] == missed
    expected_hd95 = (0.0 + DIAGONAL) / 2 if missed else 0.0  # the perfect case scores 0; both empty is left out
    assert metrics["test_hd95"] == pytest.approx(expected_hd95)
    table = accuracy.markdown([row(0, {"test_mean_dice": 0.5, **metrics})], "header")
    line = next(line for line in table.splitlines() if line.startswith("| 0.2 |"))
    header = next(line for line in table.splitlines() if line.startswith("| labeled fraction"))
    assert header.endswith("| test_hd95 missed cases | test_asd missed cases |")
    assert line.endswith(f"| {missed} | {missed} |")
    assert f"| {expected_hd95:.3f} ± 0.000 |" in line
    assert "image diagonal in mm" in table


def test_missed_cases_are_summed_over_seeds_and_the_mean_keeps_the_miss():
    rows = [row(0, evaluate([(True, True), (False, True)])), row(1, evaluate([(True, True), (True, True)]))]
    summary = accuracy.summarise(rows)[("ugmcl", 0.2, "ugmcl")]
    assert summary["test_hd95_missed"][:1] == (1.0,)
    assert summary["test_hd95"][0] == pytest.approx((DIAGONAL / 2 + 0.0) / 2)


def test_a_non_finite_run_is_named_not_dropped_without_a_word():
    """An old row with MONAI's inf ASD: the table says one of two runs was left out (it showed ``± 0.000``)."""
    rows = [row(0, {"test_asd": 2.0}), row(1, {"test_asd": math.inf})]
    table = accuracy.markdown(rows, "header")
    assert "| 2.000 ± 0.000 (1 of 2 runs not finite, left out) | not recorded |" in table


def test_a_column_of_nan_values_stays_in_the_table():
    table = accuracy.markdown([row(0, {"test_hd95": math.nan, "test_hd95_missed": 0})], "header")
    assert "| nan ± nan (1 of 1 runs not finite, left out) | 0 |" in table
