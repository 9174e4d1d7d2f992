"""Tests of common.data.phantoms.organ3d: determinism, varied shapes, the appendage, MR-like intensities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from common.data import OrganPhantom3D

SMALL = {"size_range": ((40, 48), (40, 48), (32, 40))}


def test_same_case_for_same_seed_and_index_whatever_the_order() -> None:
    phantom = OrganPhantom3D(num_cases=4, seed=3, **SMALL)
    later = [phantom.generate(index) for index in (3, 1)]
    again = OrganPhantom3D(num_cases=4, seed=3, **SMALL)
    for index, (image, mask) in zip((3, 1), later):
        other_image, other_mask = again.generate(index)
        np.testing.assert_array_equal(image, other_image)
        np.testing.assert_array_equal(mask, other_mask)
    assert not np.array_equal(phantom.generate(0)[1], OrganPhantom3D(num_cases=4, seed=4, **SMALL).generate(0)[1])


def test_shapes_types_and_varied_cases() -> None:
    phantom = OrganPhantom3D(num_cases=6, seed=0)
    shapes, fractions = set(), []
    for index in range(6):
        image, mask = phantom.generate(index)
        assert image.dtype == np.float32 and mask.dtype == np.bool_ and image.shape == mask.shape
        assert all(low <= size <= high for size, (low, high) in zip(image.shape, phantom.size_range))
        shapes.add(image.shape)
        fractions.append(mask.mean())
        # z-score normalised like the public mri_norm2.h5 volumes
        assert abs(float(image.mean())) < 1e-3 and float(image.std()) == pytest.approx(1.0, abs=1e-3)
        # one organ: a single 6-connected component that does not touch the x/y borders of the volume
        _, components = ndimage.label(mask)
        assert components == 1
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    assert len(shapes) == 6 and len({round(f, 4) for f in fractions}) == 6
    assert 0.03 < min(fractions) and max(fractions) < 0.25  # the atrium's share of the benchmark's cropped volumes


def test_the_appendage_protrudes_from_the_body() -> None:
    for index in range(4):
        _, with_appendage = OrganPhantom3D(num_cases=4, seed=1, **SMALL).generate(index)
        _, body = OrganPhantom3D(num_cases=4, seed=1, appendage=False, **SMALL).generate(index)
        assert np.all(with_appendage[body])  # the smooth union only adds
        added = with_appendage & ~body
        assert added.sum() > 0.03 * body.sum()
        # the protrusion reaches beyond the body: some added voxels are several voxels away from it
        distance_to_body = ndimage.distance_transform_edt(~body)
        assert distance_to_body[added].max() >= 3


def test_organ_is_brighter_inside_than_around_with_a_darker_wall() -> None:
    image, mask = OrganPhantom3D(num_cases=1, seed=2, noise_range=(0.0, 0.0), bias_range=(0.0, 0.0)).generate(0)
    inside = ndimage.binary_erosion(mask, iterations=3)
    shell = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=3)
    wall = ndimage.binary_dilation(mask, iterations=2) & ~mask
    assert image[inside].mean() > image[shell].mean() + 0.5
    assert image[wall].mean() < image[shell].mean()


def test_noise_and_bias_change_the_image_not_the_mask() -> None:
    clean_image, clean_mask = OrganPhantom3D(num_cases=1, seed=5, noise_range=(0.0, 0.0), **SMALL).generate(0)
    noisy_image, noisy_mask = OrganPhantom3D(num_cases=1, seed=5, noise_range=(0.2, 0.2), **SMALL).generate(0)
    np.testing.assert_array_equal(clean_mask, noisy_mask)
    assert np.abs(noisy_image - clean_image).mean() > 0.05


def test_params_are_complete_and_json() -> None:
    phantom = OrganPhantom3D(num_cases=3, seed=7, **SMALL)
    params = json.loads(json.dumps(phantom.params()))
    assert params["generator"] == "OrganPhantom3D" and params["num_cases"] == 3 and params["seed"] == 7
    assert params["size_range"] == [[40, 48], [40, 48], [32, 40]] and params["appendage"] is True
    assert len(phantom) == 3


def test_invalid_arguments_and_index() -> None:
    with pytest.raises(ValueError, match="num_cases"):
        OrganPhantom3D(num_cases=0)
    with pytest.raises(ValueError, match="seed"):
        OrganPhantom3D(seed=-1)
    with pytest.raises(ValueError, match="size_range"):
        OrganPhantom3D(size_range=((8, 16), (20, 30), (20, 30)))
    with pytest.raises(ValueError, match="noise_range"):
        OrganPhantom3D(noise_range=(0.2, 0.1))
    with pytest.raises(IndexError):
        OrganPhantom3D(num_cases=2).generate(2)
