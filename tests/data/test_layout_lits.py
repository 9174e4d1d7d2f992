"""Tests of common.data.layouts.lits on a tiny fixture in the exact public layout of LiTS."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.data import get_layout, prepare_datalist
from common.data.layouts import LiTSLayout
from common.data.layouts.lits import ASENET_TEST_VOLUMES, phantom_hounsfield


def write_pair(folder: Path, number: int, shape: tuple[int, int, int] = (12, 10, 6), gz: bool = False) -> None:
    """``volume-N.nii`` (int16 HU) and ``segmentation-N.nii`` (0 background, 1 liver, 2 tumour) as LiTS ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".nii.gz" if gz else ".nii"
    image = np.full(shape, -100, np.int16)
    label = np.zeros(shape, np.uint8)
    label[2:8, 2:7, 1:5] = 1
    label[4:6, 3:5, 2:4] = 2
    image[label > 0] = 110
    affine = np.diag([0.7, 0.7, 2.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), folder / f"volume-{number}{ext}")
    nib.save(nib.Nifti1Image(label, affine), folder / f"segmentation-{number}{ext}")


def build_lits(root: Path, numbers: tuple[int, ...] = (0, 1, 28, 30)) -> Path:
    lits = root / "LiTS"
    for number in numbers:
        write_pair(lits / ("Training Batch 1" if number < 28 else "Training Batch 2"), number)
    return lits


def test_finds_volumes_in_both_batch_folders_sorted_by_number(tmp_path: Path) -> None:
    lits = build_lits(tmp_path)
    (lits / "Training Batch 2" / "notes.txt").write_text("not a case")
    cases = LiTSLayout().find_cases(lits)
    assert [case["id"] for case in cases] == ["volume-0", "volume-1", "volume-28", "volume-30"]
    assert [case["volume"] for case in cases] == [0, 1, 28, 30]
    assert cases[2]["image"] == str(lits.absolute() / "Training Batch 2" / "volume-28.nii")
    assert cases[2]["label"] == str(lits.absolute() / "Training Batch 2" / "segmentation-28.nii")
    assert all("official_split" not in case for case in cases)


def test_flat_folder_and_gzip(tmp_path: Path) -> None:
    write_pair(tmp_path / "flat", 5, gz=True)
    write_pair(tmp_path / "flat", 12)
    cases = get_layout("lits").find_cases(tmp_path / "flat")
    assert [Path(case["label"]).name for case in cases] == ["segmentation-5.nii.gz", "segmentation-12.nii"]


def test_official_test_file_of_the_asenet_code(tmp_path: Path) -> None:
    lits = build_lits(tmp_path)
    (lits / "test_num.txt").write_text("28\n1\n")
    splits = {case["id"]: case["official_split"] for case in LiTSLayout().find_cases(lits)}
    assert splits == {"volume-0": "training", "volume-1": "test", "volume-28": "test", "volume-30": "training"}


@pytest.mark.parametrize(
    ("problem", "message"),
    [("no_segmentation", "no segmentation-30.nii"), ("unknown_test", "names volume(s) [99]"), ("empty", "no volume")],
)
def test_errors_name_the_problem(tmp_path: Path, problem: str, message: str) -> None:
    lits = build_lits(tmp_path)
    if problem == "no_segmentation":
        (lits / "Training Batch 2" / "segmentation-30.nii").unlink()
    elif problem == "unknown_test":
        (lits / "test_num.txt").write_text("99\n")
    else:
        lits = tmp_path / "empty"
        lits.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        LiTSLayout().find_cases(lits)


def test_phantom_hounsfield_mapping() -> None:
    z = np.array([-0.5, 0.0, 2.0, 200.0], np.float32)
    assert phantom_hounsfield(z).tolist() == [25, 40, 100, 3071]  # 40 + 30 z, clipped at the int16 HU ceiling
    assert phantom_hounsfield(z).dtype == np.int16


def test_phantom_written_in_the_layout_is_read_back(tmp_path: Path) -> None:
    layout = LiTSLayout(spacing=(0.8, 0.8, 2.5))
    mask = np.zeros((20, 18, 16), bool)
    mask[5:12, 4:10, 3:9] = True
    image = np.where(mask, 2.0, -0.3).astype(np.float32)
    for index in (0, 29):
        layout.write_case(tmp_path, layout.phantom_case_id(index), image, mask)
    assert (tmp_path / "Training Batch 1" / "volume-0.nii").is_file()
    assert (tmp_path / "Training Batch 2" / "segmentation-29.nii").is_file()
    volume = nib.load(tmp_path / "Training Batch 2" / "volume-29.nii")
    assert volume.header.get_zooms() == pytest.approx((0.8, 0.8, 2.5))
    assert set(np.unique(np.asarray(volume.dataobj)).tolist()) == {31, 100}
    layout.write_phantom_splits(tmp_path, ["volume-0", "volume-29"])
    assert (tmp_path / "test_num.txt").read_text() == "29\n"
    with pytest.raises(ValueError, match="volume-N"):
        layout.write_case(tmp_path, "case_1", image, mask)


def test_phantom_split_uses_asenet_test_volumes_when_present(tmp_path: Path) -> None:
    LiTSLayout().write_phantom_splits(tmp_path, [f"volume-{n}" for n in range(131)])
    assert [int(n) for n in (tmp_path / "test_num.txt").read_text().split()] == list(ASENET_TEST_VOLUMES)


def test_prepare_datalist_with_labels_0_1_2(tmp_path: Path) -> None:
    lits = build_lits(tmp_path, numbers=(0, 1, 2, 3, 28, 30))
    (lits / "test_num.txt").write_text("30\n")
    datalist = prepare_datalist(lits, "lits", tmp_path / "out" / "datalist.json", val_fraction=0.2, labeled=2, seed=0)
    assert [case["id"] for case in datalist["test"]] == ["volume-30"]
    assert len(datalist["training"]) == 2
