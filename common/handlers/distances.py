"""Surface-distance metrics in millimetres: MONAI's HD95 / ASD handlers, given each image's voxel spacing.

MONAI's ``HausdorffDistance`` and ``SurfaceDistance`` handlers call their metric without a spacing, so distances come
out in voxels; papers report millimetres (a frequent cause of HD95 values far from the published ones). These
handlers compute the same metrics per image with the spacing of that image: a fixed ``spacing`` when given (e.g. the
LA benchmark's 0.625 mm, whose HDF5 files carry none), otherwise the voxel size of the label's (or prediction's)
affine, which MONAI's image loaders fill in from the file header.

A missed structure must score as a failure. MONAI gives an empty prediction against a non-empty truth (or the
reverse) an HD95 of NaN and an ASD of inf; its mean then skips the NaN (and a test set of such cases averages to 0.0,
the best score) or becomes inf, which tables drop. Here, per image and class:

- prediction empty, truth not (a miss), or truth empty, prediction not (a false alarm): the distance is the image's
  diagonal in millimetres, ``sqrt(sum((size_i * spacing_i) ** 2))``, the largest distance two voxels of the image can
  have, so a miss is never better than any real segmentation of that image (``MISSED_DISTANCE``);
- both empty: NaN (nothing to measure), left out of the mean; a mean over no finite value is NaN, not MONAI's 0.0.

The handlers count the images with a missed class and write the count beside the metric as
``engine.state.metrics["<name>_missed"]``, so that reports (``MetricsSaver``) and the benchmark tables state it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler
from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric
from monai.utils import MetricReduction, ensure_tuple

__all__ = [
    "MISSED_DISTANCE",
    "MISSED_SUFFIX",
    "HausdorffDistanceMM",
    "MissAwareHausdorffDistanceMetric",
    "MissAwareSurfaceDistanceMetric",
    "SurfaceDistanceMM",
    "image_diagonal",
    "missed_case_distances",
    "voxel_spacing",
]

logger = logging.getLogger(__name__)

MISSED_DISTANCE = "image diagonal in mm"
"""The documented worst value of HD95/ASD for an empty prediction with a non-empty truth, or the reverse."""

MISSED_SUFFIX = "_missed"
"""``engine.state.metrics[name + MISSED_SUFFIX]``: the number of images with a missed class."""

_EMPTY_WARNING = r".* is all 0, this may result in nan/inf distance\."


def voxel_spacing(*tensors: Any) -> list[float] | None:
    """The voxel size (mm) along each spatial axis of the first MetaTensor among ``tensors``, from its affine.

    Args:
        tensors: channel-first images, e.g. ``(label, prediction)``.

    Returns:
        One spacing per spatial axis, or None when no tensor carries an affine.
    """
    for tensor in tensors:
        if isinstance(tensor, MetaTensor) and "affine" in tensor.meta:
            affine = np.asarray(tensor.affine, dtype=np.float64)
            spatial_ndim = tensor.ndim - 1
            return [float(value) for value in np.linalg.norm(affine[:spatial_ndim, :spatial_ndim], axis=0)]
    return None


def image_diagonal(spatial_shape: Sequence[int], spacing: float | Sequence[float] | None = None) -> float:
    """The diagonal of an image in millimetres: ``sqrt(sum((size_i * spacing_i) ** 2))``.

    Args:
        spatial_shape: the image's size along each spatial axis (voxels).
        spacing: voxel size in mm, one number or one per axis; None means 1.

    Returns:
        The diagonal length in mm (in voxels when ``spacing`` is None).
    """
    sizes = [float(size) for size in spatial_shape]
    steps = [1.0] * len(sizes) if spacing is None else [float(value) for value in ensure_tuple(spacing)]
    if len(steps) == 1:
        steps = steps * len(sizes)
    if len(steps) != len(sizes):
        raise ValueError(f"spacing {list(steps)} does not match the {len(sizes)} spatial axes of {list(sizes)}")
    return math.sqrt(sum((size * step) ** 2 for size, step in zip(sizes, steps)))


def missed_case_distances(
    distances: torch.Tensor,
    y_pred: torch.Tensor,
    y: torch.Tensor,
    include_background: bool = False,
    spacing: float | Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace MONAI's distances of empty masks: a miss gets the image diagonal, both empty gets NaN.

    Args:
        distances: ``(B, C')`` per-image, per-class distances from MONAI (``C' = C`` or ``C - 1`` without background).
        y_pred: ``(B, C, *spatial)`` binarised one-hot prediction.
        y: ``(B, C, *spatial)`` binarised one-hot truth.
        include_background: whether ``distances`` include channel 0.
        spacing: voxel size in mm (one number, or one per spatial axis), shared by the batch; None means 1.

    Returns:
        ``(distances, missed)``: the corrected ``(B, C')`` float distances and a ``(B, C')`` bool tensor, True where
        exactly one of prediction and truth is empty.
    """
    first = 0 if include_background else 1
    pred_any = y_pred[:, first:].reshape(*y_pred.shape[:1], y_pred.shape[1] - first, -1).bool().any(-1)
    truth_any = y[:, first:].reshape(*y.shape[:1], y.shape[1] - first, -1).bool().any(-1)
    missed = (pred_any ^ truth_any).to(distances.device)
    both_empty = (~pred_any & ~truth_any).to(distances.device)
    diagonal = image_diagonal(y.shape[2:], spacing)
    distances = distances.float().clone()
    distances[missed] = diagonal
    distances[both_empty] = float("nan")
    return distances, missed


