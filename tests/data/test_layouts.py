"""Tests of the real-layout adapters on tiny hand-built fixtures in the exact public layouts, and of write_case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data import LAYOUTS, LesionPhantom2D, get_layout
from common.data.io import read_array
from common.data.layouts import BUSILayout, ISIC2016Layout, ISIC2018Layout, KvasirSegLayout, Layout, register_layout


def save_rgb(path: Path, size: tuple[int, int] = (12, 10), value: int = 90, format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, value // 3)).save(path, format=format)


def save_mask(path: Path, size: tuple[int, int] = (12, 10), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[2:6, 3:8] = 255
    image = Image.fromarray(mask)
    (image.convert(mode) if mode != "L" else image).save(path)


# ---------------------------------------------------------------------------------------------------- Kvasir-SEG
def build_kvasir(root: Path) -> Path:
    folder = root / "Kvasir-SEG"
    for stem in ("cju0qkwl35piu0993l0dewei2", "cju0roawvklrq0799vmjorwfv", "cju0s690hkp960855tjuaqvv0"):
        save_rgb(folder / "images" / f"{stem}.jpg")
        save_mask(folder / "masks" / f"{stem}.jpg", mode="RGB")
    (folder / "kavsir_bboxes.json").write_text("{}")
    (folder / "images" / ".DS_Store").write_bytes(b"\0")
    return folder


@pytest.mark.parametrize("use_parent", [True, False])
def test_kvasir_finds_and_pairs_cases(tmp_path: Path, use_parent: bool) -> None:
    folder = build_kvasir(tmp_path)
    cases = KvasirSegLayout().find_cases(tmp_path if use_parent else folder)
    assert [case["id"] for case in cases] == [
        "cju0qkwl35piu0993l0dewei2",
        "cju0roawvklrq0799vmjorwfv",
        "cju0s690hkp960855tjuaqvv0",
    ]
    for case in cases:
        assert case["image"] == str(folder.absolute() / "images" / f"{case['id']}.jpg")
        assert case["label"] == str(folder.absolute() / "masks" / f"{case['id']}.jpg")
        assert "official_split" not in case


def test_kvasir_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"images is missing.*expected the Kvasir-SEG layout images/\*\.jpg"):
        KvasirSegLayout().find_cases(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'masks'} is missing: expected the Kvasir-SEG layout"):
        KvasirSegLayout().find_cases(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KvasirSegLayout().find_cases(tmp_path / "absent")


def test_kvasir_reports_unpaired_files(tmp_path: Path) -> None:
    folder = build_kvasir(tmp_path)
    save_rgb(folder / "images" / "orphan.jpg")
    with pytest.raises(FileNotFoundError, match=r"orphan\.jpg: no mask"):
        KvasirSegLayout().find_cases(folder)


# ---------------------------------------------------------------------------------------------------- ISIC 2018
def build_isic2018(root: Path, *, with_test_truth: bool = False) -> None:
    for number in (0, 1, 3):
        save_rgb(root / "ISIC2018_Task1-2_Training_Input" / f"ISIC_{number:07d}.jpg")
        save_mask(root / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{number:07d}_segmentation.png")
    save_mask(root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000_superpixels.png")
    for folder in ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"):
        (root / folder / "ATTRIBUTION.txt").write_text("attribution")
        (root / folder / "LICENSE.txt").write_text("license")
    save_rgb(root / "ISIC2018_Task1-2_Validation_Input" / "ISIC_0012255.jpg")
    save_mask(root / "ISIC2018_Task1_Validation_GroundTruth" / "ISIC_0012255_segmentation.png")
    save_rgb(root / "ISIC2018_Task1-2_Test_Input" / "ISIC_0012169.jpg")
    if with_test_truth:
        save_mask(root / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0012169_segmentation.png")


def test_isic2018_official_splits_and_ignored_files(tmp_path: Path) -> None:
    build_isic2018(tmp_path)
    cases = ISIC2018Layout().find_cases(tmp_path)
    # the test input has no ground truth folder: its cases are skipped
    assert [(case["id"], case["official_split"]) for case in cases] == [
        ("ISIC_0000000", "training"),
        ("ISIC_0000001", "training"),
        ("ISIC_0000003", "training"),
        ("ISIC_0012255", "validation"),
    ]
    first = cases[0]
    assert first["image"] == str(tmp_path / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000.jpg")
    assert first["label"] == str(tmp_path / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000000_segmentation.png")

    save_mask(tmp_path / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0012169_segmentation.png")
    with_test = ISIC2018Layout().find_cases(tmp_path)
    assert [case["official_split"] for case in with_test].count("test") == 1
    assert [case["id"] for case in ISIC2018Layout(include_splits=("training",)).find_cases(tmp_path)] == [
        "ISIC_0000000",
        "ISIC_0000001",
        "ISIC_0000003",
    ]


def test_isic2018_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ISIC2018_Task1-2_Training_Input is missing: expected the ISIC 2018"):
        ISIC2018Layout().find_cases(tmp_path)
    build_isic2018(tmp_path)
    (tmp_path / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000003_segmentation.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ISIC_0000003\.jpg: no ISIC_0000003_segmentation\.png"):
        ISIC2018Layout().find_cases(tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        ISIC2018Layout(include_splits=("training", "holdout"))


# ---------------------------------------------------------------------------------------------------- ISIC 2016
def test_isic2016_layout(tmp_path: Path) -> None:
    for number in (0, 1):
        save_rgb(tmp_path / "ISBI2016_ISIC_Part1_Training_Data" / f"ISIC_{number:07d}.jpg")
        save_mask(tmp_path / "ISBI2016_ISIC_Part1_Training_GroundTruth" / f"ISIC_{number:07d}_Segmentation.png")
    save_rgb(tmp_path / "ISBI2016_ISIC_Part1_Test_Data" / "ISIC_0000003.jpg")
    save_mask(tmp_path / "ISBI2016_ISIC_Part1_Test_GroundTruth" / "ISIC_0000003_Segmentation.png")
    cases = ISIC2016Layout().find_cases(tmp_path)
    assert [(case["id"], case["official_split"]) for case in cases] == [
        ("ISIC_0000000", "training"),
        ("ISIC_0000001", "training"),
        ("ISIC_0000003", "test"),
    ]
    assert cases[2]["label"] == str(tmp_path / "ISBI2016_ISIC_Part1_Test_GroundTruth" / "ISIC_0000003_Segmentation.png")
    with pytest.raises(FileNotFoundError, match="ISBI2016_ISIC_Part1_Training_Data is missing"):
        ISIC2016Layout().find_cases(tmp_path / "ISBI2016_ISIC_Part1_Test_Data")


# ---------------------------------------------------------------------------------------------------- BUSI
def build_busi(root: Path) -> Path:
    folder = root / "Dataset_BUSI_with_GT"
    save_rgb(folder / "benign" / "benign (1).png")
    save_mask(folder / "benign" / "benign (1)_mask.png", mode="RGB")
    save_rgb(folder / "benign" / "benign (2).png")
    save_mask(folder / "benign" / "benign (2)_mask.png")
    save_mask(folder / "benign" / "benign (2)_mask_1.png")
    save_rgb(folder / "malignant" / "malignant (1).png")
    save_mask(folder / "malignant" / "malignant (1)_mask.png")
    save_rgb(folder / "normal" / "normal (1).png")
    save_mask(folder / "normal" / "normal (1)_mask.png")
    return folder


@pytest.mark.parametrize("use_parent", [True, False])
def test_busi_cases_multi_masks_and_classes(tmp_path: Path, use_parent: bool) -> None:
    folder = build_busi(tmp_path).absolute()
    cases = BUSILayout().find_cases(tmp_path if use_parent else folder)
    assert [case["id"] for case in cases] == ["benign_1", "benign_2", "malignant_1"]
    by_id = {case["id"]: case for case in cases}
    assert by_id["benign_1"]["label"] == str(folder / "benign" / "benign (1)_mask.png")
    assert by_id["benign_2"]["label"] == [
        str(folder / "benign" / "benign (2)_mask.png"),
        str(folder / "benign" / "benign (2)_mask_1.png"),
    ]
    assert by_id["malignant_1"]["image"] == str(folder / "malignant" / "malignant (1).png")
    assert by_id["malignant_1"]["category"] == "malignant"

    with_normal = BUSILayout(include_normal=True).find_cases(folder)
    assert [case["id"] for case in with_normal] == ["benign_1", "benign_2", "malignant_1", "normal_1"]


def test_busi_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"benign is missing.*expected the BUSI layout Dataset_BUSI_with_GT"):
        BUSILayout().find_cases(tmp_path)
    folder = build_busi(tmp_path)
    (folder / "malignant" / "malignant (1)_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"malignant \(1\)\.png: no 'malignant \(1\)_mask\.png'"):
        BUSILayout().find_cases(folder)
    for path in (folder / "malignant").iterdir():
        path.unlink()
    (folder / "malignant").rmdir()
    with pytest.raises(FileNotFoundError, match=rf"{folder.absolute() / 'malignant'} is missing"):
        BUSILayout().find_cases(folder)


# ---------------------------------------------------------------------------------------------------- registry
def test_registry() -> None:
    assert {"kvasir_seg", "isic2018", "isic2016", "busi"} <= set(LAYOUTS)
    assert isinstance(get_layout("kvasir_seg"), KvasirSegLayout)
    assert get_layout("busi", include_normal=True).include_normal
    instance = BUSILayout()
    assert get_layout(instance) is instance
    with pytest.raises(
        ValueError, match="unknown layout 'kvasir'; known layouts: (.+, )?busi, isic2016, isic2018, kvasir_seg"
    ):
        get_layout("kvasir")


def test_register_a_new_layout() -> None:
    class VolumeLayout(KvasirSegLayout):
        name = "test_volume_layout"

    try:
        assert register_layout(VolumeLayout) is VolumeLayout
        assert isinstance(get_layout("test_volume_layout"), VolumeLayout)
        with pytest.raises(ValueError, match="already taken"):
            register_layout(type("Other", (VolumeLayout,), {}))
    finally:
        LAYOUTS.pop("test_volume_layout", None)
    with pytest.raises(TypeError):
        register_layout(dict)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- write_case
def union_of_labels(label: str | list[str], threshold: float) -> np.ndarray:
    paths = [label] if isinstance(label, str) else label
    union = None
    for path in paths:
        array = read_array(path)
        foreground = (array if array.ndim == 2 else array.max(axis=2)) >= threshold
        union = foreground if union is None else union | foreground
    return union


@pytest.mark.parametrize("layout", [KvasirSegLayout(), ISIC2018Layout(), ISIC2016Layout(), BUSILayout()], ids=repr)
def test_write_case_round_trip_gives_the_exact_mask(tmp_path: Path, layout: Layout) -> None:
    phantom = LesionPhantom2D(num_cases=6, seed=5, max_lesions=3)
    written = {}
    for index in range(phantom.num_cases):
        image, mask = phantom.generate(index)
        case_id = layout.phantom_case_id(index)
        layout.write_case(tmp_path, case_id, image, mask)
        written[case_id] = (image, mask)
    cases = layout.find_cases(tmp_path)
    assert sorted(case["id"] for case in cases) == sorted(written)
    for case in cases:
        image, mask = written[case["id"]]
        np.testing.assert_array_equal(union_of_labels(case["label"], layout.label_threshold), mask)
        stored = read_array(case["image"])
        assert stored.shape == image.shape and stored.dtype == np.uint8
        if layout.label_values is not None:
            labels = [case["label"]] if isinstance(case["label"], str) else case["label"]
            assert all(set(np.unique(read_array(path)).tolist()) <= set(layout.label_values) for path in labels)


def test_kvasir_jpeg_masks_are_three_channel_and_threshold_exactly(tmp_path: Path) -> None:
    phantom = LesionPhantom2D(num_cases=30, seed=11)
    layout = KvasirSegLayout()
    for index in range(phantom.num_cases):
        _, mask = phantom.generate(index)
        layout.write_case(tmp_path, layout.phantom_case_id(index), np.zeros((*mask.shape, 3), np.uint8), mask)
        stored = read_array(tmp_path / "masks" / f"{layout.phantom_case_id(index)}.jpg")
        assert stored.ndim == 3 and stored.shape[2] == 3
        assert np.array_equal(stored.max(axis=2) >= 128, mask)
        assert np.abs(stored.astype(int) - mask[..., None] * 255).max() < 64  # far from the threshold


def test_busi_writes_one_mask_per_lesion(tmp_path: Path) -> None:
    layout = BUSILayout()
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:6, 2:6] = True
    mask[10:18, 12:25] = True
    layout.write_case(tmp_path, "malignant_4", np.full((20, 30, 3), 100, np.uint8), mask)
    assert sorted(path.name for path in (tmp_path / "malignant").iterdir()) == [
        "malignant (4).png",
        "malignant (4)_mask.png",
        "malignant (4)_mask_1.png",
    ]
    largest = read_array(tmp_path / "malignant" / "malignant (4)_mask.png")
    assert largest.sum() == 8 * 13 * 255
    image = Image.open(tmp_path / "malignant" / "malignant (4).png")
    assert image.mode == "RGB"
    with pytest.raises(ValueError, match="BUSI case ids"):
        layout.write_case(tmp_path, "benign (4)", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool))
    assert [layout.phantom_case_id(index) for index in range(6)] == [
        "benign_1",
        "benign_2",
        "malignant_1",
        "benign_3",
        "benign_4",
        "malignant_2",
    ]


def test_archive_root_takes_the_folder_or_its_unpacked_archive(tmp_path) -> None:
    from common.data.layouts.base import archive_root

    (tmp_path / "here" / "images").mkdir(parents=True)
    (tmp_path / "above" / "Kvasir-SEG" / "masks").mkdir(parents=True)
    assert archive_root(tmp_path / "here", "Kvasir-SEG", ("images", "masks"), "x") == tmp_path / "here"
    # any marker counts, and the data set's own folder is found inside the archive's
    assert archive_root(tmp_path / "above", "Kvasir-SEG", ("images", "masks"), "x") == tmp_path / "above" / "Kvasir-SEG"
    (tmp_path / "both" / "images").mkdir(parents=True)
    (tmp_path / "both" / "Kvasir-SEG" / "images").mkdir(parents=True)
    assert archive_root(tmp_path / "both", "Kvasir-SEG", ("images",), "x") == tmp_path / "both"  # the folder first
    (tmp_path / "empty").mkdir()
    message = (
        rf"^{tmp_path / 'empty' / 'images'} is missing \(and so is {tmp_path / 'empty' / 'Kvasir-SEG' / 'images'}\): "
        rf"expected it, in {tmp_path / 'empty'} or in its Kvasir-SEG/ subfolder$"
    )
    with pytest.raises(FileNotFoundError, match=message):
        archive_root(tmp_path / "empty", "Kvasir-SEG", ("images", "masks"), "expected it")
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'none'} does not exist: expected it$"):
        archive_root(tmp_path / "none", "Kvasir-SEG", ("images",), "expected it")
