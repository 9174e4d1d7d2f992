"""Tests of common.transforms.intensity: each mode's numbers, "auto" from every layout's modality, no side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.data import LAYOUTS, get_layout
from common.transforms import (
    MODALITIES,
    ModalityNormalize,
    ModalityNormalized,
    resolve_normalization,
)


def volume(values) -> torch.Tensor:
    """``(1, N, 1, 1)`` float32 channel-first volume holding ``values``."""
    return torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(1, -1, 1, 1)


def test_ct_window_clips_and_scales_to_unit_range():
    out = ModalityNormalize("ct_window", window=(-200, 250))(volume([-1000, -200, 25, 250, 400]))
    # (HU + 200) / 450, clipped: -1000 and -200 -> 0, 25 -> 0.5, 250 and 400 -> 1
    np.testing.assert_allclose(out.flatten().numpy(), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_hu_window_flattens_mri_which_is_the_bug_auto_avoids():
    """The issue's numbers: an MRI volume in [0, 1.2] through the HU window [-200, 250] spans [0.4444, 0.4471]."""
    mri = volume(np.linspace(0.0, 1.2, 50))
    out = ModalityNormalize("ct_window", window=(-200, 250))(mri)
    np.testing.assert_allclose([float(out.min()), float(out.max())], [200 / 450, 201.2 / 450], atol=1e-6)
    auto = ModalityNormalize("auto", modality="MRI")(mri)
    assert float(auto.std()) > 0.9  # z-scored: unit spread


def test_mri_zscore_uses_nonzero_voxels_and_leaves_background_at_zero():
    out = ModalityNormalize("mri_zscore")(volume([0, 0, 1, 2, 3]))
    # nonzero voxels 1, 2, 3: mean 2, population std sqrt(2/3); zeros stay 0 (a z-score over all voxels would not)
    expected = [0.0, 0.0, -1 / np.sqrt(2 / 3), 0.0, 1 / np.sqrt(2 / 3)]
    np.testing.assert_allclose(out.flatten().numpy(), expected, atol=1e-5)


def test_mri_zscore_clip_percentile_clips_before_the_zscore():
    values = np.arange(1, 1001, dtype=np.float64)
    values[-1] = 5000.0  # one bright outlier: the 99.9th percentile is 999 + 0.001 * 4001 = 1003.001
    out = ModalityNormalize("mri_zscore", zscore_clip_percentile=99.9)(volume(values))
    clipped = np.minimum(values, 1003.001)
    expected = (clipped - clipped.mean()) / clipped.std()
    # atol: torch.quantile interpolates in float32 (about 0.15 intensity units at the outlier, 5e-4 after the z-score)
    np.testing.assert_allclose(out.flatten().numpy(), expected, atol=2e-3)
    unclipped = (values - values.mean()) / values.std()
    assert np.abs(out.flatten().numpy() - unclipped).max() > 0.1  # the clip matters at this tolerance


def test_mri_percentile_maps_percentiles_to_unit_range():
    values = np.random.default_rng(0).gamma(2.0, 100.0, size=2000)
    out = ModalityNormalize("mri_percentile", percentiles=(0.5, 99.5))(volume(values)).flatten().numpy()
    low, high = np.percentile(values, [0.5, 99.5])
    np.testing.assert_allclose(out, np.clip((values - low) / (high - low), 0.0, 1.0), atol=1e-5)


def test_rgb_divides_by_255():
    out = ModalityNormalize("rgb")(volume([0, 51, 255]))
    np.testing.assert_allclose(out.flatten().numpy(), [0.0, 0.2, 1.0], atol=1e-6)


def test_none_leaves_the_image_unchanged():
    image = volume([-3.0, 0.5, 7.0])
    assert torch.equal(ModalityNormalize("none")(image), image)


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("lits", "ct_window"),
        ("atm22", "ct_window"),
        ("la_heart", "mri_zscore"),
        ("nifti", "mri_zscore"),
        ("kvasir_seg", "rgb"),
        ("isic2018", "rgb"),
        ("isic2016", "rgb"),
        ("busi", "rgb"),
    ],
)
def test_auto_follows_each_layouts_modality(layout, expected):
    modality = get_layout(layout).modality
    assert ModalityNormalize("auto", modality=modality).mode == expected


def test_every_registered_layout_declares_a_known_modality():
    for name in LAYOUTS:
        assert get_layout(name).modality in MODALITIES, name


def test_nifti_layout_modality_is_an_option():
    assert get_layout("nifti", modality="ct").modality == "CT"
    assert resolve_normalization("auto", get_layout("nifti", modality="CT").modality) == "ct_window"
    with pytest.raises(ValueError, match="modality"):
        get_layout("nifti", modality="PET")


def test_auto_picks_the_bundles_mri_mode():
    assert resolve_normalization("auto", "MRI", mri_mode="mri_percentile") == "mri_percentile"
    assert resolve_normalization("auto", "CT", mri_mode="mri_percentile") == "ct_window"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "auto"}, "needs the data's modality"),
        ({"mode": "auto", "modality": "PET"}, "unknown modality"),
        ({"mode": "hu"}, "unknown intensity normalisation"),
        ({"mode": "ct_window", "window": (250, -200)}, "low < high"),
        ({"mode": "mri_percentile", "percentiles": (99.5, 0.5)}, "percentiles"),
        ({"mode": "auto", "modality": "MRI", "mri_mode": "rgb"}, "mri_mode"),
    ],
)
def test_invalid_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModalityNormalize(**kwargs)


@pytest.mark.parametrize("mode", ["ct_window", "mri_zscore", "mri_percentile", "rgb"])
def test_the_input_is_not_modified(mode):
    image = volume([0.0, 10.0, 20.0, 400.0])
    before = image.clone()
    ModalityNormalize(mode)(image)
    assert torch.equal(image, before)


def test_dictionary_version_normalises_only_its_keys_and_keeps_metadata():
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0], dtype=torch.float64))
    image = MetaTensor(volume([-200.0, 25.0, 250.0]), affine=affine)
    label = volume([0.0, 1.0, 1.0])
    out = ModalityNormalized(keys="image", mode="auto", modality="CT", window=(-200, 250))(
        {"image": image, "label": label}
    )
    np.testing.assert_allclose(out["image"].flatten().numpy(), [0.0, 0.5, 1.0], atol=1e-6)
    assert torch.equal(out["image"].affine, affine)
    assert out["label"] is label


def test_describe_names_the_mode_window_and_key():
    text = ModalityNormalized("image", mode="auto", modality="CT", window=(-1200, 600), window_key="hu_min, hu_max")
    assert text.describe() == (
        "intensity_normalization 'ct_window' ('auto' from modality CT): HU window [-1200, 600] -> [0, 1] "
        "(key 'hu_min, hu_max')"
    )
