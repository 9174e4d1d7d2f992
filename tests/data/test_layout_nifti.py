"""Tests of common.data.layouts.nifti on tiny fixtures in the MSD / nnU-Net imagesTr/labelsTr layout (BraTS FLAIR)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.data import DataValidationError, get_layout, prepare_datalist
from common.data.layouts import NiftiLayout

BRATS_IDS = ["BraTS19_2013_0_1", "BraTS19_CBICA_AAB_1", "BraTS19_TCIA01_131_1", "BraTS19_TMC_06290_1"]


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 1.0, 1.0])), path)


def brats_label(shape: tuple[int, int, int] = (10, 9, 8)) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[2:7, 2:6, 2:6] = 2  # oedema
    label[3:6, 3:5, 3:5] = 4  # enhancing tumour
    label[4, 3, 3] = 1  # necrosis
    return label


def build_brats(root: Path, channel_suffix: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for case_id in BRATS_IDS:
        if channel_suffix:
            for channel in range(4):
                save(root / "imagesTr" / f"{case_id}_{channel:04d}.nii.gz", rng.random((10, 9, 8)).astype(np.float32))
        else:
            save(root / "imagesTr" / f"{case_id}.nii.gz", rng.random((10, 9, 8)).astype(np.float32))
        save(root / "labelsTr" / f"{case_id}.nii.gz", brats_label())
    (root / "imagesTr" / "._BraTS19_2013_0_1.nii.gz").write_bytes(b"macOS resource fork")
    return root


def test_pairs_images_and_labels(tmp_path: Path) -> None:
    cases = NiftiLayout().find_cases(build_brats(tmp_path))
    assert [case["id"] for case in cases] == BRATS_IDS
    assert cases[0]["image"] == str(tmp_path.absolute() / "imagesTr" / "BraTS19_2013_0_1.nii.gz")
    assert cases[0]["label"] == str(tmp_path.absolute() / "labelsTr" / "BraTS19_2013_0_1.nii.gz")
    assert all("official_split" not in case for case in cases)


def test_channel_suffix_picks_one_modality(tmp_path: Path) -> None:
    build_brats(tmp_path, channel_suffix=True)
    cases = NiftiLayout(channel="0003").find_cases(tmp_path)
    assert [Path(case["image"]).name for case in cases] == [f"{i}_0003.nii.gz" for i in BRATS_IDS]


def test_split_files_and_test_folder_give_official_splits(tmp_path: Path) -> None:
    build_brats(tmp_path)
    (tmp_path / "train.txt").write_text("\n".join(BRATS_IDS[:2]) + "\n")
    (tmp_path / "val.txt").write_text(f"{BRATS_IDS[2]},extra column\n")
    save(tmp_path / "imagesTs" / "BraTS19_extra_1.nii.gz", np.zeros((10, 9, 8), np.float32))
    save(tmp_path / "labelsTs" / "BraTS19_extra_1.nii.gz", brats_label())
    splits = {case["id"]: case.get("official_split") for case in NiftiLayout().find_cases(tmp_path)}
    assert splits == {
        BRATS_IDS[0]: "training",
        BRATS_IDS[1]: "training",
        BRATS_IDS[2]: "validation",
        BRATS_IDS[3]: None,
        "BraTS19_extra_1": "test",
    }


def test_whole_tumour_threshold_through_prepare_datalist(tmp_path: Path) -> None:
    build_brats(tmp_path / "brats")
    datalist = prepare_datalist(tmp_path / "brats", "nifti", tmp_path / "datalist.json", val_fraction=0.25, labeled=2)
    assert len(datalist["training"]) == 2 and len(datalist["unlabeled"]) == 1
    layout = get_layout("nifti", label_values=(0, 1, 2, 4))
    assert layout.label_threshold == 1  # labels 1, 2 and 4 are all tumour
    bad = tmp_path / "bad"
    build_brats(bad)
    save(bad / "labelsTr" / f"{BRATS_IDS[1]}.nii.gz", brats_label() * 3)  # values 6 and 12: not BraTS labels
    with pytest.raises(DataValidationError, match=f"{BRATS_IDS[1]}.nii.gz: mask values outside"):
        prepare_datalist(bad, layout, tmp_path / "bad.json")


def test_errors_name_the_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="imagesTr is missing"):
        NiftiLayout().find_cases(tmp_path)
    build_brats(tmp_path)
    (tmp_path / "labelsTr" / f"{BRATS_IDS[0]}.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=f"{BRATS_IDS[0]}.nii.gz: no label"):
        NiftiLayout().find_cases(tmp_path)
    save(tmp_path / "labelsTr" / f"{BRATS_IDS[0]}.nii.gz", brats_label())
    (tmp_path / "test.txt").write_text("BraTS19_unknown\n")
    with pytest.raises(FileNotFoundError, match="BraTS19_unknown"):
        NiftiLayout().find_cases(tmp_path)


def test_write_case_round_trip(tmp_path: Path) -> None:
    layout = NiftiLayout(spacing=(0.5, 0.5, 2.0))
    image = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    mask = image > 0.5
    layout.write_case(tmp_path, layout.phantom_case_id(0), image, mask)
    case = layout.find_cases(tmp_path)[0]
    np.testing.assert_array_equal(nib.load(case["image"]).get_fdata(), image)
    np.testing.assert_array_equal(np.asarray(nib.load(case["label"]).dataobj).astype(bool), mask)
    assert nib.load(case["image"]).header.get_zooms() == (0.5, 0.5, 2.0)
