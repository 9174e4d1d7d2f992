"""The class-mean IoU of a whole data set, as semantic-segmentation papers (TorchSemiSeg, CPS, DFCPS) report "mIoU".

MONAI's ``MeanIoU`` averages per image; TorchSemiSeg's ``compute_score`` sums one confusion matrix over every pixel
of the evaluation set, takes each class's IoU ``TP / (TP + FP + FN)`` from it and averages over the classes,
background included. :class:`DatasetMeanIoUMetric` computes that figure from MONAI's confusion matrices (pooled over
images, per class, then the mean over the classes that occur), and :class:`DatasetMeanIoU` is its Ignite handler.
Under DDP, MONAI's cumulative buffers gather every rank's images before the figure is computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import ConfusionMatrixMetric

__all__ = ["DatasetMeanIoU", "DatasetMeanIoUMetric"]


class DatasetMeanIoUMetric(ConfusionMatrixMetric):
    """Class-mean IoU of the confusion matrices of all images seen, pooled per class.

    Args:
        include_background: count the first channel (background) as a class (True: the papers' mIoU).

    Call it like MONAI's metrics with one-hot ``(B, C, *spatial)`` predictions and labels; :meth:`aggregate` returns
    ``mean_c TP_c / (TP_c + FP_c + FN_c)`` over the classes with a non-zero denominator (a 0-d tensor).
    """

    def __init__(self, include_background: bool = True) -> None:
        super().__init__(
            include_background=include_background,
            metric_name="threat score",
            compute_sample=False,
            reduction="sum_batch",
        )

    def per_class(self) -> torch.Tensor:
        """IoU of each class over every image seen, ``(C,)`` (NaN for a class absent from predictions and labels)."""
        return super().aggregate(compute_sample=False, reduction="sum_batch")[0]  # type: ignore[return-value]

    def aggregate(self, compute_sample: bool = False, reduction: str | None = None) -> torch.Tensor:  # type: ignore[override]
        """The class-mean IoU (the arguments of MONAI's signature are ignored: the pooling is fixed)."""
        return torch.nanmean(self.per_class())


class DatasetMeanIoU(IgniteMetricHandler):
    """Ignite handler of :class:`DatasetMeanIoUMetric`: the data set's class-mean IoU (TorchSemiSeg's mIoU).

    Args:
        include_background: count the background as a class (the papers' mIoU).
        output_transform: maps the engine's output to ``(y_pred, y)``, one-hot, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
    """

    def __init__(self, include_background: bool = True, output_transform: Callable = lambda x: x) -> None:
        super().__init__(
            metric_fn=DatasetMeanIoUMetric(include_background=include_background),
            output_transform=output_transform,
            save_details=False,
        )