class _MissAwareMixin:
    """Distances of empty masks by :func:`missed_case_distances`; counts the images with a missed class."""

    include_background: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_missed = 0

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.num_missed = 0

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with warnings.catch_warnings():
            # the empty cases MONAI warns about are the ones replaced below
            warnings.filterwarnings("ignore", message=_EMPTY_WARNING)
            distances = super()._compute_tensor(y_pred, y, **kwargs)  # type: ignore[misc]
        distances, missed = missed_case_distances(distances, y_pred, y, self.include_background, kwargs.get("spacing"))
        self.num_missed += int(missed.any(dim=1).sum())
        return distances

    def aggregate(self, reduction: MetricReduction | str | None = None) -> Any:
        """MONAI's reduction over the finite values; NaN where there is none (MONAI's would be 0.0, the best)."""
        result = super().aggregate(reduction)  # type: ignore[misc]
        data = self.get_buffer()  # type: ignore[attr-defined]
        if isinstance(data, torch.Tensor) and isinstance(result, torch.Tensor) and data.ndim == 2 and result.ndim <= 1:
            finite = torch.isfinite(data)
            if result.ndim == 0:
                result = result if finite.any() else torch.full_like(result, float("nan"))
            elif result.numel() == data.shape[1]:
                result = torch.where(finite.any(dim=0), result, torch.full_like(result, float("nan")))
        return result


class MissAwareHausdorffDistanceMetric(_MissAwareMixin, HausdorffDistanceMetric):
    """MONAI's ``HausdorffDistanceMetric`` with the empty-mask rules of this module (see the module docstring)."""


class MissAwareSurfaceDistanceMetric(_MissAwareMixin, SurfaceDistanceMetric):
    """MONAI's ``SurfaceDistanceMetric`` with the empty-mask rules of this module (see the module docstring)."""


