"""Tests of common.transforms.strong_view: the strong view keeps the weak view's geometry (pixel-wise), is
reproducible from a seed, stays in range, and each corruption does what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd, RandRotated, RandZoomd

from common.transforms import RandStrongView, RandStrongViewd

OFF = {"jitter_prob": 0.0, "blur_prob": 0.0, "noise_prob": 0.0, "cutout_prob": 0.0}
LESION = (200.0, 60.0, 50.0)
TISSUE = (90.0, 120.0, 160.0)


def two_colour_case(size: int = 48) -> dict:
    """An image of two colours whose lesion colour is exactly where the label is 1."""
    label = torch.zeros(1, size, size)
    label[:, 10:25, 14:40] = 1.0
    image = torch.where(label.bool(), torch.tensor(LESION).view(3, 1, 1), torch.tensor(TISSUE).view(3, 1, 1))
    return {"image": image, "label": label}


def weak_then_strong(seed: int, **strong) -> Compose:
    """Geometry once for image and label (nearest, so the image keeps two colours), then the strong copy."""
    keys = ["image", "label"]
    return Compose(
        [
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandRotated(keys, range_x=0.5, prob=1.0, keep_size=True, mode="nearest", padding_mode="border"),
            RandZoomd(keys, prob=1.0, min_zoom=0.7, max_zoom=1.4, mode="nearest", padding_mode="edge"),
            RandStrongViewd("image", **strong),
        ]
    ).set_random_state(seed)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_strong_view_is_pixelwise_aligned_with_weak_view_and_label(seed: int) -> None:
    """After a random geometry, every pixel of the strong view is the same colour map of the weak view's pixel, and
    the weak view's lesion pixels are exactly the label's: a weak-view pseudo-label fits the strong view."""
    out = weak_then_strong(seed, jitter_prob=1.0, blur_prob=0.0, noise_prob=0.0, cutout_prob=0.0)(two_colour_case())
    weak, strong, label = out["image"], out["image_strong"], out["label"][0].bool()
    lesion_in_weak = torch.all(weak == torch.tensor(LESION).view(3, 1, 1), dim=0)
    assert torch.equal(lesion_in_weak, label)  # the geometry went to image and label alike
    assert 0 < int(label.sum()) < label.numel()
    for region in (label, ~label):
        colours = strong[:, region]
        spread = (colours - colours[:, :1]).abs().max()
        assert spread < 1e-3, spread  # one strong colour per weak colour: a per-pixel map, no displacement
    assert not torch.equal(strong[:, label][:, 0], strong[:, ~label][:, 0])
    assert not torch.equal(strong, weak)


def test_weak_view_is_left_as_it_was() -> None:
    case = two_colour_case()
    before = case["image"].clone()
    out = RandStrongViewd("image", jitter_prob=1.0, blur_prob=1.0, noise_prob=1.0, cutout_prob=1.0)(case)
    assert torch.equal(out["image"], before) and out["image"] is case["image"]
    assert out["image_strong"].shape == before.shape and out["image_strong"].dtype == torch.float32
    assert set(out) == {"image", "image_strong", "label"}


def test_reproducible_from_a_seed() -> None:
    case = {"image": torch.rand(3, 32, 32) * 255}
    settings = {"jitter_prob": 1.0, "blur_prob": 1.0, "noise_prob": 1.0, "cutout_prob": 1.0}
    first = RandStrongViewd("image", **settings).set_random_state(7)(case)["image_strong"]
    second = RandStrongViewd("image", **settings).set_random_state(7)(case)["image_strong"]
    other = RandStrongViewd("image", **settings).set_random_state(8)(case)["image_strong"]
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, other)


def test_values_stay_in_range_and_numpy_in_numpy_out() -> None:
    view = RandStrongView(jitter_prob=1.0, brightness=0.9, contrast=0.9, noise_prob=1.0, noise_std=0.5)
    view.set_random_state(0)
    for _ in range(5):
        out = view(torch.rand(3, 16, 16) * 255)
        assert out.min() >= 0.0 and out.max() <= 255.0
    array = view(np.random.default_rng(0).random((3, 16, 16)).astype(np.float32) * 255)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32


def test_nothing_drawn_gives_the_image_back() -> None:
    image = torch.rand(3, 16, 16) * 255
    torch.testing.assert_close(RandStrongView(**OFF)(image), image)


def test_brightness_scales_and_hue_keeps_grey() -> None:
    view = RandStrongView(**{**OFF, "jitter_prob": 1.0}, contrast=0.0, saturation=0.0, hue=0.0).set_random_state(3)
    image = torch.full((3, 4, 4), 100.0)
    out = view(image)
    factor = dict(view.params["jitter"])["brightness"]
    torch.testing.assert_close(out, image * factor)
    grey = RandStrongView(**{**OFF, "jitter_prob": 1.0}, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5)
    torch.testing.assert_close(grey.set_random_state(0)(image), image, atol=1e-3, rtol=0)  # no chroma to rotate


def test_noise_has_the_requested_spread() -> None:
    view = RandStrongView(**{**OFF, "noise_prob": 1.0}, noise_std=0.05).set_random_state(0)
    image = torch.full((3, 64, 64), 128.0)
    difference = view(image) - image
    assert abs(float(difference.mean())) < 0.5
    assert float(difference.std()) == pytest.approx(0.05 * 255, rel=0.05)


def test_cutout_fills_one_box_with_the_mean_colour() -> None:
    view = RandStrongView(**{**OFF, "cutout_prob": 1.0}, cutout_area=(0.1, 0.1)).set_random_state(0)
    image = torch.rand(3, 40, 40) * 255
    out = view(image)
    changed = (out != image).any(dim=0)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
    assert int(changed[box].sum()) == changed.sum() and changed.sum() == pytest.approx(160, rel=0.25)  # 10 %
    torch.testing.assert_close(out[:, box[0], box[1]][:, 0, 0], image.reshape(3, -1).mean(dim=1))


def test_blur_smooths() -> None:
    view = RandStrongView(**{**OFF, "blur_prob": 1.0}, blur_sigma=(1.5, 1.5))
    image = torch.zeros(1, 21, 21)
    image[0, 10, 10] = 255.0
    out = view(image)
    assert out[0, 10, 10] < 255.0 and out[0, 10, 11] > 0.0  # a single-channel image works too
    assert float(out.sum()) == pytest.approx(255.0, rel=0.01)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="jitter_prob"):
        RandStrongView(jitter_prob=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        RandStrongView(blur_sigma=(2.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        RandStrongView(hue=0.7)
    with pytest.raises(ValueError, match="differ"):
        RandStrongViewd("image", strong_keys="image")
    with pytest.raises(ValueError, match="one to one"):
        RandStrongViewd(["image", "other"], strong_keys="image_strong")
