"""MONR targets: torch on the batch against a straightforward scipy reference per volume, and the formula's traits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from common.transforms import MultiOrderResponses, multi_order_images, sobel_gradients


def reference(volume: np.ndarray, orders=(0.5, 1.5), inverse_order: bool = True) -> np.ndarray:
    """The formulas written out with numpy and scipy for one volume, in float64."""
    x = volume.astype(np.float64)
    xa = 255.0 * (x - x.min()) / (x.max() - x.min())
    moni, mong = [], []
    for k in orders:
        xk = xa**k
        xm = (xk - xk.min()) / (xk.max() - xk.min())
        xm = xm ** (1.0 / k) if inverse_order else xm
        moni.append(xm)
        mong.extend(ndimage.sobel(xm, axis=axis) for axis in range(volume.ndim))
    return np.stack(moni + mong)


@pytest.mark.parametrize("inverse_order", [True, False])
def test_matches_the_scipy_reference_per_sample(inverse_order: bool) -> None:
    rng = np.random.default_rng(0)
    batch = np.stack([rng.normal(-600, 300, (12, 10, 14)), rng.uniform(0, 1, (12, 10, 14))])[:, None]
    result = MultiOrderResponses(inverse_order=inverse_order)(torch.from_numpy(batch).float())
    assert result.shape == (2, 8, 12, 10, 14) and result.dtype == torch.float32
    for sample in range(2):
        expected = reference(batch[sample, 0], inverse_order=inverse_order)
        np.testing.assert_allclose(result[sample].numpy(), expected, rtol=1e-4, atol=2e-5)


def test_the_formula_as_written_gives_the_same_image_for_every_order() -> None:
    """``Xa`` spans [0, 255], so ``((Xa^k - 0) / 255^k)^(1/k) = Xa / 255`` whatever ``k``."""
    x = torch.rand(1, 1, 8, 8, 8) * 1600 - 1200
    moni = multi_order_images(x, (0.5, 1.5), inverse_order=True)
    normalised = (x - x.min()) / (x.max() - x.min())
    torch.testing.assert_close(moni[:, 0:1], normalised, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moni[:, 1:2], normalised, atol=1e-5, rtol=1e-5)
    gamma = multi_order_images(x, (0.5, 1.5), inverse_order=False)  # the switch: gamma-corrected images
    torch.testing.assert_close(gamma[:, 0:1], normalised**0.5, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gamma[:, 1:2], normalised**1.5, atol=1e-5, rtol=1e-5)


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
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        monr(torch.zeros(1, 2, 4, 4, 4))
