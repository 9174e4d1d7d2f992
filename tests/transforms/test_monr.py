"""MONR targets: hand-computed values, torch against a scipy reference per volume, two orders that really differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from common.transforms import MultiOrderResponses, multi_order_images, sobel_gradients


def reference(volume: np.ndarray, orders=(0.5, 1.5), formula: str = "power") -> np.ndarray:
    """The formulas written out with numpy and scipy for one volume, in float64."""
    x = volume.astype(np.float64)
    xa = 255.0 * (x - x.min()) / (x.max() - x.min())
    moni, mong = [], []
    for k in orders:
        xk = xa**k
        phi = 255.0 * (xk - xk.min()) / (xk.max() - xk.min())  # Phi_n: min-max to [0, 255]
        xm = (phi / 255.0) ** (1.0 / k) if formula == "as_written" else phi / 255.0
        moni.append(xm)
        mong.extend(ndimage.sobel(xm, axis=axis) for axis in range(volume.ndim))
    return np.stack(moni + mong)


def ct_like_volume(seed: int = 0) -> torch.Tensor:
    """A ``(1, 1, 24, 24, 24)`` chest-CT-like patch in HU: lung parenchyma, an airway (air lumen, soft-tissue wall),
    a contrast vessel and a bone edge, with noise: the full [-1000, 700] range a raw or windowed patch covers."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(24.0)] * 3, indexing="ij"))
    radius = ((grid[1] - 8) ** 2 + (grid[2] - 8) ** 2).sqrt()  # an airway along the first axis
    volume = torch.full((24, 24, 24), -850.0)
    volume[radius < 4] = 40.0  # wall
    volume[radius < 2.5] = -1000.0  # lumen
    volume[((grid[1] - 16) ** 2 + (grid[2] - 17) ** 2).sqrt() < 3] = 250.0  # vessel
    volume[:, :, 21:] = 700.0  # bone
    volume += 20.0 * torch.randn(volume.shape, generator=generator)
    return volume[None, None]


