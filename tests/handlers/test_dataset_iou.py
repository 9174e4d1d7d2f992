"""Tests of common.handlers.dataset_iou: the class-mean IoU of one confusion matrix over all images (TorchSemiSeg's
mIoU), against a count by hand, and as an Ignite handler."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.networks.utils import one_hot

from common.handlers import DatasetMeanIoU, DatasetMeanIoUMetric


def onehot(labels: list[list[int]]) -> torch.Tensor:
    return one_hot(torch.tensor(labels).view(len(labels), 1, 1, -1), num_classes=2)


PRED = [[0, 0, 1, 1], [0, 0, 0, 0]]
TRUE = [[0, 1, 1, 1], [0, 0, 0, 1]]
# pooled over both images: background TP 4, FP 2, FN 0 -> 4/6; polyp TP 2, FP 0, FN 2 -> 2/4
EXPECTED = (4 / 6 + 2 / 4) / 2


def test_pools_pixels_over_images_then_averages_classes() -> None:
    metric = DatasetMeanIoUMetric()
    metric(onehot(PRED[:1]), onehot(TRUE[:1]))
    metric(onehot(PRED[1:]), onehot(TRUE[1:]))
    torch.testing.assert_close(metric.per_class(), torch.tensor([4 / 6, 2 / 4]))
    assert abs(metric.aggregate().item() - EXPECTED) < 1e-6
    # not the mean of per-image IoUs: image 1 polyp 2/3, image 2 polyp 0/1
    assert abs(metric.aggregate().item() - ((1 / 2 + 2 / 3) / 2 + (3 / 4 + 0.0) / 2) / 2) > 0.05


def test_foreground_only_and_absent_classes() -> None:
    metric = DatasetMeanIoUMetric(include_background=False)
    metric(onehot(PRED), onehot(TRUE))
    assert metric.aggregate().item() == 2 / 4
    empty = DatasetMeanIoUMetric()
    empty(onehot([[0, 0]]), onehot([[0, 0]]))  # no polyp anywhere: the class is left out, not counted as 0
    assert empty.aggregate().item() == 1.0


def test_handler_on_an_engine() -> None:
    batches = [{"pred": onehot(PRED[i : i + 1]), "label": onehot(TRUE[i : i + 1])} for i in range(2)]
    engine = Engine(lambda engine, batch: batch)
    DatasetMeanIoU(output_transform=lambda output: (output["pred"], output["label"])).attach(engine, "val_miou")
    engine.run(batches)
    assert abs(engine.state.metrics["val_miou"] - EXPECTED) < 1e-6
