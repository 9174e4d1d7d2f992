"""Tests of common.bundle.export: staged sources, clear errors, the blocked package, the zip and the checksums."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from common.bundle.export import (
    ExportError,
    blocked_package_env,
    export_bundle,
    files_checksum,
    model_card_title,
    stage_bundle,
    zip_bundle,
)
from common.bundle.vendor import config_references

ROOT = Path(__file__).resolve().parents[2]
NAME = "lesion_rgb_cmunext_segmentation"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A private copy of the cmunext bundle's sources."""
    target = tmp_path / "bundles" / "cmunext"
    shutil.copytree(ROOT / "bundles" / "cmunext", target, ignore=shutil.ignore_patterns("models", "eval", "data"))
    return target


def test_staged_sources_are_self_contained(bundle: Path, tmp_path: Path) -> None:
    staged = stage_bundle(bundle, tmp_path / NAME, NAME)
    out = staged.path
    assert (out / "scripts" / "networks" / "cmunext.py").is_file()
    assert not (out / "scripts" / "bundle" / "export.py").exists()
    for config_file in (out / "configs").glob("*.json"):
        config = json.loads(config_file.read_text())
        assert config_references(config) == [], config_file
        assert "find_bundle_root" not in config_file.read_text()
        assert str(ROOT) not in config_file.read_text()
    assert json.loads((out / "configs" / "train.json").read_text())["bundle_root"] == "."
    assert json.loads((out / "configs" / "inference.json").read_text())["network_def"]["_target_"] == (
        "scripts.networks.CMUNeXt"
    )
    for py in (out / "scripts").rglob("*.py"):
        code = [line for line in py.read_text().splitlines() if line.startswith(("from ", "import "))]
        assert not [line for line in code if line.split()[1].split(".")[0] == "common"], py


def test_staged_metadata_lists_real_distributions(bundle: Path, tmp_path: Path) -> None:
    staged = stage_bundle(bundle, tmp_path / NAME, NAME)
    meta = json.loads((staged.path / "configs" / "metadata.json").read_text())
    packages = meta["required_packages_version"]
    assert packages == staged.required_packages
    assert {"pytorch-ignite", "pillow", "scipy"} <= set(packages)  # imported by the vendored code
    # a 2D bundle reads no HDF5 nor NIfTI: the vendored layouts import h5py/nibabel only through optional_import
    assert not {"h5py", "nibabel"} & set(packages)
    assert {"h5py", "nibabel"} <= set(staged.plan.optional)
    assert not {"torch", "monai", "numpy", "label-efficient-bundles", "common"} & set(packages)
    for name, pinned in packages.items():
        assert version(name).split("+")[0] == pinned
    assert meta["monai_version"] == version("monai")
    assert meta["name"] == model_card_title(bundle / "docs" / "README.md")
    assert "## Exported bundle" in (staged.path / "docs" / "README.md").read_text()


