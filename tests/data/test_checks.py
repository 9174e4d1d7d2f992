"""Tests of common.data.checks: every problem is found, named with its file, and no file is ever modified."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, ImageFile

from common.data import DataValidationError, check_cases
from common.data.io import read_array


def noisy_rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_jpeg(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="JPEG", quality=90)
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="PNG")
    return path


def binary_mask(height: int = 24, width: int = 32) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[4:12, 6:20] = 255
    return mask


def good_case(folder: Path, name: str = "good") -> dict:
    image = write_jpeg(folder / f"{name}.jpg", noisy_rgb())
    label = write_png(folder / f"{name}_mask.png", binary_mask())
    return {"id": name, "image": str(image), "label": str(label)}


def problems_of(cases: list[dict], **arguments) -> list[str]:
    with pytest.raises(DataValidationError) as raised:
        check_cases(cases, **arguments)
    assert isinstance(raised.value, ValueError)
    return raised.value.problems


def test_clean_cases_pass(tmp_path: Path) -> None:
    cases = [good_case(tmp_path, "a"), good_case(tmp_path, "b")]
    cases.append({"id": "unlabeled", "image": cases[0]["image"]})
    cases.append({"id": "two_masks", "image": cases[0]["image"], "label": [cases[0]["label"], cases[1]["label"]]})
    check_cases(cases, label_values={0, 255}, label_threshold=128)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    case = good_case(tmp_path)
    problems = problems_of([{"id": "x", "image": str(tmp_path / "absent.jpg"), "label": str(empty)}, case])
    assert problems == [f"{tmp_path / 'absent.jpg'}: missing file", f"{empty}: empty file (0 bytes)"]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_images_are_caught(tmp_path: Path, suffix: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(noisy_rgb(64, 64)).save(buffer, format="JPEG" if suffix == ".jpg" else "PNG")
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    case = {"id": "t", "image": str(truncated)}
    (problem,) = problems_of([case])
    assert problem.startswith(f"{truncated}: unreadable or corrupt image")


def test_truncation_is_caught_even_if_someone_allowed_truncated_images(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(noisy_rgb(64, 64)).save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[:-400])
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        (problem,) = problems_of([{"id": "t", "image": str(truncated)}])
        assert "unreadable or corrupt image" in problem
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    assert ImageFile.LOAD_TRUNCATED_IMAGES == previous


def test_not_an_image(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a png")
    (problem,) = problems_of([{"id": "f", "image": str(fake)}])
    assert problem.startswith(f"{fake}: unreadable or corrupt image")


def test_size_mismatch(tmp_path: Path) -> None:
    image = write_jpeg(tmp_path / "image.jpg", noisy_rgb(24, 32))
    label = write_png(tmp_path / "label.png", binary_mask(24, 30))
    (problem,) = problems_of([{"id": "s", "image": str(image), "label": str(label)}])
    assert problem == f"{label}: spatial size (24, 30) differs from the image's (24, 32) ({image})"


def test_mask_values_outside_the_label_set(tmp_path: Path) -> None:
    case = good_case(tmp_path)
    mask = binary_mask()
    mask[0, 0] = 7
    write_png(Path(case["label"]), mask)
    (problem,) = problems_of([case], label_values={0, 255})
    assert problem == f"{case['label']}: mask values outside the allowed set {{0, 255}}: 7"
    check_cases([case], label_values=None)  # lossy masks: no value check
    check_cases([case], label_values={0, 255}, check_label_values=False)


def test_float_tiff_with_nan(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((16, 20)).astype(np.float32)
    values[3, 4] = np.nan
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)  # mode F: 32-bit float TIFF
    assert read_array(path).dtype == np.float32
    (problem,) = problems_of([{"id": "f", "image": str(path)}])
    assert problem == f"{path}: non-finite intensities (1 NaN, 0 inf)"


def test_nifti_nan_inf_and_shape_mismatch(tmp_path: Path) -> None:
    volume = np.zeros((8, 9, 10), dtype=np.float32)
    volume[1, 1, 1] = np.nan
    volume[2, 2, 2] = np.inf
    volume[3, 3, 3] = -np.inf
    image = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), image)
    label = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 11), dtype=np.uint8), np.eye(4)), label)
    problems = problems_of([{"id": "v", "image": str(image), "label": str(label)}], label_values={0, 1})
    assert problems == [
        f"{image}: non-finite intensities (1 NaN, 2 inf)",
        f"{label}: spatial size (8, 9, 11) differs from the image's (8, 9, 10) ({image})",
    ]
    good_label = tmp_path / "good.nii"
    nib.save(nib.Nifti1Image(np.ones((8, 9, 10), dtype=np.uint8), np.eye(4)), good_label)
    (problem,) = problems_of([{"id": "v", "image": str(image), "label": str(good_label)}], label_values={0, 1})
    assert "non-finite" in problem


def test_truncated_nifti(tmp_path: Path) -> None:
    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 16)).astype(np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:-2000])
    (problem,) = problems_of([{"id": "v", "image": str(path)}])
    assert problem.startswith(f"{path}: unreadable or corrupt image")


def test_every_problem_is_listed_and_long_lists_are_capped(tmp_path: Path) -> None:
    cases = [{"id": f"c{i}", "image": str(tmp_path / f"missing{i}.jpg")} for i in range(60)]
    with pytest.raises(DataValidationError) as raised:
        check_cases(cases)
    assert len(raised.value.problems) == 60
    lines = str(raised.value).splitlines()
    assert lines[0] == "60 problem(s) found in the input files:"
    assert len(lines) == 1 + 50 + 1 and lines[-1] == "... and 10 more"
    assert lines[1] == f"{tmp_path / 'missing0.jpg'}: missing file"


def test_checks_never_modify_files(tmp_path: Path) -> None:
    cases = [good_case(tmp_path, "a")]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(cases[0]["image"]).read_bytes()[:100])
    bad_mask = write_png(tmp_path / "bad_mask.png", np.full((24, 32), 7, np.uint8))
    cases.append({"id": "b", "image": str(truncated), "label": str(bad_mask)})
    before = {path: (path.read_bytes(), os.stat(path).st_mtime_ns) for path in tmp_path.iterdir()}
    with pytest.raises(DataValidationError):
        check_cases(cases, label_values={0, 255}, label_threshold=128)
    after = {path: (path.read_bytes(), os.stat(path).st_mtime_ns) for path in tmp_path.iterdir()}
    assert after == before


def test_empty_masks_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = write_jpeg(tmp_path / "image.jpg", noisy_rgb())
    empty = write_png(tmp_path / "empty.png", np.zeros((24, 32), np.uint8))
    full = write_png(tmp_path / "full.png", binary_mask())
    cases = [
        {"id": "a", "image": str(image), "label": str(empty)},
        {"id": "b", "image": str(image), "label": str(full)},
    ]
    with caplog.at_level(logging.INFO, logger="common.data"):
        check_cases(cases, label_threshold=128)
    assert "1 of 2 labels have no foreground pixel" in caplog.text


def test_jpeg_masks_with_stray_values_pass_and_the_log_says_they_are_thresholded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = write_jpeg(tmp_path / "image.jpg", noisy_rgb())
    stray = binary_mask()
    stray[0, :4] = (3, 128, 252, 1)  # Kvasir-SEG's JPEG masks hold such values near the edges
    label = write_png(tmp_path / "mask.png", stray)
    with caplog.at_level(logging.INFO, logger="common.data"):
        check_cases([{"id": "a", "image": str(image), "label": str(label)}], label_threshold=128)  # no set: passes
    assert "a pixel is foreground where its value >= 128, so stray values from compression are thresholded" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="common.data"), pytest.raises(DataValidationError):
        check_cases([{"id": "a", "image": str(image), "label": str(label)}], label_values={0, 255}, label_threshold=128)
    assert "thresholded" not in caplog.text  # a label set is checked: nothing to say about thresholding


# ------------------------------------------------------------------------------------ normalised intensities
def write_volume(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), path)
    return path


def volume_loader() -> list:
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    return [LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")]


def mri_range_volume(seed: int = 0) -> np.ndarray:
    """A (24, 24, 16) MRI-like volume in [0, 1.2]: a bright blob (about 0.9) on a darker background (about 0.3)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in (24, 24, 16)), indexing="ij"), axis=-1)
    blob = np.linalg.norm(grid - np.array([12, 12, 8]), axis=-1) < 6
    image = np.where(blob, 0.9, 0.3) + 0.05 * rng.standard_normal(blob.shape)
    image = np.clip(image, 0.0, 1.2)
    image[0, 0, 0], image[-1, -1, -1] = 0.0, 1.2  # the full range, as in the report
    return image


