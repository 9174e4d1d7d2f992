"""Tests of common.bundle.model_info: entries, regeneration, stale and missing entries, zoo names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from common.bundle.export import ExportError
from common.bundle.model_info import bundle_folders, check_index, index_entry, load_index, update_index, zoo_name_of

ROOT = Path(__file__).resolve().parents[2]
NAME = "lesion_rgb_cmunext_segmentation"


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """A ``bundles/`` folder holding a copy of the cmunext bundle's sources, without an index yet."""
    bundles = tmp_path / "bundles"
    outputs = shutil.ignore_patterns("models", "eval", "data")
    shutil.copytree(ROOT / "bundles" / "cmunext", bundles / "cmunext", ignore=outputs)
    # a fixed version, so that the tests do not follow the real bundle's releases
    meta_file = bundles / "cmunext" / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "0.1.0"
    meta["changelog"].setdefault("0.1.0", "the first release")
    meta_file.write_text(json.dumps(meta, indent=4))
    return bundles


def test_entry_has_the_zoo_fields(collection: Path) -> None:
    entry = index_entry(collection / "cmunext", NAME)
    assert entry["name"] == NAME and entry["version"] == "0.1.0" and entry["folder"] == "bundles/cmunext"
    assert len(entry["checksum"]) == 40 and entry["hash_type"] == "sha1"
    assert entry["source"] == f"dist/{NAME}_v0.1.0.zip"


def test_zoo_names_follow_the_convention(collection: Path) -> None:
    for bad in ("cmunext", "CMUNeXt-lesion", "lesion_cmunext", "_lesion_segmentation"):
        with pytest.raises(ExportError, match="no model-zoo name"):
            index_entry(collection / "cmunext", bad)


def test_update_then_check_then_stale(collection: Path) -> None:
    index_file = collection / "model_info.json"
    with pytest.raises(ExportError, match=r"--name cmunext=<zoo name>"):
        update_index(index_file=index_file)
    assert not index_file.exists()
    index = update_index(names={"cmunext": NAME}, index_file=index_file)
    assert list(index) == [f"{NAME}_v0.1.0"]
    assert check_index(index_file=index_file) == []
    assert zoo_name_of(collection / "cmunext", load_index(index_file)) == NAME

    docs = collection / "cmunext" / "docs" / "README.md"
    docs.write_text(docs.read_text() + "\nA new paragraph.\n")
    problems = check_index(collection / "cmunext", index_file)
    assert len(problems) == 1 and "stale (checksum differ" in problems[0] and "model_info" in problems[0]
    update_index(index_file=index_file)  # the name is kept from the index
    assert check_index(index_file=index_file) == []


def test_version_bump_changes_the_key(collection: Path) -> None:
    index_file = collection / "model_info.json"
    update_index(names={"cmunext": NAME}, index_file=index_file)
    meta_file = collection / "cmunext" / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "0.2.0"
    meta["changelog"]["0.2.0"] = "a change"
    meta_file.write_text(json.dumps(meta, indent=4))
    problems = check_index(index_file=index_file)
    assert any(f"key {NAME}_v0.1.0 should be {NAME}_v0.2.0" in p for p in problems), problems
    assert list(update_index(index_file=index_file)) == [f"{NAME}_v0.2.0"]


def test_new_bundle_without_entry_and_entry_without_bundle(collection: Path) -> None:
    index_file = collection / "model_info.json"
    update_index(names={"cmunext": NAME}, index_file=index_file)
    shutil.copytree(collection / "cmunext", collection / "other")
    problems = check_index(index_file=index_file)
    assert any("bundle other has 0 entries" in p and "--name other=" in p for p in problems), problems
    shutil.rmtree(collection / "other")
    shutil.rmtree(collection / "cmunext")
    problems = check_index(index_file=index_file)
    assert any("names bundles/cmunext, which is no bundle" in p for p in problems), problems
    assert bundle_folders(collection) == []


def test_unknown_name_override_is_an_error(collection: Path) -> None:
    with pytest.raises(ExportError, match="not among the bundles"):
        update_index(names={"cmunext": NAME, "nope": "x_ct_segmentation"}, index_file=collection / "model_info.json")
