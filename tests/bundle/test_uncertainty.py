"""Tests of common.bundle.uncertainty: ranking cases by their entropy maps, the CSV, clear errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.bundle.uncertainty import rank_by_uncertainty, write_ranking


def save_map(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(values.astype(np.float32), np.eye(4)), str(path))
    return path


def test_cases_are_ranked_by_mean_entropy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    means = {"case_a": 0.05, "case_b": 0.4, "sub/case_c": 0.2}
    for case, mean in means.items():
        save_map(tmp_path / f"{case}_uncertainty.nii.gz", np.full((4, 5, 6), mean) + rng.uniform(0, 1e-3, (4, 5, 6)))
        save_map(tmp_path / f"{case}_seg.nii.gz", np.zeros((4, 5, 6)))  # predictions are not maps
    ranking = rank_by_uncertainty(tmp_path)
    assert [c.case for c in ranking] == ["case_b", "sub/case_c", "case_a"]
    assert ranking[0].mean_entropy == pytest.approx(0.4, abs=1e-3)
    assert ranking[0].max_entropy >= ranking[0].mean_entropy

    csv_file = write_ranking(ranking, tmp_path / "ranking" / "cases.csv", num_classes=2)
    rows = list(csv.DictReader(csv_file.open()))
    assert [r["case"] for r in rows] == ["case_b", "sub/case_c", "case_a"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["normalised_mean"]) == pytest.approx(0.4 / math.log(2), abs=1e-2)


def test_custom_postfix(tmp_path: Path) -> None:
    save_map(tmp_path / "x_entropy.nii.gz", np.ones((2, 2, 2)))
    assert [c.case for c in rank_by_uncertainty(tmp_path, postfix="entropy")] == ["x"]


def test_no_map_says_to_save_uncertainty(tmp_path: Path) -> None:
    save_map(tmp_path / "x_seg.nii.gz", np.zeros((2, 2, 2)))
    with pytest.raises(FileNotFoundError, match="--save_uncertainty True"):
        rank_by_uncertainty(tmp_path)


def test_negative_or_nan_maps_are_refused(tmp_path: Path) -> None:
    save_map(tmp_path / "x_uncertainty.nii.gz", np.array([[[-1.0, 0.0]]]))
    with pytest.raises(ValueError, match="x_uncertainty.nii.gz: an entropy map must be finite and non-negative"):
        rank_by_uncertainty(tmp_path)