def test_staged_network_builds_with_common_blocked(bundle: Path, tmp_path: Path) -> None:
    staged = stage_bundle(bundle, tmp_path / NAME, NAME)
    code = (
        "from monai.bundle import ConfigParser; p = ConfigParser(); p.read_config('configs/inference.json'); "
        "print(type(p.get_parsed_content('network_def')).__module__)"
    )
    with blocked_package_env() as env:
        proc = subprocess.run([sys.executable, "-c", code], cwd=staged.path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("scripts.networks.cmunext")


@pytest.mark.integration
def test_exported_readme_command_from_another_folder_works(bundle: Path, tmp_path: Path) -> None:
    staged = stage_bundle(bundle, tmp_path / NAME, NAME)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = str(staged.path)
    command = [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", "--device", "cpu"]
    command += ["--meta_file", f"{folder}/configs/metadata.json", "--config_file", f"{folder}/configs/inference.json"]
    command += ["--bundle_root", folder]
    readme = (staged.path / "docs" / "README.md").read_text()
    assert "PYTHONPATH=<this folder>" in readme and "--bundle_root <this folder>" in readme
    assert "Not required: `h5py`, `nibabel`" in readme
    with blocked_package_env() as env:
        alone = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
        env["PYTHONPATH"] += os.pathsep + folder  # what the exported README says to do
        told = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert alone.returncode != 0 and "scripts" in alone.stderr  # why --bundle_root alone is not enough
    assert told.returncode == 0, told.stderr[-3000:]


def test_blocked_package_cannot_be_imported() -> None:
    with blocked_package_env() as env:
        proc = subprocess.run([sys.executable, "-c", "import common"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr


def test_export_without_a_trained_model_says_how_to_train(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"models/model.pt does not exist.*run training --config_file .*quick.json"):
        export_bundle(bundle, tmp_path / "dist", NAME)
    assert not (tmp_path / "dist" / NAME).exists()


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda b: (b / "LICENSE").unlink(), "lacks LICENSE"),
        (lambda b: (b / "scripts").mkdir(), "scripts exists"),
        (lambda b: (b / "configs" / "extra.yaml").write_text("a: 1\n"), "are YAML"),
        (lambda b: _edit_meta(b, version="0.1"), "must be semantic"),
        (lambda b: _edit_meta(b, version="9.9.9"), "no entry in 'changelog'"),
        (lambda b: _edit_meta(b, required_packages_version={"no-such-distribution-xyz": "1.0"}), "not an installed"),
        (lambda b: (b / "docs" / "README.md").write_text("Model card without a title\n"), "level-1 heading"),
        (lambda b: _edit_config(b, "inference.json", network_def={"_target_": "common.networks.Missing"}), "Missing"),
        (lambda b: _edit_config(b, "inference.json", output_dir=f"{ROOT}/x"), "absolute path"),
        (lambda b: _edit_config(b, "inference.json", other="$common.bundle.find_bundle_root('x')"), "find_bundle_root"),
    ],
)
def test_stage_refuses_with_a_clear_error(bundle: Path, tmp_path: Path, breakage, message: str) -> None:
    breakage(bundle)
    with pytest.raises(ExportError, match=message):
        stage_bundle(bundle, tmp_path / NAME, NAME)


def _edit_meta(bundle: Path, **changes) -> None:
    _edit_config(bundle, "metadata.json", **changes)


def _edit_config(bundle: Path, name: str, **changes) -> None:
    path = bundle / "configs" / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=4))


def test_zip_is_deterministic_and_rooted_in_the_bundle_folder(tmp_path: Path) -> None:
    folder = tmp_path / "some_ct_segmentation"
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "metadata.json").write_text("{}")
    (folder / "scripts" / "__pycache__").mkdir(parents=True)
    (folder / "scripts" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    first = zip_bundle(folder, tmp_path / "a.zip")
    (folder / "configs" / "metadata.json").touch()  # a new time stamp does not change the zip
    assert zip_bundle(folder, tmp_path / "b.zip") == first
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.namelist() == ["some_ct_segmentation/configs/metadata.json"]


def test_files_checksum_covers_sources_not_models_nor_versions(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    meta = {"version": "0.1.0", "monai_version": "1.6.1", "required_packages_version": {"nibabel": "5.4.2"}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    (folder / "configs" / "inference.json").write_text("{}")
    reference = files_checksum(folder)
    (folder / "models" / "model.pt").write_bytes(b"weights")
    meta.update(monai_version="9.9.9", required_packages_version={"nibabel": "9.0"})
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    assert files_checksum(folder) == reference
    meta["required_packages_version"]["scipy"] = "1.0"  # a new package is a change
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    assert files_checksum(folder) != reference


@pytest.mark.integration
def test_export_writes_folder_zip_torchscript_and_index(bundle: Path, tmp_path: Path) -> None:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def")
    (bundle / "models").mkdir()
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    (bundle / "models" / "checkpoint_epoch=1.pt").write_bytes(b"not shipped")

    result = export_bundle(bundle, tmp_path / "dist", NAME)
    assert result.folder == tmp_path / "dist" / NAME
    assert sorted(p.name for p in (result.folder / "models").iterdir()) == ["model.pt", "model.ts"]
    assert not list(result.folder.rglob("__pycache__"))
    scripted = torch.jit.load(str(result.folder / "models" / "model.ts"))
    x = torch.randn(1, 3, 64, 64)
    network.eval()
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x))
    index = json.loads((tmp_path / "dist" / "model_info.json").read_text())
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]  # the key follows the bundle
    assert index == {f"{NAME}_v{version}": {"checksum": result.checksum, "source": f"{NAME}_v{version}.zip"}}
    assert result.zip_file.name == f"{NAME}_v{version}.zip"
    with zipfile.ZipFile(result.zip_file) as archive:
        assert f"{NAME}/models/model.ts" in archive.namelist()
