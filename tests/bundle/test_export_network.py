"""Tests of common.bundle.export.fit_configs_to_weights: an export's configs describe the network of its weights.

``dmgsa`` trained with ``quick.json`` has network channels 8..64; the full-recipe ``train.json`` says 32..512, so an
export that shipped it unchanged could not be fine-tuned (MONAI Label's training: ``size mismatch ... [8, 1, 3, 3, 3]
... [32, 1, 3, 3, 3]``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from common.bundle.export import ExportError, fit_configs_to_weights, stage_bundle

ROOT = Path(__file__).resolve().parents[2]


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / "bundles" / name
    shutil.copytree(ROOT / "bundles" / name, target, ignore=shutil.ignore_patterns("models", "eval", "data"))
    return target


def _network(bundle: Path, *configs: str, source: Path | None = None) -> torch.nn.Module:
    """``network_def`` of configs layered in order (top-level ids of a later one replace the earlier ones).

    An export's configs name the vendored ``scripts`` package, which is this repository's ``common``: they are read
    with ``common`` put back, with ``bundle_root`` the source bundle ``source``.
    """

    def read(name: str) -> dict:
        text = (bundle / "configs" / name).read_text()
        return json.loads(text.replace('"scripts.', '"common.').replace("$scripts.", "$common."))

    parser = ConfigParser()
    parser.read_config(read(configs[0]))
    for name in configs[1:]:
        for key, value in read(name).items():
            parser[key] = value
    parser["bundle_root"] = str(source or bundle)
    return parser.get_parsed_content("network_def")


def _weights(bundle: Path, *configs: str) -> Path:
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(_network(bundle, *configs).state_dict(), bundle / "models" / "model.pt")
    return bundle / "models" / "model.pt"


def test_quick_trained_dmgsa_export_describes_its_network(tmp_path: Path) -> None:
    bundle = _copy("dmgsa", tmp_path)
    model = _weights(bundle, "train.json", "quick.json")
    staged = stage_bundle(bundle, tmp_path / "out", "airway_ct_dmgsa_segmentation")
    fit = fit_configs_to_weights(staged, model)
    quick = json.loads((bundle / "configs" / "quick.json").read_text())
    assert fit is not None and fit.overlay == "quick.json"
    assert fit.values == {"network_channels": quick["network_channels"]}  # the discriminators' sizes are not in it
    assert sorted(fit.configs) == ["inference.json", "train.json"]
    exported = json.loads((staged.path / "configs" / "train.json").read_text())
    assert exported["network_channels"] == [8, 16, 32, 64]
    assert exported["patch_size"] == json.loads((bundle / "configs" / "train.json").read_text())["patch_size"]
    network = _network(staged.path, "train.json", source=bundle)
    network.load_state_dict(torch.load(model, weights_only=True), strict=True)  # fine-tuning builds this network
    assert json.loads((staged.path / "configs" / "quick.json").read_text()) == quick  # overlays keep their values
    card = (staged.path / "docs" / "README.md").read_text()
    assert "trained with `configs/quick.json`" in card and "`network_channels` = `[8, 16, 32, 64]`" in card


def test_weights_of_the_recipe_leave_the_configs_as_they_are(tmp_path: Path) -> None:
    bundle = _copy("cmunext", tmp_path)
    model = _weights(bundle, "train.json")
    staged = stage_bundle(bundle, tmp_path / "out", "lesion_rgb_cmunext_segmentation")
    before = {p.name: p.read_text() for p in (staged.path / "configs").glob("*.json")}
    assert fit_configs_to_weights(staged, model) is None
    assert {p.name: p.read_text() for p in (staged.path / "configs").glob("*.json")} == before


def test_weights_of_no_known_network_are_refused(tmp_path: Path) -> None:
    bundle = _copy("cmunext", tmp_path)
    (bundle / "models").mkdir()
    torch.save(torch.nn.Conv2d(3, 5, 3).state_dict(), bundle / "models" / "model.pt")
    staged = stage_bundle(bundle, tmp_path / "out", "lesion_rgb_cmunext_segmentation")
    with pytest.raises(
        ExportError, match=r"does not fit the network of .*train\.json .* nor that of an overlay \(quick"
    ):
        fit_configs_to_weights(staged, bundle / "models" / "model.pt")
