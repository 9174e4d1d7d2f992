"""Tests of ``python -m common.bundle``: the export, model_info and rank_uncertainty commands and their errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.bundle.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
NAME = "lesion_rgb_cmunext_segmentation"


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    bundles = tmp_path / "bundles"
    shutil.copytree(ROOT / "bundles" / "cmunext", bundles / "cmunext", ignore=shutil.ignore_patterns("models", "eval"))
    return bundles


def test_module_entry_point_lists_the_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "common.bundle", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert all(c in proc.stdout for c in ("export", "model_info", "rank_uncertainty"))


def test_model_info_writes_then_checks(collection: Path, capsys: pytest.CaptureFixture) -> None:
    index = str(collection / "model_info.json")
    assert main(["model_info", "--check", "--index", index]) == 1
    assert "has 0 entries" in capsys.readouterr().err
    assert main(["model_info", "--name", f"cmunext={NAME}", "--index", index]) == 0
    assert main(["model_info", "--check", "--index", index]) == 0
    assert "up to date" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--name takes"):
        main(["model_info", "--name", "cmunext", "--index", index])


def test_export_of_an_untrained_bundle_fails_clearly(collection: Path, tmp_path: Path, capsys) -> None:
    status = main(["export", str(collection / "cmunext"), "--out", str(tmp_path / "dist"), "--name", NAME])
    err = capsys.readouterr().err
    assert status == 1 and "model.pt does not exist" in err and "run training" in err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "dist"), "--name", NAME]) == 1
    assert "is not a bundle folder" in capsys.readouterr().err


def test_export_needs_a_zoo_name(collection: Path, tmp_path: Path, capsys) -> None:
    (collection / "model_info.json").write_text("{}")
    assert main(["export", str(collection / "cmunext"), "--out", str(tmp_path / "dist")]) == 1
    assert "has no model-zoo name" in capsys.readouterr().err


def test_rank_uncertainty_writes_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for case, value in (("a", 0.1), ("b", 0.3)):
        image = nib.Nifti1Image(np.full((3, 3, 3), value, np.float32), np.eye(4))
        nib.save(image, str(tmp_path / f"{case}_uncertainty.nii.gz"))
    assert main(["rank_uncertainty", str(tmp_path), "--num_classes", "2"]) == 0
    lines = (tmp_path / "uncertainty_ranking.csv").read_text().splitlines()
    assert lines[0].startswith("rank,case,mean_entropy") and lines[1].startswith("1,b,")
    assert main(["rank_uncertainty", str(tmp_path / "empty")]) == 1