def test_hu_window_on_mri_stops_naming_the_file_window_and_key(tmp_path: Path) -> None:
    from common.data import IntensityCheckError, check_intensities
    from common.transforms import ModalityNormalized

    path = write_volume(tmp_path / "case_000.nii.gz", mri_range_volume())
    window = ModalityNormalized("image", mode="ct_window", window=(-200, 250))
    with pytest.raises(IntensityCheckError) as raised:
        check_intensities([{"image": str(path)}], volume_loader(), [window])
    assert isinstance(raised.value, DataValidationError)  # printed short and last by the bundle runner's hook
    message = str(raised.value)
    assert f"{path}: the intensity normalisation flattens this image" in message
    assert "-> [0.4444, 0.4471]" in message  # (0 + 200) / 450 and (1.2 + 200) / 450
    assert "HU window [-200, 250]" in message and "'hu_window'" in message
    assert "intensity_normalization (auto | ct_window | mri_zscore" in message


def test_fitting_normalisation_passes(tmp_path: Path) -> None:
    from common.data import check_intensities
    from common.transforms import ModalityNormalized

    path = write_volume(tmp_path / "case_000.nii.gz", mri_range_volume())
    check_intensities([{"image": str(path)}], volume_loader(), [ModalityNormalized("image", "auto", "MRI")])
    check_intensities([{"image": str(path)}], volume_loader(), [ModalityNormalized("image", "mri_percentile")])


