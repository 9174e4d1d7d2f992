"""Tests of common.data.io for HDF5 volumes (the 2D and NIfTI formats are covered through test_checks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.data import DataValidationError, check_cases
from common.data.io import is_h5, read_array, spatial_shape, write_h5


def test_write_and_read_named_datasets(tmp_path: Path) -> None:
    image = np.arange(60, dtype=np.float32).reshape(5, 4, 3)
    label = (image > 30).astype(np.uint8)
    path = tmp_path / "sub" / "mri_norm2.h5"
    write_h5(path, {"image": image, "label": label})
    np.testing.assert_array_equal(read_array(path), image)
    np.testing.assert_array_equal(read_array(path, h5_dataset="label"), label)
    assert spatial_shape(path, read_array(path)) == (5, 4, 3)
    assert is_h5("A.HDF5") and is_h5("a.h5") and not is_h5("a.nii.gz")
    with pytest.raises(ValueError, match="no dataset to write"):
        write_h5(path, {})


def test_bad_files_raise_oserror(tmp_path: Path) -> None:
    path = tmp_path / "case.h5"
    write_h5(path, {"image": np.zeros((4, 4, 4), np.float32)})
    with pytest.raises(OSError, match="no dataset 'label'.*image"):
        read_array(path, h5_dataset="label")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(OSError):
        read_array(path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(OSError):
        read_array(tmp_path / "text.h5")


def test_input_checks_read_image_and_label_datasets_of_one_file(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    write_h5(good, {"image": np.zeros((6, 5, 4), np.float32), "label": np.ones((6, 5, 4), np.uint8)})
    check_cases([{"id": "good", "image": str(good), "label": str(good)}], label_values={0, 1})
    bad = tmp_path / "bad.h5"
    image = np.zeros((6, 5, 4), np.float32)
    image[0, 0, 0] = np.nan
    write_h5(bad, {"image": image, "label": np.full((6, 5, 3), 2, np.uint8)})
    no_label = tmp_path / "nolabel.h5"
    write_h5(no_label, {"image": np.zeros((6, 5, 4), np.float32)})
    with pytest.raises(DataValidationError) as caught:
        check_cases(
            [
                {"id": "bad", "image": str(bad), "label": str(bad)},
                {"id": "n", "image": str(no_label), "label": str(no_label)},
            ],
            label_values={0, 1},
        )
    problems = "\n".join(caught.value.problems)
    assert f"{bad}: non-finite intensities (1 NaN" in problems
    assert f"{bad}: spatial size (6, 5, 3) differs" in problems
    assert f"{bad}: mask values outside" in problems
    assert f"{no_label}: unreadable or corrupt image" in problems and "no dataset 'label'" in problems


def test_only_the_named_datasets_are_compressed(tmp_path: Path) -> None:
    import h5py

    write_h5(tmp_path / "a.h5", {"image": np.zeros((4, 4, 4), np.float32), "label": np.zeros((4, 4, 4), np.uint8)})
    write_h5(
        tmp_path / "b.h5",
        {"image": np.zeros((4, 4, 4), np.float32), "label": np.zeros((4, 4, 4), np.uint8)},
        compress=("label",),
    )
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a["image"].compression == a["label"].compression == "gzip"
        assert b["image"].compression is None and b["label"].compression == "gzip"
