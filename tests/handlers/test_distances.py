"""Tests of common.handlers.distances: HD95 and ASD in millimetres, with spacing given or read from the affine."""

from __future__ import annotations

import logging

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
