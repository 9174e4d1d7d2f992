"""Cube masking: the hidden fraction is the ratio, hidden voxels are whole grid cubes, draws are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms.intensity.array import RandCoarseTransform

from common.transforms import RandCubeMask, RandCubeMaskd


def test_hides_the_ratio_in_whole_grid_cubes() -> None:
    masker = RandCubeMask(cube_size=4, ratio=0.25, fill_value=-1.0).set_random_state(0)
    image = torch.rand(1, 16, 16, 16) + 1.0  # values in [1, 2): never equal to the fill value
    masked = masker(image)
    mask = masker.mask()
    assert isinstance(masker, RandCoarseTransform)
    assert mask.shape == (1, 16, 16, 16) and mask.dtype == torch.float32
    assert mask.mean().item() == pytest.approx(0.25)  # 16 of 64 cells
    cells = mask[0].reshape(4, 4, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(64, 64)
    assert set(cells.mean(dim=1).tolist()) == {0.0, 1.0}  # each 4x4x4 cube is hidden entirely or not at all
    assert torch.equal(masked == -1.0, mask.bool())
    assert torch.equal(masked[mask == 0], image[mask == 0])
    assert len(masker.hole_coords) == 16


def test_rounding_and_sizes_that_are_not_multiples() -> None:
    masker = RandCubeMask(cube_size=(4, 4, 5), ratio=0.3).set_random_state(1)
    masker(torch.ones(2, 10, 8, 12))  # grid 3 x 2 x 3 = 18 cells, round(5.4) = 5 hidden
    assert masker._cells.sum() == 5 and masker.mask().shape == (1, 10, 8, 12)


def test_reproducible_from_a_seed_and_different_from_draw_to_draw() -> None:
    image = torch.rand(1, 12, 12, 12)
    first = RandCubeMask(cube_size=3, ratio=0.5).set_random_state(7)
    second = RandCubeMask(cube_size=3, ratio=0.5).set_random_state(7)
    a, b = first(image), second(image)
    assert torch.equal(a, b)
    assert not torch.equal(first(image), a)  # the next draw hides other cubes


def test_extreme_ratios_and_the_ratio_setter() -> None:
    image = torch.rand(1, 8, 8, 8)
    masker = RandCubeMask(cube_size=4, ratio=0.0, fill_value=5.0)
    assert torch.equal(masker(image), image) and masker.mask().sum() == 0
    masker.ratio = 1.0
    assert torch.all(masker(image) == 5.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        masker.ratio = 1.5
    with pytest.raises(ValueError, match="positive"):
        RandCubeMask(cube_size=0)


def test_numpy_and_torch_paths_agree() -> None:
    image = np.random.default_rng(0).random((1, 8, 8, 8)).astype(np.float32)
    masker = RandCubeMask(cube_size=4, ratio=0.5, fill_value=0.0).set_random_state(3)
    out_torch = masker(torch.from_numpy(image))
    masker.set_random_state(3)
    masker.randomize(image.shape[1:])
    out_numpy = masker._transform_holes(image.copy())  # the RandCoarseTransform family's numpy path
    np.testing.assert_array_equal(out_torch.numpy(), out_numpy)
    assert isinstance(masker(image), np.ndarray)


def test_dictionary_version_masks_every_key_with_the_same_cubes() -> None:
    data = {"image": torch.rand(1, 8, 8, 8) + 1, "other": torch.rand(2, 8, 8, 8) + 1, "label": torch.ones(1, 8, 8, 8)}
    transform = RandCubeMaskd(keys=["image", "other"], cube_size=4, ratio=0.5).set_random_state(0)
    out = transform(data)
    hidden = out["mask"].bool()[0]
    assert hidden.float().mean() == 0.5
    assert torch.all(out["image"][0][hidden] == 0) and torch.all(out["other"][:, hidden] == 0)
    assert torch.equal(out["label"], data["label"])
    transform.ratio = 0.0
    assert transform.masker.ratio == 0.0 and transform(data)["mask"].sum() == 0


def test_reusing_a_draw_needs_the_same_size() -> None:
    masker = RandCubeMask(cube_size=4, ratio=0.5)
    masker(torch.ones(1, 8, 8, 8))
    with pytest.raises(ValueError, match="differs"):
        masker(torch.ones(1, 4, 8, 8), randomize=False)
    with pytest.raises(RuntimeError, match="before the first draw"):
        RandCubeMask().mask()