class _SpacingMetricHandler(IgniteMetricHandler):
    """An ``IgniteMetricHandler`` that passes every image's spacing to its surface-distance metric."""

    def __init__(
        self, metric_fn: Any, spacing: float | Sequence[float] | None, output_transform: Callable, save_details: bool
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self.spacing = None if spacing is None else [float(value) for value in ensure_tuple(spacing)]
        self._warned = False

    def _spacing_of(self, prediction: torch.Tensor, label: torch.Tensor) -> list[float] | float:
        spatial_ndim = prediction.ndim - 1
        if self.spacing is not None:
            return self.spacing * spatial_ndim if len(self.spacing) == 1 else self.spacing
        found = voxel_spacing(label, prediction)
        if found is None:
            if not self._warned:
                logger.warning(
                    "%s: no spacing given or found in the images; distances are in voxels", type(self).__name__
                )
                self._warned = True
            return 1.0
        return found

    def update(self, output: Sequence[Any]) -> None:
        """Accumulate the metric of each image with its own spacing.

        Args:
            output: ``(y_pred, y)``: lists of channel-first one-hot tensors, or batch-first tensors.

        Raises:
            ValueError: ``output`` is not a pair.
        """
        if len(output) != 2:
            raise ValueError(f"output must have length 2, got {len(output)}.")
        predictions, labels = output
        for prediction, label in zip(predictions, labels):
            spacing = self._spacing_of(prediction, label)
            self.metric_fn(prediction.detach().unsqueeze(0), label.detach().unsqueeze(0), spacing=spacing)

    def completed(self, engine: Any, name: str) -> None:
        """Write the metric, and the number of images with a missed class as ``<name>_missed``.

        Args:
            engine: the Ignite engine.
            name: the metric's name in ``engine.state.metrics``.
        """
        super().completed(engine, name)
        engine.state.metrics[name + MISSED_SUFFIX] = int(idist.all_reduce(int(self.metric_fn.num_missed)))


class HausdorffDistanceMM(_SpacingMetricHandler):
    """MONAI's ``HausdorffDistance`` handler (default: the 95th percentile, HD95) in millimetres.

    MONAI's percentile Hausdorff distance is ``max(P95(d(pred -> truth)), P95(d(truth -> pred)))`` over surface voxels
    (medpy's ``hd95``, used by the LA benchmark code, takes the 95th percentile of both directions pooled; the two
    agree closely and coincide for symmetric errors). An empty prediction with a non-empty truth (or the reverse)
    scores the image diagonal in mm, both empty NaN (left out of the mean); ``<name>_missed`` counts the misses.

    Args:
        include_background: whether to score channel 0.
        percentile: the percentile of surface distances (95 for HD95; None for the maximum).
        directed: the directed distance from the prediction to the truth only.
        spacing: voxel size in mm (one number or one per axis); None reads it from each image's affine.
        reduction: MONAI's reduction of the per-image values.
        output_transform: extracts ``(y_pred, y)`` from the engine output.
        save_details: keep per-image values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        include_background: bool = False,
        percentile: float | None = 95,
        directed: bool = False,
        spacing: float | Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = MissAwareHausdorffDistanceMetric(
            include_background=include_background, percentile=percentile, directed=directed, reduction=reduction
        )
        super().__init__(metric_fn, spacing, output_transform, save_details)


class SurfaceDistanceMM(_SpacingMetricHandler):
    """MONAI's ``SurfaceDistance`` handler (average surface distance, ASD) in millimetres.

    With ``symmetric=False`` (default) it is the mean distance from the prediction's surface to the truth's, as medpy's
    ``asd(pred, truth)`` in the LA benchmark code; ``symmetric=True`` averages both directions (ASSD). Empty masks
    score as in :class:`HausdorffDistanceMM` (image diagonal for a miss, NaN for both empty).

    Args:
        include_background: whether to score channel 0.
        symmetric: average both directions.
        spacing: voxel size in mm (one number or one per axis); None reads it from each image's affine.
        reduction: MONAI's reduction of the per-image values.
        output_transform: extracts ``(y_pred, y)`` from the engine output.
        save_details: keep per-image values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        include_background: bool = False,
        symmetric: bool = False,
        spacing: float | Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = MissAwareSurfaceDistanceMetric(
            include_background=include_background, symmetric=symmetric, reduction=reduction
        )
        super().__init__(metric_fn, spacing, output_transform, save_details)
