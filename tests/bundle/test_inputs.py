"""Tests of common.bundle.inputs: sorted absolute paths, case-insensitive patterns, clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from common.bundle import announce_inference_size, find_inputs
from common.bundle.locate import repository_root


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def expected(folder: Path, *names: str) -> list[str]:
    return [str((folder / name).resolve()) for name in names]


def test_default_patterns_sorted_absolute(tmp_path: Path) -> None:
    touch(tmp_path, "c.nii.gz", "a.nii", "b.nii.gz", "notes.txt", "d.nii.gz.bak")
    found = find_inputs(str(tmp_path))
    assert found == expected(tmp_path, "a.nii", "b.nii.gz", "c.nii.gz")
    assert all(Path(p).is_absolute() for p in found)


def test_patterns_are_case_insensitive(tmp_path: Path) -> None:
    touch(tmp_path, "A.JPG", "b.jpg", "C.Jpg", "d.png")
    assert find_inputs(str(tmp_path), "*.jpg") == expected(tmp_path, "A.JPG", "C.Jpg", "b.jpg")
    assert find_inputs(str(tmp_path), "*.JPG") == expected(tmp_path, "A.JPG", "C.Jpg", "b.jpg")


def test_several_patterns_without_duplicates(tmp_path: Path) -> None:
    touch(tmp_path, "x.png", "y.jpg", "z.jpeg", "w.bmp")
    # x.png matches two patterns and must be listed once
    found = find_inputs(str(tmp_path), ["*.png", "*.jp*g", "x.*"])
    assert found == expected(tmp_path, "x.png", "y.jpg", "z.jpeg")


def test_folders_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path, "a.nii.gz")
    (tmp_path / "sub.nii.gz").mkdir()
    touch(tmp_path / "nested", "b.nii.gz")
    assert find_inputs(str(tmp_path)) == expected(tmp_path, "a.nii.gz")


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="does not exist") as raised:
        find_inputs(str(missing))
    assert str(missing) in str(raised.value)


def test_no_matching_file(tmp_path: Path) -> None:
    touch(tmp_path, "a.txt")
    with pytest.raises(FileNotFoundError, match="no file matching") as raised:
        find_inputs(str(tmp_path), ["*.png", "*.jpg"])
    assert "*.png" in str(raised.value) and "--input_patterns" in str(raised.value)


def test_recursive_search_for_one_folder_per_case(tmp_path: Path) -> None:
    touch(tmp_path / "caseB", "mri_norm2.h5")
    touch(tmp_path / "caseA", "mri_norm2.h5", "lgemri.nrrd")
    assert find_inputs(str(tmp_path), "*.h5", recursive=True) == expected(
        tmp_path, "caseA/mri_norm2.h5", "caseB/mri_norm2.h5"
    )
    with pytest.raises(FileNotFoundError, match="no file matching"):
        find_inputs(str(tmp_path), "*.h5")  # not recursive: the top folder has none


def test_inference_datalist_from_a_folder_or_the_training_datalist(tmp_path: Path) -> None:
    from common.bundle import inference_datalist
    from common.data import save_datalist

    touch(tmp_path / "data" / "c1", "mri_norm2.h5")
    touch(tmp_path / "data" / "c2", "mri_norm2.h5")
    found = inference_datalist(str(tmp_path / "data"), ["*.h5"], recursive=True)
    assert found == [{"image": p} for p in expected(tmp_path / "data", "c1/mri_norm2.h5", "c2/mri_norm2.h5")]
    datalist = {
        "dataset_dir": str(tmp_path / "data"),
        "training": [{"id": "c1", "image": "c1/mri_norm2.h5", "label": "c1/mri_norm2.h5"}],
        "test": [{"id": "c2", "image": "c2/mri_norm2.h5", "label": "c2/mri_norm2.h5"}],
    }
    save_datalist(datalist, tmp_path / "datalist.json")
    from_datalist = inference_datalist("", datalist_file=str(tmp_path / "datalist.json"))
    assert from_datalist == [{"image": str(tmp_path / "data" / "c2" / "mri_norm2.h5")}]
    with pytest.raises(FileNotFoundError, match="train first"):
        inference_datalist("", datalist_file=str(tmp_path / "absent.json"))
    with pytest.raises(FileNotFoundError, match="has no 'validation' case"):
        inference_datalist(None, datalist_file=str(tmp_path / "datalist.json"), split="validation")


def test_inference_output_root(tmp_path: Path) -> None:
    from common.bundle import inference_output_root
    from common.data import save_datalist

    assert inference_output_root(str(tmp_path / "in")) == str((tmp_path / "in").resolve())
    save_datalist({"dataset_dir": str(tmp_path / "LA"), "training": []}, tmp_path / "datalist.json")
    assert inference_output_root("", str(tmp_path / "datalist.json")) == str(tmp_path / "LA")
    assert inference_output_root(None, str(tmp_path / "absent.json")) == ""  # never fails: MONAI Label builds it bare
    (tmp_path / "broken.json").write_text("{")
    assert inference_output_root("", str(tmp_path / "broken.json")) == ""


def test_inference_says_which_size_it_uses_beside_the_training_configs(tmp_path, caplog) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "train.json").write_text(json.dumps({"image_size": [256, 256]}))
    (configs / "quick.json").write_text(json.dumps({"image_size": [128, 128], "epochs": 2}))
    (configs / "inference.json").write_text(json.dumps({"image_size": [256, 256]}))  # itself: not a training size
    (configs / "evaluate.json").write_text(json.dumps({"image_size": "@something"}))  # not a literal size
    with caplog.at_level(logging.INFO, logger="common.bundle"):
        message = announce_inference_size([256, 256], False, str(tmp_path))
    assert message.startswith("inference: every image is resized to 256x256 pixels (image_size)")
    assert "train at quick.json 128x128, train.json 256x256: pass --image_size" in message
    assert "inference.json" not in message and "evaluate.json" not in message
    assert message in caplog.text
    tiled = announce_inference_size([512, 512], True)
    assert "tiled in 512x512-pixel windows" in tiled and "train at" not in tiled


@pytest.mark.parametrize("bundle", ["cmunext", "dfcps"])
def test_2d_inference_configs_announce_their_size(bundle: str) -> None:
    config = json.loads((repository_root() / "bundles" / bundle / "configs" / "inference.json").read_text())
    assert (
        "$common.bundle.announce_inference_size(@image_size, @use_sliding_window, @bundle_root)"
        in (config["initialize"])
    )
