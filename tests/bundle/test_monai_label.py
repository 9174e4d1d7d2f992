"""Tests of common.bundle.monai_label: the reads of MONAI Label's bundle tasks, and what breaks them."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from common.bundle.export import stage_bundle
from common.bundle.monai_label import check_monai_label_contract, main

ROOT = Path(__file__).resolve().parents[2]
NAME = "lesion_rgb_cmunext_segmentation"


@pytest.fixture(scope="module")
def staged_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("src") / "cmunext"
    shutil.copytree(ROOT / "bundles" / "cmunext", source, ignore=shutil.ignore_patterns("models", "eval", "data"))
    return stage_bundle(source, tmp_path_factory.mktemp("staged") / NAME, NAME).path


@pytest.fixture
def staged(staged_once: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(staged_once, tmp_path / NAME))


def edit(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content, indent=4))


def test_exported_cmunext_meets_the_contract(staged: Path) -> None:
    assert check_monai_label_contract(staged) == []
    assert not [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]  # the bundle's code is unloaded


def test_weights_that_do_not_fit_are_reported(staged: Path) -> None:
    import torch

    (staged / "models").mkdir()
    torch.save({"not_a_layer.weight": torch.zeros(1)}, staged / "models" / "model.pt")
    problems = check_monai_label_contract(staged)
    assert len(problems) == 1 and "model.pt does not fit network_def" in problems[0]


@pytest.mark.parametrize(
    "config, change, message",
    [
        ("metadata.json", lambda m: m["network_data_format"]["outputs"]["pred"].pop("channel_def"), "channel_def"),
        (
            "metadata.json",
            lambda m: m["network_data_format"]["outputs"]["pred"].update(channel_def={"0": "background"}),
            "no label besides 'background'",
        ),
        ("metadata.json", lambda m: m["network_data_format"]["inputs"]["image"].pop("spatial_shape"), "dimension"),
        ("train.json", lambda c: c.pop("network"), r"lacks \['network'\]"),
        ("inference.json", lambda c: c.pop("inferer"), r"lacks \['inferer'\]"),
        (
            "inference.json",
            lambda c: c["postprocessing"]["transforms"].append({"_target_": "SaveImaged", "keys": "$1 / 0"}),
            "'postprocessing' cannot be instantiated",
        ),
        ("inference.json", lambda c: c["preprocessing"]["transforms"].pop(0), "has no LoadImaged"),
    ],
)
def test_what_monai_label_would_meet_is_reported(staged: Path, config: str, change, message: str) -> None:
    edit(staged / "configs" / config, change)
    problems = check_monai_label_contract(staged)
    assert any(re.search(message, p) for p in problems), problems


def test_command_line_exit_status(staged: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(staged)]) == 0
    edit(staged / "configs" / "train.json", lambda c: c.pop("network"))
    assert main([str(staged)]) == 1
    assert "BundleTrainTask" in capsys.readouterr().err
