"""Tests of common.data.layouts.la_heart on a tiny fixture in the exact public layout of the LA benchmark."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from common.data import get_layout, prepare_datalist
from common.data.io import read_array
from common.data.layouts import LAHeartLayout

IDS = ["0RZDK210BSMWAA6467LU", "1D7CUD1955YZPGK8XHJX", "1GU15S0GJJOMVBQ3JEMW", "1MLRKB3ALY5FWDHX1G1D"]


def write_h5(path: Path, shape: tuple[int, int, int] = (14, 12, 10)) -> None:
    """A case as the benchmark's preprocessing writes it: float32 z-scored image, uint8 label, gzip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    label = np.zeros(shape, np.uint8)
    label[3:9, 4:8, 2:7] = 1
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=rng.standard_normal(shape).astype(np.float32), compression="gzip")
        f.create_dataset("label", data=label, compression="gzip")


def build_la(root: Path, lists_inside: bool = False) -> Path:
    """``LA/2018LA_Seg_Training Set/<id>/mri_norm2.h5`` (+ the raw nrrd files beside it) and the two lists."""
    cases = root / "LA" / "2018LA_Seg_Training Set"
    for case_id in IDS:
        write_h5(cases / case_id / "mri_norm2.h5")
        (cases / case_id / "lgemri.nrrd").write_bytes(b"raw")
        (cases / case_id / "laendo.nrrd").write_bytes(b"raw")
    lists = cases if lists_inside else root / "LA"
    (lists / "train.list").write_text("\n".join(IDS[:3]) + "\n")
    (lists / "test.list").write_text(IDS[3] + "\n\n")
    return root / "LA"


@pytest.mark.parametrize("lists_inside", [False, True])
@pytest.mark.parametrize("point_at_cases", [False, True])
def test_finds_cases_and_official_split(tmp_path: Path, lists_inside: bool, point_at_cases: bool) -> None:
    la = build_la(tmp_path, lists_inside)
    cases = LAHeartLayout().find_cases(la / "2018LA_Seg_Training Set" if point_at_cases else la)
    assert [case["id"] for case in cases] == IDS
    for case in cases:
        expected = la.absolute() / "2018LA_Seg_Training Set" / case["id"] / "mri_norm2.h5"
        assert case["image"] == case["label"] == str(expected)
    assert [case["official_split"] for case in cases] == ["training"] * 3 + ["test"]


def test_without_lists_every_case_is_split_by_fractions(tmp_path: Path) -> None:
    la = build_la(tmp_path)
    (la / "train.list").unlink()
    (la / "test.list").unlink()
    assert all("official_split" not in case for case in LAHeartLayout().find_cases(la))


def test_prepare_datalist_reads_both_datasets_of_the_file(tmp_path: Path) -> None:
    la = build_la(tmp_path)
    datalist = prepare_datalist(la, "la_heart", tmp_path / "out" / "datalist.json", val_fraction=0.34, labeled=1)
    assert [case["id"] for case in datalist["test"]] == [IDS[3]]
    assert len(datalist["validation"]) == 1 and len(datalist["training"]) == 1 and len(datalist["unlabeled"]) == 1
    assert "label" not in datalist["unlabeled"][0]
    case = datalist["training"][0]
    assert read_array(case["image"]).dtype == np.float32 and set(np.unique(read_array(case["label"], "label"))) == {
        0,
        1,
    }


def test_errors_name_the_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LAHeartLayout().find_cases(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="2018LA_Seg_Training Set is missing"):
        LAHeartLayout().find_cases(tmp_path)
    la = build_la(tmp_path)
    (la / "2018LA_Seg_Training Set" / IDS[1] / "mri_norm2.h5").unlink()
    with pytest.raises(FileNotFoundError, match=f"{IDS[1]}: no mri_norm2.h5"):
        LAHeartLayout().find_cases(la)
    write_h5(la / "2018LA_Seg_Training Set" / IDS[1] / "mri_norm2.h5")
    (la / "test.list").write_text("NOSUCHCASE\n")
    with pytest.raises(FileNotFoundError, match="NOSUCHCASE"):
        LAHeartLayout().find_cases(la)
    (la / "test.list").write_text(IDS[0] + "\n")
    with pytest.raises(FileNotFoundError, match="also in another list"):
        LAHeartLayout().find_cases(la)


def test_write_case_round_trip_and_phantom_lists(tmp_path: Path) -> None:
    layout = get_layout("la_heart")
    image = np.random.default_rng(0).standard_normal((10, 9, 8)).astype(np.float32)
    mask = np.zeros((10, 9, 8), bool)
    mask[2:6, 3:7, 1:5] = True
    ids = [layout.phantom_case_id(i) for i in range(10)]
    for case_id in ids:
        layout.write_case(tmp_path, case_id, image, mask)
    layout.write_phantom_splits(tmp_path, ids)
    assert (tmp_path / "train.list").read_text().split() == ids[:8]
    assert (tmp_path / "test.list").read_text().split() == ids[8:]
    cases = layout.find_cases(tmp_path)
    np.testing.assert_array_equal(read_array(cases[0]["image"]), image)
    label = read_array(cases[0]["label"], h5_dataset="label")
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label.astype(bool), mask)
    with pytest.raises(ValueError, match="float32"):
        layout.write_case(tmp_path, "bad", image.astype(np.float64), mask)