@pytest.mark.parametrize("air_fraction, flattened", [(0.97, True), (0.90, False)])
def test_nearly_all_voxels_clipped_to_one_value_is_flattened(tmp_path: Path, air_fraction, flattened) -> None:
    """A CT whose voxels sit below the window: its std (0.09 at 97 % air) is fine, the clipped share is not."""
    from common.data import IntensityCheckError, check_intensities
    from common.transforms import ModalityNormalized

    image = np.full(1000, 40.0)
    image[: round(air_fraction * 1000)] = -1000.0
    path = write_volume(tmp_path / "ct.nii.gz", image.reshape(10, 10, 10))
    window = ModalityNormalized("image", mode="ct_window", window=(-200, 250))
    if flattened:
        with pytest.raises(IntensityCheckError, match=r"97\.0% of voxels at one value"):
            check_intensities([{"image": str(path)}], volume_loader(), [window])
    else:
        check_intensities([{"image": str(path)}], volume_loader(), [window])


def test_only_the_first_cases_are_read(tmp_path: Path) -> None:
    from common.data import IntensityCheckError, check_intensities
    from common.transforms import ModalityNormalized

    good = write_volume(tmp_path / "good.nii.gz", mri_range_volume())
    flat = write_volume(tmp_path / "flat.nii.gz", np.full((8, 8, 8), 3.0))
    cases = [{"image": str(good)}] * 3 + [{"image": str(flat)}]
    normalize = [ModalityNormalized("image", "auto", "MRI")]
    check_intensities(cases, volume_loader(), normalize, num_cases=3)
    with pytest.raises(IntensityCheckError, match="flat.nii.gz: the intensity normalisation flattens"):
        check_intensities(cases, volume_loader(), normalize, num_cases=4)
