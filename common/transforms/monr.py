"""Multi-Order Normalized Responses (MONR): the reconstruction targets of DMGSA's unsupervised branch.

From an image ``X`` (per sample of a batch: its own minimum and maximum over all its voxels and channels):

- ``Xa = 255 (X - min X) / (max X - min X)``;
- for each order ``k`` (0.5 and 1.5): ``Xk = Xa^k`` and the multi-order normalized image (MONI)
  ``MONI_k = Phi_n(Xk) / 255 = (Xa / 255)^k`` (``Phi_n``: min-max normalisation to [0, 255]), in [0, 1];
- the multi-order normalized gradients (MONG): the 3D Sobel responses of each ``MONI_k`` along each spatial axis
  (derivative ``[-1, 0, 1]`` along the axis, smoothing ``[1, 2, 1]`` along the others: the kernel of
  ``scipy.ndimage.sobel``, with its default border, the edge value repeated), computed as separable passes.

Output channels: ``[MONI_0.5, MONI_1.5, d0 MONI_0.5, d1 MONI_0.5, d2 MONI_0.5, d0 MONI_1.5, d1 MONI_1.5,
d2 MONI_1.5]`` (2 MONI + 6 MONG for 3D; 2 + 4 in 2D), computed with torch on the input's device
(``benchmarks/monr_targets.py`` compares with scipy per volume).

Formulas (``formula``):

- ``"power"`` (default; METHODS.md, DMGSA item 2): ``MONI_k = (Xa / 255)^k``: a low order (0.5 stretches the dark
  range where the airway lumen lies) and a high order (1.5 stretches the bright range of walls and vessels) that
  differ, and MONG is the gradient of MONI, as the written MONG formula ``Sobel(Phi_n(Xk))`` reads.
- ``"as_written"``: the MONI formula as the background document writes it (METHODS.md, DMGSA item 2),
  ``((Xk - min Xk) / (max Xk - min Xk))^(1/k)``. It is **degenerate**: ``Xa`` spans [0, 255], so ``Xk`` spans
  [0, 255^k] and the root gives back ``Xa / 255`` for every ``k``; the two MONI are one image and the six MONG three
  duplicated pairs (a single-order method). Kept as a switch to reproduce that reading.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = ["MONR_FORMULAS", "MultiOrderResponses", "multi_order_images", "sobel_gradients"]

_EPS = 1e-8

MONR_FORMULAS = ("power", "as_written")
"""The MONI formulas: ``"power"`` ``(Xa / 255)^k`` (default), ``"as_written"`` the degenerate written formula."""


def _per_sample_min_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.reshape(x.shape[0], -1)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return flat.amin(dim=1).reshape(shape), flat.amax(dim=1).reshape(shape)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Per sample ``(x - min) / (max - min)``; a constant sample gives zeros."""
    low, high = _per_sample_min_max(x)
    return (x - low) / torch.clamp(high - low, min=_EPS)


def multi_order_images(x: torch.Tensor, orders: Sequence[float] = (0.5, 1.5), formula: str = "power") -> torch.Tensor:
    """The MONI of a batch.

    Args:
        x: ``(B, 1, *spatial)`` images (any range, e.g. Hounsfield units or a windowed [0, 1] patch).
        orders: the exponents ``k``.
        formula: ``"power"``: ``(Xa / 255)^k`` (default); ``"as_written"``: ``(Phi(Xa^k))^(1/k)``, which is
            ``Xa / 255`` for every ``k`` (degenerate, see the module docstring).

    Returns:
        ``(B, len(orders), *spatial)`` in [0, 1], float32 (float64 inputs stay float64).

    Raises:
        ValueError: not a ``(B, 1, *spatial)`` batch, a non-positive order or an unknown formula.
    """
    if x.ndim < 3 or x.shape[1] != 1:
        raise ValueError(f"expected (B, 1, *spatial) images, got shape {tuple(x.shape)}")
    if formula not in MONR_FORMULAS:
        raise ValueError(f"formula must be one of {MONR_FORMULAS}, got {formula!r}")
    x = x if x.is_floating_point() else x.float()
    scaled = 255.0 * _normalise(x)
    images = []
    for k in orders:
        if k <= 0:
            raise ValueError(f"the orders must be positive, got {k}")
        if formula == "as_written":
            images.append(_normalise(scaled**k) ** (1.0 / k))
        else:
            # Phi_n(Xa^k) / 255 in closed form: Xa^k spans [0, 255^k] (0 where X is at its minimum)
            images.append((scaled / 255.0) ** k)
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
        formula: ``"power"`` (default): ``MONI_k = (Xa / 255)^k``; ``"as_written"``: the degenerate formula whose
            orders coincide (see the module docstring).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, orders: Sequence[float] = (0.5, 1.5), formula: str = "power") -> None:
        if not orders or any(k <= 0 for k in orders):
            raise ValueError(f"orders must be positive exponents, got {orders}")
        if formula not in MONR_FORMULAS:
            raise ValueError(f"formula must be one of {MONR_FORMULAS}, got {formula!r}")
        self.orders = tuple(float(k) for k in orders)
        self.formula = formula

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
            moni = multi_order_images(tensor, self.orders, self.formula)
            mong = sobel_gradients(moni)
            output = torch.cat([moni, mong], dim=1)
        result, *_ = convert_to_dst_type(output, dst=img, dtype=output.dtype)
        return result
