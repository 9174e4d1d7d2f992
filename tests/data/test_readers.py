"""Tests of common.data.readers: MONAI's LoadImage reads the LA benchmark's HDF5 files with a spacing-aware affine."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged

from common.data import H5Reader


def write_case(path: Path, shape: tuple[int, int, int] = (9, 8, 7)) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=image, compression="gzip")
        f.create_dataset("label", data=label, compression="gzip")
    return image, label


def test_load_image_and_label_from_one_file(tmp_path: Path) -> None:
    image, label = write_case(tmp_path / "mri_norm2.h5")
    load = Compose(
        [
            LoadImaged(keys="image", reader=H5Reader("image", spacing=0.625), image_only=True),
            LoadImaged(keys="label", reader=H5Reader("label", spacing=0.625), image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
        ]
    )
    data = load({"image": str(tmp_path / "mri_norm2.h5"), "label": str(tmp_path / "mri_norm2.h5")})
    assert data["image"].shape == (1, 9, 8, 7) and data["label"].shape == (1, 9, 8, 7)
    np.testing.assert_array_equal(data["image"][0].numpy(), image)
    np.testing.assert_array_equal(data["label"][0].numpy(), label)
    torch.testing.assert_close(data["image"].pixdim, torch.tensor([0.625, 0.625, 0.625], dtype=torch.float64))
    assert data["image"].meta["filename_or_obj"] == str(tmp_path / "mri_norm2.h5")


def test_anisotropic_spacing_and_stacked_files(tmp_path: Path) -> None:
    write_case(tmp_path / "a.h5")
    write_case(tmp_path / "b.h5")
    reader = H5Reader(spacing=(0.5, 0.5, 2.0))
    stacked = LoadImage(reader=reader, image_only=True)([str(tmp_path / "a.h5"), str(tmp_path / "b.h5")])
    assert stacked.shape == (2, 9, 8, 7)
    torch.testing.assert_close(stacked.pixdim, torch.tensor([0.5, 0.5, 2.0], dtype=torch.float64))


def test_other_formats_fall_back_to_monai_readers(tmp_path: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "x.nii.gz")
    loaded = LoadImage(reader=H5Reader(), image_only=True)(str(tmp_path / "x.nii.gz"))
    torch.testing.assert_close(loaded.pixdim, torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    assert H5Reader().verify_suffix(["a.H5", "b.hdf5"]) and not H5Reader().verify_suffix("a.nii.gz")


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "case" / "mri_norm2.h5"
    path.parent.mkdir()
    write_case(path)
    with pytest.raises(OSError, match=rf"{path}.*no dataset 'mask'"):
        H5Reader("mask").read(str(path))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(OSError, match=str(path)):
        H5Reader().read(str(path))
    with pytest.raises(ValueError, match="positive"):
        H5Reader(spacing=0)
    with pytest.raises(ValueError, match="does not fit"):
        H5Reader(spacing=(1.0, 1.0)).get_data(np.zeros((2, 2, 2)))
