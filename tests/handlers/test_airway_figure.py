"""Airway figures: detected and missed branches coloured as the DBR metric decides, written by an evaluator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from common.handlers import AirwayFigureSaver, draw_airway_projection


def capsule(shape, start, end, radius):
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), axis=-1)
    start, end = np.asarray(start, float), np.asarray(end, float)
    t = np.clip(((grid - start) @ (end - start)) / ((end - start) @ (end - start)), 0, 1)
    return np.linalg.norm(grid - (start + t[..., None] * (end - start)), axis=-1) <= radius


@pytest.fixture(scope="module")
def y_case() -> tuple[torch.Tensor, torch.Tensor]:
    shape = (44, 30, 60)
    trunk = capsule(shape, (22, 15, 4), (22, 15, 30), 3.0)
    left = capsule(shape, (22, 15, 30), (8, 15, 52), 2.5)
    right = capsule(shape, (22, 15, 30), (36, 15, 52), 2.5)
    truth = torch.from_numpy(trunk | left | right)[None].float()
    pred = torch.from_numpy(trunk | left)[None].float()
    return pred, truth


def test_projection_colours_detected_and_missed_branches(tmp_path: Path, y_case) -> None:
    pred, truth = y_case
    summary = draw_airway_projection(pred, truth, tmp_path / "y.png", title="Y")
    assert summary["branches"] == 3 and summary["detected"] == 2 and summary["dbr"] == pytest.approx(2 / 3)
    pixels = np.asarray(Image.open(tmp_path / "y.png").convert("RGB")).reshape(-1, 3).astype(int)
    green = (pixels[:, 1] > 150) & (pixels[:, 0] < 80) & (pixels[:, 2] < 100)
    red = (pixels[:, 0] > 200) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)
    assert green.sum() > 100 and red.sum() > 50  # the detected trunk and left branch, the missed right branch


def test_handler_writes_one_figure_per_case_up_to_the_limit(tmp_path: Path, y_case) -> None:
    pred, truth = y_case
    onehot = torch.cat([1 - pred, pred])
    items = [
        {
            "image": MetaTensor(torch.zeros_like(truth), meta={"filename_or_obj": f"/d/case_{i}_0000.nii.gz"}),
            "pred": onehot,
            "label": truth,
        }
        for i in range(3)
    ]
    engine = Engine(lambda engine, batch: batch)
    saver = AirwayFigureSaver(str(tmp_path), max_cases=2)
    saver.attach(engine)
    engine.run([items[:2], items[2:]], max_epochs=1)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["airway_case_0_0000.png", "airway_case_1_0000.png"]
    with pytest.raises(ValueError):
        AirwayFigureSaver(str(tmp_path), max_cases=-1)
