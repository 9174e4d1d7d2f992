"""Tests of the 2D lesion phantom: determinism, shapes, exact masks, and statistics in a sane range."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy import ndimage

from common.data import LesionPhantom2D


def test_same_bytes_for_same_seed_and_index_whatever_the_order() -> None:
    phantom = LesionPhantom2D(num_cases=5, seed=3)
    forward = [phantom.generate(index) for index in range(5)]
    backward = [LesionPhantom2D(num_cases=5, seed=3).generate(index) for index in reversed(range(5))][::-1]
    for (image_a, mask_a), (image_b, mask_b) in zip(forward, backward):
        assert image_a.tobytes() == image_b.tobytes()
        assert mask_a.tobytes() == mask_b.tobytes()


def test_different_seed_or_index_gives_different_cases() -> None:
    image_0, _ = LesionPhantom2D(seed=0).generate(0)
    image_1, _ = LesionPhantom2D(seed=1).generate(0)
    image_2, _ = LesionPhantom2D(seed=0).generate(1)
    assert image_0.shape != image_1.shape or not np.array_equal(image_0, image_1)
    assert image_0.shape != image_2.shape or not np.array_equal(image_0, image_2)


def test_shapes_types_and_varied_sizes() -> None:
    phantom = LesionPhantom2D(num_cases=20, seed=0, size_range=((224, 320), (256, 352)))
    shapes = set()
    for index in range(phantom.num_cases):
        image, mask = phantom.generate(index)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == np.bool_ and mask.shape == image.shape[:2]
        assert 224 <= image.shape[0] <= 320 and 256 <= image.shape[1] <= 352
        shapes.add(image.shape)
    assert len(shapes) >= 15


def test_lesion_statistics_are_in_a_sane_range() -> None:
    phantom = LesionPhantom2D(num_cases=40, seed=2)
    coverages, contrasts, lesion_counts = [], [], []
    for index in range(phantom.num_cases):
        image, mask = phantom.generate(index)
        coverages.append(mask.mean())
        components, count = ndimage.label(mask, structure=np.ones((3, 3)))
        lesion_counts.append(count)
        luminance = image.astype(float).mean(axis=2)
        for label in range(1, count + 1):  # per lesion: some are brighter, some darker than their surroundings
            lesion = components == label
            ring = ndimage.binary_dilation(lesion, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
            contrasts.append(abs(luminance[lesion].mean() - luminance[ring].mean()))
    coverages = np.array(coverages)
    assert coverages.min() > 0.002  # every case has a lesion
    assert coverages.max() < 0.6
    assert 0.04 < coverages.mean() < 0.25  # Kvasir-SEG polyps cover about 16 % on average, ISIC lesions about 25 %
    assert coverages.max() / coverages.min() > 10  # small and large lesions
    assert max(lesion_counts) >= 2 and min(lesion_counts) == 1
    # visible on the whole, but some cases of low contrast
    assert np.median(contrasts) > 15.0
    assert min(contrasts) < 12.0


def test_boundaries_are_soft() -> None:
    """Intensity changes across the boundary over a few pixels, not in one step."""
    image, mask = LesionPhantom2D(num_cases=1, seed=0).generate(0)
    luminance = image.astype(float).mean(axis=2)
    inner_edge = mask & ~ndimage.binary_erosion(mask)
    outer_edge = ndimage.binary_dilation(mask) & ~mask
    deep_inside = ndimage.binary_erosion(mask, iterations=5)
    far_outside = ndimage.binary_dilation(mask, iterations=8) & ~ndimage.binary_dilation(mask, iterations=5)
    inside, outside = luminance[deep_inside].mean(), luminance[far_outside].mean()
    edge = (luminance[inner_edge].mean() + luminance[outer_edge].mean()) / 2
    assert min(inside, outside) < edge < max(inside, outside)


def test_params_are_complete_and_json() -> None:
    phantom = LesionPhantom2D(num_cases=7, seed=9, size_range=((64, 80), (72, 96)), max_lesions=2)
    params = json.loads(json.dumps(phantom.params()))
    assert params == {
        "generator": "LesionPhantom2D",
        "version": LesionPhantom2D.version,
        "num_cases": 7,
        "seed": 9,
        "size_range": [[64, 80], [72, 96]],
        "max_lesions": 2,
        "radius_range": [0.06, 0.36],
        "contrast_range": [0.1, 0.5],
        "noise_range": [0.005, 0.035],
    }
    rebuilt = LesionPhantom2D(**{key: value for key, value in params.items() if key not in ("generator", "version")})
    assert rebuilt.generate(3)[0].tobytes() == phantom.generate(3)[0].tobytes()


def test_invalid_arguments_and_index() -> None:
    with pytest.raises(IndexError):
        LesionPhantom2D(num_cases=3).generate(3)
    with pytest.raises(ValueError, match="num_cases"):
        LesionPhantom2D(num_cases=0)
    with pytest.raises(ValueError, match="seed"):
        LesionPhantom2D(seed=-1)
    with pytest.raises(ValueError, match="size_range"):
        LesionPhantom2D(size_range=((300, 200), (256, 352)))
    with pytest.raises(ValueError, match="radius_range"):
        LesionPhantom2D(radius_range=(0.3, 0.1))


def test_generation_is_fast() -> None:
    phantom = LesionPhantom2D(num_cases=10, seed=0)
    start = time.perf_counter()
    for index in range(phantom.num_cases):
        phantom.generate(index)
    assert (time.perf_counter() - start) / phantom.num_cases < 0.25  # about 0.02 s per case on one CPU thread
