"""Every 3D bundle keeps the contrast of CT and MRI inputs through its own preprocessing, as its train.json sets it.

An MRI-range volume (values in [0, 1.2], read through the NIfTI layout, modality MRI) and a CT volume in Hounsfield
units (read through a CT layout) go through each 3D bundle's validation preprocessing (its loading and intensity
normalisation, what the network sees). The normalised foreground and background must stay apart by a large share of
the image's spread, and the image must keep a spread: an HU window applied to MRI (ASE-Net before its normalisation
followed the modality) maps [0, 1.2] to [0.4444, 0.4471], a constant, and trains nothing. The test also runs the
bundle's own intensity check (``intensity_check``'s function) on the same file, and shows that the check stops a
flattening setting with a short message printed last by ``python -m monai.bundle run``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from common.data import IntensityCheckError, check_intensities
from common.data.checks import MIN_NORMALIZED_STD

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (40, 40, 24)
MIN_CONTRAST = 0.5
"""|mean(foreground) - mean(background)| / (p99 - p1) of the normalised image (about 0.8 for both test volumes)."""
MIN_STD = MIN_NORMALIZED_STD
"""Standard deviation of the normalised image (0.01, the pre-training check's): 0.02 (soft tissue in DMGSA's lung
window) to 1 (z-score) when it keeps its contrast, 6e-4 for MRI in an HU window."""

# bundle -> (MRI layout, CT layout) expressions for ``dataset_layout``
LAYOUTS = {
    "ugmcl": ("nifti", "$common.data.get_layout('nifti', modality='CT')"),
    "dmgsa": ("nifti", "atm22"),
    "asenet": ("nifti", "lits"),
}


def blob_mask() -> np.ndarray:
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), axis=-1)
    return np.linalg.norm(grid - np.array(SHAPE) / 2, axis=-1) < 8


def mri_volume() -> tuple[np.ndarray, np.ndarray]:
    """A bright structure (about 0.9) on darker tissue (about 0.3) in [0, 1.2], as scanner MRI exported to NIfTI."""
    mask = blob_mask()
    image = np.where(mask, 0.9, 0.3) + 0.05 * np.random.default_rng(0).standard_normal(SHAPE)
    image = np.clip(image, 0.0, 1.2)
    image[0, 0, 0], image[-1, -1, -1] = 0.0, 1.2
    return image.astype(np.float32), mask


def ct_volume() -> tuple[np.ndarray, np.ndarray]:
    """An organ (about 60 HU) in fat (about -100 HU) with 10 HU noise: inside every bundle's HU window."""
    mask = blob_mask()
    image = np.where(mask, 60.0, -100.0) + 10.0 * np.random.default_rng(1).standard_normal(SHAPE)
    return np.rint(image).astype(np.int16), mask


def write_case(folder: Path, image: np.ndarray, mask: np.ndarray) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    nib.save(nib.Nifti1Image(image, affine), folder / "image.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / "label.nii.gz")
    return {"image": str(folder / "image.nii.gz"), "label": str(folder / "label.nii.gz")}


def bundle_parser(bundle: str, layout: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / bundle / "configs" / "train.json"))
    parser["dataset_layout"] = layout
    for key, value in overrides.items():
        parser[key] = value
    return parser


