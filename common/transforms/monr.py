"""Multi-Order Normalized Responses (MONR): the reconstruction targets of DMGSA's unsupervised branch.

From an image ``X`` (per sample of a batch: its own minimum and maximum over all its voxels and channels):

- ``Xa = 255 (X - min X) / (max X - min X)``;
- for each order ``k`` (0.5 and 1.5): ``Xk = Xa^k`` and the multi-order normalized image (MONI)
  ``Xm_k = ((Xk - min Xk) / (max Xk - min Xk))^(1/k)``;
- the multi-order normalized gradients (MONG): the 3D Sobel responses of each ``Xm_k`` along each spatial axis
  (derivative ``[-1, 0, 1]`` along the axis, smoothing ``[1, 2, 1]`` along the others: the kernel of
  ``scipy.ndimage.sobel``, with its default border, the edge value repeated), computed as separable passes.

Output channels: ``[Xm_0.5, Xm_1.5, d0 Xm_0.5, d1 Xm_0.5, d2 Xm_0.5, d0 Xm_1.5, d1 Xm_1.5, d2 Xm_1.5]`` (2 MONI + 6
MONG for 3D; 2 + 4 in 2D), computed with torch on the input's device (``benchmarks/monr_targets.py`` compares with
scipy per volume).

Note on the formula: ``Xa`` has minimum 0 and maximum 255, so ``Xk`` runs from 0 to ``255^k`` and
``Xm_k = (Xa^k / 255^k)^(1/k) = Xa / 255`` for every ``k``: as written in the paper (and in METHODS.md), the two
orders give the same image. ``inverse_order=False`` leaves out the ``1/k`` root, so that the two MONI are the
gamma-corrected images ``(Xa / 255)^k``, which do differ (0.5 stretches the dark range where the lumen lies, 1.5 the
bright range of walls and vessels); it is a documented switch, not the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = ["MultiOrderResponses", "multi_order_images", "sobel_gradients"]

_EPS = 1e-8


def _per_sample_min_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.reshape(x.shape[0], -1)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return flat.amin(dim=1).reshape(shape), flat.amax(dim=1).reshape(shape)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Per sample ``(x - min) / (max - min)``; a constant sample gives zeros."""
    low, high = _per_sample_min_max(x)
    return (x - low) / torch.clamp(high - low, min=_EPS)


def multi_order_images(
    x: torch.Tensor, orders: Sequence[float] = (0.5, 1.5), inverse_order: bool = True
) -> torch.Tensor:
    """The MONI of a batch.

    Args:
        x: ``(B, 1, *spatial)`` images (any range).
        orders: the exponents ``k``.
        inverse_order: apply the ``1/k`` root after the second normalisation (the paper's formula).

    Returns:
        ``(B, len(orders), *spatial)`` in [0, 1], float32 (float64 inputs stay float64).
    """
    if x.ndim < 3 or x.shape[1] != 1:
        raise ValueError(f"expected (B, 1, *spatial) images, got shape {tuple(x.shape)}")
    x = x if x.is_floating_point() else x.float()
    scaled = 255.0 * _normalise(x)
    images = []
    for k in orders:
        if k <= 0:
            raise ValueError(f"the orders must be positive, got {k}")
        powered = _normalise(scaled**k)
        images.append(powered ** (1.0 / k) if inverse_order else powered)
    return torch.cat(images, dim=1)


def _smooth(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``[1, 2, 1]`` along ``axis`` (valid part: the axis shrinks by 2)."""
    n = x.shape[axis]
    out = x.narrow(axis, 0, n - 2) + x.narrow(axis, 2, n - 2)
    return out.add_(x.narrow(axis, 1, n - 2), alpha=2.0)


def _derive(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``[-1, 0, 1]`` along ``axis`` (valid part, correlation as in scipy)."""
    n = x.shape[axis]
    return x.narrow(axis, 2, n - 2) - x.narrow(axis, 0, n - 2)


def sobel_gradients(x: torch.Tensor) -> torch.Tensor:
    """Sobel responses of every channel along every spatial axis (edge values repeated at the border).

    The response along axis ``a`` is the correlation with the outer product of ``[-1, 0, 1]`` along ``a`` and
    ``[1, 2, 1]`` along the other axes (``scipy.ndimage.sobel``'s kernel). The kernel is separable, so it is applied
    as one-dimensional passes of shifted slices, sharing the smoothing passes between axes: the same values as a
    dense 3x3x3 ``conv3d``, in about a third of its time on a CPU, and on whatever device ``x`` lives.

    Args:
        x: ``(B, C, *spatial)`` with 2 or 3 spatial dimensions.

    Returns:
        ``(B, C * spatial_dims, *spatial)``: for channel ``c``, the responses along axes ``0, 1, ...`` in turn.
    """
    spatial_dims = x.ndim - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"expected (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}")
    batch, channels = x.shape[:2]
    flat = x.reshape(batch * channels, 1, *x.shape[2:])
    padded = F.pad(flat, (1, 1) * spatial_dims, mode="replicate")[:, 0]  # (N, *spatial + 2)
    if spatial_dims == 2:
        gradients = [_derive(_smooth(padded, 2), 1), _derive(_smooth(padded, 1), 2)]
    else:
        smooth_last = _smooth(padded, 3)
        gradients = [
            _derive(_smooth(smooth_last, 2), 1),
            _derive(_smooth(smooth_last, 1), 2),
            _derive(_smooth(_smooth(padded, 1), 2), 3),
        ]
    return torch.stack(gradients, dim=1).reshape(batch, channels * spatial_dims, *x.shape[2:])


class MultiOrderResponses(Transform):
    """MONR targets of a batch: ``(B, 1, *spatial)`` -> ``(B, n_orders * (1 + spatial_dims), *spatial)``.

    See the module docstring for the formulas. Computed with torch on the input's device, without gradient.

    Args:
        orders: the exponents ``k`` (DMGSA: 0.5 and 1.5).
        inverse_order: apply the ``1/k`` root of the paper's formula (see the module note).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, orders: Sequence[float] = (0.5, 1.5), inverse_order: bool = True) -> None:
        if not orders or any(k <= 0 for k in orders):
            raise ValueError(f"orders must be positive exponents, got {orders}")
        self.orders = tuple(float(k) for k in orders)
        self.inverse_order = inverse_order

    def num_channels(self, spatial_dims: int = 3) -> int:
        """Number of output channels: MONI (one per order) then MONG (``spatial_dims`` per order)."""
        return len(self.orders) * (1 + spatial_dims)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Compute the targets.

        Args:
            img: ``(B, 1, *spatial)`` batch of single-channel images (2 or 3 spatial dimensions).

        Returns:
            MONI channels then MONG channels, of the input's type and device.
        """
        tensor = convert_to_tensor(img, track_meta=False)
        with torch.no_grad():
            moni = multi_order_images(tensor, self.orders, self.inverse_order)
            mong = sobel_gradients(moni)
            output = torch.cat([moni, mong], dim=1)
        result, *_ = convert_to_dst_type(output, dst=img, dtype=output.dtype)
        return result
