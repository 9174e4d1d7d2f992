"""The ATM'22 adapter on a tiny fixture in the public layout, write_case round trips, and the prepared datalist."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.data import LAYOUTS, AirwayPhantom3D, DataValidationError, check_cases, get_layout, prepare_datalist
from common.data.layouts import ATM22Layout


def save_case(root: Path, case_id: str, image: bool = True, label: bool = True) -> None:
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    if image:
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        data = np.full((6, 5, 4), -1000, dtype=np.int16)
        nib.save(nib.Nifti1Image(data, affine), str(root / "imagesTr" / f"{case_id}.nii.gz"))
    if label:
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        mask = np.zeros((6, 5, 4), dtype=np.uint8)
        mask[2:4, 2:4, :] = 1
        nib.save(nib.Nifti1Image(mask, affine), str(root / "labelsTr" / f"{case_id}.nii.gz"))


def build_atm(root: Path) -> Path:
    """The public release: two batches, each with imagesTr/ and labelsTr/; the withdrawn case 164 is present."""
    for batch, ids in (
        ("TrainBatch1", ("ATM_001_0000", "ATM_002_0000")),
        ("TrainBatch2", ("ATM_164_0000", "ATM_300_0000")),
    ):
        for case_id in ids:
            save_case(root / batch, case_id)
    (root / "TrainBatch1" / "imagesTr" / "._ATM_001_0000.nii.gz").write_bytes(b"\0")  # macOS resource fork
    (root / "imagesVal").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.eye(4)), str(root / "imagesVal" / "ATM_301_0000.nii.gz"))
    return root


def test_registered() -> None:
    assert LAYOUTS["atm22"] is ATM22Layout
    layout = get_layout("atm22")
    assert layout.label_values == frozenset({0, 1}) and layout.label_threshold == 0.5


def test_finds_cases_across_batches_and_skips_the_withdrawn_case(tmp_path: Path) -> None:
    root = build_atm(tmp_path)
    cases = ATM22Layout().find_cases(root)
    assert [c["id"] for c in cases] == ["ATM_001_0000", "ATM_002_0000", "ATM_300_0000"]
    assert cases[2]["image"] == str(root.absolute() / "TrainBatch2" / "imagesTr" / "ATM_300_0000.nii.gz")
    assert cases[2]["label"] == str(root.absolute() / "TrainBatch2" / "labelsTr" / "ATM_300_0000.nii.gz")
    assert len(ATM22Layout(exclude=()).find_cases(root)) == 4
    # a single batch folder works too
    assert [c["id"] for c in ATM22Layout().find_cases(root / "TrainBatch1")] == ["ATM_001_0000", "ATM_002_0000"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ATM22Layout().find_cases(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"imagesTr is missing .*ATM'22 layout"):
        ATM22Layout().find_cases(tmp_path)
    save_case(tmp_path / "a", "ATM_001_0000")
    save_case(tmp_path / "a", "ATM_002_0000", label=False)
    save_case(tmp_path / "a", "ATM_003_0000", image=False)
    with pytest.raises(FileNotFoundError, match="2 unpaired") as error:
        ATM22Layout().find_cases(tmp_path / "a")
    assert "ATM_002_0000.nii.gz: no label" in str(error.value) and "ATM_003_0000.nii.gz: no image" in str(error.value)
    (tmp_path / "b" / "labelsTr").mkdir(parents=True)
    (tmp_path / "b" / "imagesTr").mkdir()
    with pytest.raises(FileNotFoundError, match="no NIfTI image"):
        ATM22Layout().find_cases(tmp_path / "b")
    save_case(tmp_path / "c" / "TrainBatch1", "ATM_001_0000")
    save_case(tmp_path / "c" / "TrainBatch2", "ATM_001_0000")
    with pytest.raises(FileNotFoundError, match="duplicated"):
        ATM22Layout().find_cases(tmp_path / "c")


def test_write_case_round_trip(tmp_path: Path) -> None:
    affine = np.diag([0.8, 0.8, 1.25, 1.0])
    image = MetaTensor(torch.linspace(-1100, 300, 60).reshape(5, 4, 3), affine=torch.as_tensor(affine))
    mask = np.zeros((5, 4, 3), dtype=bool)
    mask[1:3, 1:3, :] = True
    layout = ATM22Layout()
    layout.write_case(tmp_path, layout.phantom_case_id(7), image, mask)
    cases = layout.find_cases(tmp_path)
    assert [c["id"] for c in cases] == ["phantom_007_0000"]
    written_image, written_label = nib.load(cases[0]["image"]), nib.load(cases[0]["label"])
    assert written_image.get_data_dtype() == np.int16 and written_label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written_image.dataobj), np.rint(image.numpy()).astype(np.int16))
    np.testing.assert_array_equal(np.asarray(written_label.dataobj), mask)
    np.testing.assert_allclose(written_image.affine, affine)
    assert written_image.header.get_zooms() == pytest.approx((0.8, 0.8, 1.25))
    with pytest.raises(ValueError, match="mask"):
        layout.write_case(tmp_path, "x", image, mask.astype(np.uint8))


def test_prepared_phantom_datalist_and_a_corrupt_volume(tmp_path: Path) -> None:
    phantom = AirwayPhantom3D(num_cases=4, shape=(48, 48, 56), trachea_radius=(2.5, 3.0))
    datalist = prepare_datalist(
        tmp_path / "atm", "atm22", tmp_path / "datalist.json", phantom=phantom, generate_phantom=True, val_fraction=0.34
    )  # 3 labelled cases and 1 unlabelled validation image
    assert len(datalist["training"]) == 2 and len(datalist["validation"]) == 1
    assert (tmp_path / "atm" / "imagesTr" / "phantom_000_0000.nii.gz").is_file()
    label = nib.load(datalist["training"][0]["label"])
    assert set(np.unique(np.asarray(label.dataobj)).tolist()) == {0, 1}
    victim = Path(datalist["training"][0]["image"])
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DataValidationError, match=str(victim)):
        check_cases(datalist["training"], label_values={0, 1})


def test_a_phantom_keeps_its_last_cases_as_unlabelled_validation_images(tmp_path: Path) -> None:
    phantom = AirwayPhantom3D(num_cases=7, shape=(40, 40, 48), trachea_radius=(2.5, 3.0))
    datalist = prepare_datalist(
        tmp_path / "atm", "atm22", tmp_path / "datalist.json", phantom=phantom, generate_phantom=True
    )
    listed = sorted(c["id"] for key in ("training", "validation", "test") for c in datalist[key])
    assert listed == [f"phantom_{i:03d}_0000" for i in range(5)]  # ceil(0.15 * 7) = 2 cases held back
    assert sorted(p.name for p in (tmp_path / "atm" / "imagesVal").iterdir()) == [
        "phantom_005_0000.nii.gz",
        "phantom_006_0000.nii.gz",
    ]
    assert len(list((tmp_path / "atm" / "labelsTr").iterdir())) == 5