def contrast(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(|mean fg - mean bg| / (p99 - p1), std) of a normalised ``(X, Y, Z)`` image."""
    low, high = np.percentile(image, [1, 99])
    share = abs(float(image[mask].mean()) - float(image[~mask].mean())) / max(float(high - low), 1e-12)
    return share, float(image.std())


def normalised(parser: ConfigParser, case: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    data = parser.get_parsed_content("validate#preprocessing")(dict(case))
    image = np.asarray(data["image"].detach().cpu().numpy()[0], dtype=np.float64)
    label = np.asarray(data["label"].detach().cpu().numpy()[0]) > 0.5
    return image, label


@pytest.mark.parametrize("bundle", sorted(LAYOUTS))
@pytest.mark.parametrize("modality", ["MRI", "CT"])
def test_bundle_preprocessing_keeps_contrast(bundle, modality, tmp_path):
    image, mask = mri_volume() if modality == "MRI" else ct_volume()
    case = write_case(tmp_path, image, mask)
    parser = bundle_parser(bundle, LAYOUTS[bundle][0 if modality == "MRI" else 1])
    normalizer = parser.get_parsed_content("intensity_normalizer")
    mri_mode = "mri_percentile" if bundle == "dmgsa" else "mri_zscore"  # DMGSA's networks expect [0, 1]
    assert normalizer.mode == ("ct_window" if modality == "CT" else mri_mode)
    out, label = normalised(parser, case)
    assert label.sum() == mask.sum()  # the label went through unchanged (no crop or resampling here)
    share, std = contrast(out, label)
    assert share > MIN_CONTRAST, f"{bundle} {modality}: contrast share {share:.3f} ({normalizer.describe()})"
    assert std > MIN_STD, f"{bundle} {modality}: std {std:.2g} of [{out.min():.4g}, {out.max():.4g}]"
    load = parser.get_parsed_content("load_labeled") if parser.get("load_labeled") else None
    if load is not None:  # the bundle's own pre-training check passes on this case
        check_intensities([case], load, parser.get_parsed_content("intensity_transforms"))


@pytest.mark.parametrize("bundle", sorted(LAYOUTS))
def test_hu_window_on_mri_is_flat_and_the_check_stops_it(bundle, tmp_path):
    """The criterion can fail: forcing the HU window on MRI (the old ASE-Net behaviour) flattens the image."""
    case = write_case(tmp_path, *mri_volume())
    parser = bundle_parser(bundle, "nifti", intensity_normalization="ct_window")
    normalizer = parser.get_parsed_content("intensity_normalizer")
    out, label = normalised(parser, case)
    assert contrast(out, label)[1] < MIN_STD
    if parser.get("load_labeled"):
        with pytest.raises(IntensityCheckError, match="image.nii.gz: the intensity normalisation flattens"):
            check_intensities([case], parser.get_parsed_content("load_labeled"), [normalizer])


def test_inference_normalises_as_training_does():
    for bundle in LAYOUTS:
        modes = []
        for name in ("train", "inference"):
            parser = ConfigParser()
            parser.read_config(str(ROOT / "bundles" / bundle / "configs" / f"{name}.json"))
            modes.append(parser.get_parsed_content("intensity_normalizer").describe())
        assert modes[0] == modes[1], bundle


@pytest.mark.slow
def test_flattening_stops_training_with_a_short_last_message(tmp_path):
    """``run training`` with the HU window on UG-MCL's MRI phantom stops before training; the message is last."""
    import shutil

    bundle = tmp_path / "ugmcl"
    shutil.copytree(
        ROOT / "bundles" / "ugmcl", bundle, ignore=shutil.ignore_patterns("models", "eval", "data", "__pycache__")
    )
    config_files = repr([str(bundle / "configs" / f"{name}.json") for name in ("train", "quick")])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config_files]
    cmd += ["--bundle_root", str(bundle), "--intensity_normalization", "ct_window"]
    proc = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    *_, case_line, last = proc.stderr.strip().splitlines()
    assert "mri_norm2.h5: the intensity normalisation flattens this image" in case_line, proc.stderr[-3000:]
    assert "HU window [-200, 250]" in last and "'hu_window'" in last, last
    assert last.endswith("Set intensity_normalization (auto | ct_window | mri_zscore | mri_percentile | rgb | none) "
                         "or the window to fit this data (--check_data False skips this check).")  # fmt: skip
    assert not (bundle / "models" / "model.pt").exists()


@pytest.mark.parametrize("bundle", ["cmunext", "dfcps"])
def test_2d_bundles_read_rgb_layouts(bundle):
    """The 2D bundles scale 8-bit RGB (then ImageNet statistics): their default layout must declare RGB."""
    from common.data import get_layout

    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / bundle / "configs" / "train.json"))
    assert get_layout(parser.get_parsed_content("dataset_layout")).modality == "RGB"
