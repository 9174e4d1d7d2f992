"""Tests of common.transforms.sdf: a hand-computed case, a brute-force reference, the soft inverse, edge cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.losses import sdf_to_probability
from common.transforms import SignedDistanceMap, SignedDistanceMapd, signed_distance_map


def brute_force_sdf(mask: np.ndarray) -> np.ndarray:
    """Definition by exhaustive search: nearest opposite voxel, normalised per side, 0 on the inner boundary."""
    voxels = list(itertools.product(*(range(size) for size in mask.shape)))
    inside = [v for v in voxels if mask[v]]
    outside = [v for v in voxels if not mask[v]]
    distance = np.zeros(mask.shape)
    for voxel in voxels:
        others = outside if mask[voxel] else inside
        distance[voxel] = min(math.dist(voxel, other) for other in others)
    result = np.where(mask, -distance / distance[mask].max(), distance / distance[~mask].max())
    for voxel in inside:  # inner boundary: a face neighbour (inside the image) is background
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            neighbour = list(voxel)
            neighbour[axis] += step
            if 0 <= neighbour[axis] < mask.shape[axis] and not mask[tuple(neighbour)]:
                result[voxel] = 0.0
    return result


def test_hand_computed_square() -> None:
    """A 3x3 square in a 5x5 image, worked on paper: centre -2/2, ring 0, edges 1/sqrt(2), corners sqrt(2)/sqrt(2)."""
    mask = np.zeros((1, 5, 5), dtype=bool)
    mask[0, 1:4, 1:4] = True
    edge = 1 / math.sqrt(2)
    expected = np.array(
        [
            [1, edge, edge, edge, 1],
            [edge, 0, 0, 0, edge],
            [edge, 0, -1, 0, edge],
            [edge, 0, 0, 0, edge],
            [1, edge, edge, edge, 1],
        ]
    )
    np.testing.assert_allclose(signed_distance_map(mask)[0], expected, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_in_3d(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = np.indices((7, 6, 5)).astype(float)
    centre = rng.uniform(2, 4, 3)[:, None, None, None]
    mask = (((grid - centre) / rng.uniform(1.5, 2.8, 3)[:, None, None, None]) ** 2).sum(0) <= 1
    mask |= rng.random(mask.shape) < 0.05  # irregular bits, several components
    result = signed_distance_map(mask[None])[0]
    np.testing.assert_allclose(result, brute_force_sdf(mask), atol=1e-5)
    assert result.min() >= -1 and result.max() <= 1 and result.dtype == np.float32


def test_sign_convention_and_soft_inverse_gives_the_mask_back() -> None:
    mask = np.zeros((1, 12, 12, 10), dtype=bool)
    mask[0, 3:9, 2:10, 2:8] = True
    sdf = torch.as_tensor(signed_distance_map(mask))
    assert (sdf[torch.as_tensor(mask)] <= 0).all() and (sdf[~torch.as_tensor(mask)] > 0).all()
    probability = sdf_to_probability(sdf, 1500.0)
    # k = 1500: 0.5 on the boundary, within 1e-6 of 0 or 1 everywhere else (|sdf| >= 1/max distance)
    np.testing.assert_array_equal((probability >= 0.5).numpy(), mask)
    off_boundary = sdf != 0
    assert torch.all(torch.minimum(probability, 1 - probability)[off_boundary] < 1e-6)


def test_label_map_to_per_class_maps_and_types() -> None:
    label = torch.zeros(1, 6, 6, 6)
    label[0, 2:4, 2:4, 1:5] = 1
    meta = MetaTensor(label, affine=torch.diag(torch.tensor([0.5, 0.5, 0.5, 1.0])))
    maps = SignedDistanceMap(num_classes=2)(meta)
    assert isinstance(maps, MetaTensor) and maps.shape == (2, 6, 6, 6) and maps.dtype == torch.float32
    torch.testing.assert_close(maps.affine, meta.affine)
    foreground = torch.as_tensor(signed_distance_map(label.numpy() == 1)[0])
    torch.testing.assert_close(maps[1].as_tensor(), foreground)
    # the background class is the complement: off both boundaries, inside one means outside the other
    both = (maps[0] != 0) & (maps[1] != 0)
    assert both.any() and torch.all(torch.sign(maps[0][both]) == -torch.sign(maps[1][both]))


def test_empty_and_full_masks() -> None:
    empty = np.zeros((1, 4, 4, 4))
    full = np.ones((1, 4, 4, 4))
    np.testing.assert_array_equal(signed_distance_map(empty), np.zeros((1, 4, 4, 4)))
    np.testing.assert_array_equal(signed_distance_map(full), -np.ones((1, 4, 4, 4)))


def test_dictionary_version_keeps_the_mask_and_skips_missing_keys() -> None:
    data = {"label": np.pad(np.ones((1, 2, 2, 2)), ((0, 0), (1, 1), (1, 1), (1, 1)))}
    out = SignedDistanceMapd(keys="label", allow_missing_keys=True)(data)
    assert set(out) == {"label", "label_sdf"} and out["label_sdf"].shape == (1, 4, 4, 4)
    assert set(SignedDistanceMapd(keys="label", allow_missing_keys=True)({"image": np.zeros(1)})) == {"image"}


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="channel-first"):
        signed_distance_map(np.zeros(5))
    with pytest.raises(ValueError, match="num_classes needs a"):
        signed_distance_map(np.zeros((2, 4, 4)), num_classes=2)
    with pytest.raises(ValueError, match="at least 1"):
        SignedDistanceMap(num_classes=0)
