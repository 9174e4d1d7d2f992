"""Tests of common.handlers.distances: HD95 and ASD in millimetres, with spacing given or read from the affine."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from common.handlers import HausdorffDistanceMM, SurfaceDistanceMM, voxel_spacing

SPACING = (0.5, 2.0, 3.0)


def cubes(shift: int = 2, spacing: tuple[float, ...] | None = SPACING) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot (2, 12, 8, 8) prediction and truth: 4-voxel cubes, the prediction shifted ``shift`` voxels along x."""
    pred = torch.zeros(1, 12, 8, 8)
    truth = torch.zeros(1, 12, 8, 8)
    truth[0, 4:8, 2:6, 2:6] = 1
    pred[0, 4 + shift : 8 + shift, 2:6, 2:6] = 1
    pred, truth = torch.cat([1 - pred, pred]), torch.cat([1 - truth, truth])
    if spacing is None:
        return pred, truth
    affine = torch.diag(torch.tensor([*spacing, 1.0]))
    return MetaTensor(pred, affine=affine), MetaTensor(truth, affine=affine)


def run(handler, items: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    engine = Engine(lambda e, b: b)
    handler.attach(engine, "metric")
    engine.run([[[p for p, _ in items], [t for _, t in items]]])
    return engine.state.metrics["metric"]


def test_voxel_spacing_from_the_affine() -> None:
    pred, truth = cubes()
    assert voxel_spacing(truth) == pytest.approx(list(SPACING))
    assert voxel_spacing(torch.zeros(2, 3, 3, 3)) is None


def test_hausdorff_in_millimetres_uses_each_axis_spacing() -> None:
    """The shift is 2 voxels along x (0.5 mm each): the Hausdorff distance is 1 mm, not 2 voxels or 4 mm."""
    assert run(HausdorffDistanceMM(percentile=None), [cubes()]) == pytest.approx(1.0)
    assert run(HausdorffDistanceMM(percentile=None, spacing=SPACING), [cubes(spacing=None)]) == pytest.approx(1.0)
    assert run(HausdorffDistanceMM(percentile=None, spacing=0.25), [cubes(spacing=None)]) == pytest.approx(0.5)


def test_average_surface_distance_is_directed_by_default() -> None:
    """Directed ASD from the prediction's surface to the truth's, worked out for the shifted cubes (in voxels).

    The truth occupies x = 4..7, the prediction x = 6..9 (y, z = 2..5). The prediction's 56 surface voxels and their
    distance to the nearest truth surface voxel: x = 6 slice: 12 rim voxels on the truth's side faces (0) and 4
    centre voxels one voxel from the truth's x = 7 face (1); x = 7 rim: on the truth's x = 7 face (0); x = 8 rim: 1;
    x = 9 slice: 2.
    """
    pred, truth = cubes(spacing=None)
    distances = [0.0] * 12 + [1.0] * 4 + [0.0] * 12 + [1.0] * 12 + [2.0] * 16
    expected_voxels = sum(distances) / len(distances)
    assert run(SurfaceDistanceMM(spacing=1.0), [(pred, truth)]) == pytest.approx(expected_voxels, rel=1e-6)
    assert run(SurfaceDistanceMM(), [cubes()]) == pytest.approx(0.5 * expected_voxels, rel=1e-6)


def test_each_image_keeps_its_own_spacing() -> None:
    coarse = cubes(spacing=(1.0, 1.0, 1.0))
    fine = cubes(spacing=(0.5, 1.0, 1.0))
    assert run(HausdorffDistanceMM(percentile=None), [coarse, fine]) == pytest.approx((2.0 + 1.0) / 2)


def test_unknown_spacing_warns_and_counts_voxels(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert run(HausdorffDistanceMM(percentile=None), [cubes(spacing=None)]) == pytest.approx(2.0)
    assert "distances are in voxels" in caplog.text


# ------------------------------------------------------------------------------ missed cases count as failures
DIAGONAL = (6.0**2 + 16.0**2 + 24.0**2) ** 0.5  # (12, 8, 8) voxels of 0.5 x 2 x 3 mm: sqrt(868) = 29.46 mm


def empty(spacing: tuple[float, ...] = SPACING) -> torch.Tensor:
    """A one-hot (2, 12, 8, 8) mask with no foreground."""
    mask = torch.cat([torch.ones(1, 12, 8, 8), torch.zeros(1, 12, 8, 8)])
    return MetaTensor(mask, affine=torch.diag(torch.tensor([*spacing, 1.0])))


def run_engine(handler, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Engine:
    engine = Engine(lambda e, b: b)
    handler.attach(engine, "metric")
    engine.run([[[p for p, _ in items], [t for _, t in items]]])
    return engine


@pytest.mark.parametrize("handler_class", [HausdorffDistanceMM, SurfaceDistanceMM])
def test_empty_prediction_with_a_truth_scores_the_image_diagonal(handler_class) -> None:
    """MONAI alone gives HD95 NaN (a mean of 0.0, the best score, over such cases) and ASD inf."""
    _, truth = cubes()
    engine = run_engine(handler_class(), [(empty(), truth)])
    assert engine.state.metrics["metric"] == pytest.approx(DIAGONAL)
    assert engine.state.metrics["metric_missed"] == 1
    assert engine.state.metric_details["metric"].flatten().tolist() == pytest.approx([DIAGONAL])


@pytest.mark.parametrize("handler_class", [HausdorffDistanceMM, SurfaceDistanceMM])
def test_prediction_on_an_empty_truth_scores_the_image_diagonal(handler_class) -> None:
    pred, _ = cubes()
    engine = run_engine(handler_class(), [(pred, empty())])
    assert engine.state.metrics["metric"] == pytest.approx(DIAGONAL)
    assert engine.state.metrics["metric_missed"] == 1


@pytest.mark.parametrize("handler_class", [HausdorffDistanceMM, SurfaceDistanceMM])
def test_both_empty_is_left_out_of_the_mean_and_not_a_miss(handler_class) -> None:
    engine = run_engine(handler_class(), [(empty(), empty())])
    assert math.isnan(engine.state.metrics["metric"])  # no finite value: NaN, not MONAI's 0.0
    assert engine.state.metrics["metric_missed"] == 0
    hit = run(handler_class(), [cubes()])
    engine = run_engine(handler_class(), [cubes(), (empty(), empty())])
    assert engine.state.metrics["metric"] == pytest.approx(hit)
    assert engine.state.metrics["metric_missed"] == 0


def test_a_miss_counts_in_the_mean_and_is_worse_than_any_segmentation() -> None:
    _, truth = cubes()
    engine = run_engine(HausdorffDistanceMM(percentile=None), [cubes(), (empty(), truth)])
    assert engine.state.metrics["metric"] == pytest.approx((1.0 + DIAGONAL) / 2)  # 1 mm for the shifted cube
    assert engine.state.metrics["metric_missed"] == 1
    far = torch.zeros(1, 12, 8, 8)
    far[0, 11, 7, 7] = 1  # one voxel in the far corner from the truth
    far = MetaTensor(torch.cat([1 - far, far]), affine=truth.affine)
    assert run(HausdorffDistanceMM(percentile=None), [(far, truth)]) < DIAGONAL


def test_image_diagonal_and_the_tensor_rule() -> None:
    from common.handlers import image_diagonal, missed_case_distances

    assert image_diagonal((12, 8, 8), SPACING) == pytest.approx(DIAGONAL)
    assert image_diagonal((3, 4)) == pytest.approx(5.0)
    assert image_diagonal((3, 4), 2.0) == pytest.approx(10.0)
    pred, truth = cubes(spacing=None)
    batch_pred = torch.stack([pred, empty(), pred, empty()])
    batch_truth = torch.stack([truth, truth, empty(), empty()])
    monai_values = torch.tensor([[1.5], [float("nan")], [float("inf")], [float("nan")]])
    values, missed = missed_case_distances(monai_values, batch_pred, batch_truth, spacing=None)
    diagonal = image_diagonal((12, 8, 8))
    assert values[:3].flatten().tolist() == pytest.approx([1.5, diagonal, diagonal])
    assert math.isnan(float(values[3, 0]))
    assert missed.flatten().tolist() == [False, True, True, False]


def _targets_and_savers(config):
    """(distance metric name -> _target_, names saved by MetricsSaver) of a parsed-as-JSON evaluate config."""
    targets, saved = {}, set()

    def walk(node, name=None):
        if isinstance(node, dict):
            if name is not None and name.endswith(("_hd95", "_asd")) and "_target_" in node:
                targets[name] = node["_target_"]
            if node.get("_target_") == "MetricsSaver":
                saved.update(node.get("metrics") or [])
            for key, value in node.items():
                walk(value, key)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return targets, saved


def test_every_evaluate_config_scores_misses_and_saves_their_count() -> None:
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    checked = 0
    for path in sorted(root.glob("bundles/*/configs/evaluate*.json")):
        targets, saved = _targets_and_savers(json.loads(path.read_text()))
        for name, target in targets.items():
            assert target in ("common.handlers.HausdorffDistanceMM", "common.handlers.SurfaceDistanceMM"), path
            assert name + "_missed" in saved, f"{path}: {name}_missed is not saved"
            checked += 1
    assert checked >= 7  # asenet (2 configs), ugmcl, cmunext: HD95 + ASD; dfcps: HD95