def test_hand_computed_values_on_a_tiny_volume() -> None:
    """HU ``[-1000, -600, 600]`` along depth: ``Xa / 255 = [0, 1/4, 1]``, so ``MONI_0.5 = [0, 1/2, 1]`` and
    ``MONI_1.5 = [0, 1/8, 1]``; with the edge repeated, the depth derivative of ``[0, 1/2, 1]`` is
    ``[1/2, 1, 1/2]``, times 4 for each of the two singleton axes' ``[1, 2, 1]`` smoothing: ``[8, 16, 8]``."""
    x = torch.tensor([-1000.0, -600.0, 600.0]).reshape(1, 1, 3, 1, 1)
    result = MultiOrderResponses()(x)[0, :, :, 0, 0]  # the default formula
    assert result.shape == (8, 3)
    expected = torch.tensor(
        [
            [0.0, 0.5, 1.0],  # MONI_0.5
            [0.0, 0.125, 1.0],  # MONI_1.5
            [8.0, 16.0, 8.0],  # depth, height, width Sobel of MONI_0.5
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [2.0, 16.0, 14.0],  # the same of MONI_1.5: 16 [1/8, 1, 7/8]
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=1e-6)
    # the same profile along the width: the responses move to the width channels (axis order d, h, w)
    along_width = MultiOrderResponses()(x.reshape(1, 1, 1, 1, 3))[0, :, 0, 0, :]
    torch.testing.assert_close(along_width[[0, 1, 4, 7]], expected[[0, 1, 2, 5]], atol=1e-6, rtol=1e-6)
    assert along_width[[2, 3, 5, 6]].abs().max() == 0
    # the formula as written: both orders give Xa / 255 = [0, 1/4, 1], Sobel 16 [1/4, 1, 3/4]
    literal = MultiOrderResponses(formula="as_written")(x)[0, :, :, 0, 0]
    for row, values in ((0, [0.0, 0.25, 1.0]), (1, [0.0, 0.25, 1.0]), (2, [4.0, 16.0, 12.0]), (5, [4.0, 16.0, 12.0])):
        torch.testing.assert_close(literal[row], torch.tensor(values), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("formula", ["power", "as_written"])
def test_matches_the_scipy_reference_per_sample(formula: str) -> None:
    rng = np.random.default_rng(0)
    batch = np.stack([rng.normal(-600, 300, (12, 10, 14)), rng.uniform(0, 1, (12, 10, 14))])[:, None]
    result = MultiOrderResponses(formula=formula)(torch.from_numpy(batch).float())
    assert result.shape == (2, 8, 12, 10, 14) and result.dtype == torch.float32
    for sample in range(2):
        expected = reference(batch[sample, 0], formula=formula)
        np.testing.assert_allclose(result[sample].numpy(), expected, rtol=1e-4, atol=2e-5)


def test_the_two_orders_differ_on_a_ct_like_volume() -> None:
    """The default's low and high orders are two different targets on a real intensity range (issue 12)."""
    x = ct_like_volume()
    targets = MultiOrderResponses()(x)
    normalised = (x - x.min()) / (x.max() - x.min())
    torch.testing.assert_close(targets[:, 0:1], normalised**0.5, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(targets[:, 1:2], normalised**1.5, atol=1e-5, rtol=1e-5)
    # u^0.5 - u^1.5 peaks at 0.385 (u = 1/3); the lung (-850 HU, u ~ 0.11) gives 0.33 - 0.04, the wall (40 HU,
    # u ~ 0.6) 0.77 - 0.46: measured max 0.335, mean 0.258
    moni_gap = (targets[:, 0] - targets[:, 1]).abs()
    assert moni_gap.max() > 0.3 and moni_gap.mean() > 0.2
    low, high = targets[:, 2:5], targets[:, 5:8]
    assert (low - high).norm() > 0.2 * high.norm()  # the gradient triplets are not duplicates either (0.27)
    # the formula as written on the same volume: one image twice, three duplicated pairs of gradients
    literal = MultiOrderResponses(formula="as_written")(x)
    torch.testing.assert_close(literal[:, 0], literal[:, 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(literal[:, 2:5], literal[:, 5:8], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(literal[:, :1], normalised, atol=1e-5, rtol=1e-5)


def test_min_and_max_are_per_sample() -> None:
    x = torch.rand(2, 1, 6, 6, 6)
    scaled = x.clone()
    scaled[1] = scaled[1] * 1000 - 500  # an affine change of the second sample only
    torch.testing.assert_close(multi_order_images(scaled), multi_order_images(x), atol=1e-4, rtol=1e-4)
    assert multi_order_images(torch.full((1, 1, 4, 4, 4), 7.0)).abs().max() == 0  # a constant sample: zeros


def test_sobel_matches_scipy_including_the_borders_in_2d_and_3d() -> None:
    rng = np.random.default_rng(1)
    for shape in ((9, 7), (9, 7, 5)):
        volume = rng.normal(size=shape)
        result = sobel_gradients(torch.from_numpy(volume)[None, None])[0]
        for axis in range(len(shape)):
            np.testing.assert_allclose(result[axis].numpy(), ndimage.sobel(volume, axis=axis), atol=1e-10)
    # an impulse gives the kernel itself: [-1, 0, 1] along the axis, [1, 2, 1] across (correlation, as scipy)
    impulse = torch.zeros(1, 1, 5, 5, 5, dtype=torch.float64)
    impulse[0, 0, 2, 2, 2] = 1.0
    response = sobel_gradients(impulse)[0]
    assert response[0, 1:4, 2, 2].tolist() == [4.0, 0.0, -4.0]
    assert response[2, 1, 1, 1:4].tolist() == [1.0, 0.0, -1.0] and response[0].sum() == 0


def test_channels_and_types() -> None:
    monr = MultiOrderResponses()
    assert monr.num_channels(3) == 8 and monr.num_channels(2) == 6
    out = monr(np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32))
    assert isinstance(out, np.ndarray) and out.shape == (1, 6, 8, 8)
    with pytest.raises(ValueError, match="positive"):
        MultiOrderResponses(orders=(0.5, 0.0))
    with pytest.raises(ValueError, match="formula"):
        MultiOrderResponses(formula="inverse")
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        monr(torch.zeros(1, 2, 4, 4, 4))
