"""Semi-supervised batches: labeled + unlabeled cases of :class:`common.data.LabeledUnlabeledLoader` on the device.

:func:`split_semi_supervised_batch` checks a batch (``image`` for all cases, labeled first; ``label`` for the labeled
part; ``labeled_batch_size``) and moves it to the engine's device; :meth:`common.engines.MethodTrainer.split_batch`
calls it with the trainer's keys. The trainer base itself (step, AMP, schedules) is :mod:`common.engines.base`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from ignite.engine import Engine
from monai.utils import CommonKeys as Keys

from common.data.semi_supervised import LABELED_BATCH_SIZE_KEY

__all__ = ["SemiSupervisedBatch", "split_semi_supervised_batch"]


class SemiSupervisedBatch(NamedTuple):
    """A semi-supervised batch on the device: ``images`` ``(B, ...)`` (labeled first), ``labels`` of the first
    ``num_labeled`` cases."""

    images: torch.Tensor
    labels: torch.Tensor
    num_labeled: int


def split_semi_supervised_batch(
    engine: Engine,
    batchdata: dict[str, Any] | None,
    image_key: str = Keys.IMAGE,
    label_key: str = Keys.LABEL,
    need_unlabeled: bool = False,
) -> SemiSupervisedBatch:
    """Move a batch of :class:`common.data.LabeledUnlabeledLoader` to the engine's device, labeled cases first.

    Args:
        engine: a MONAI trainer (its ``state.device``, ``non_blocking`` and ``to_kwargs`` are used).
        batchdata: ``{"image": (B, ...), "label": (L, ...), "labeled_batch_size": L}``.
        image_key: batch key of the images.
        label_key: batch key of the labels.
        need_unlabeled: the method needs unlabeled cases in every batch (``L < B``).

    Raises:
        ValueError: no batch, a missing key, or inconsistent sizes.
    """
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    missing = [key for key in (image_key, label_key, LABELED_BATCH_SIZE_KEY) if key not in batchdata]
    if missing:
        raise ValueError(
            f"a semi-supervised batch needs {missing} (use common.data.LabeledUnlabeledLoader); got keys "
            f"{sorted(batchdata)}"
        )
    num_labeled = int(batchdata[LABELED_BATCH_SIZE_KEY])
    device, to_kwargs = engine.state.device, engine.to_kwargs  # type: ignore[attr-defined]
    images = batchdata[image_key].to(device, non_blocking=engine.non_blocking, **to_kwargs)  # type: ignore[attr-defined]
    labels = batchdata[label_key].to(device, non_blocking=engine.non_blocking, **to_kwargs)  # type: ignore[attr-defined]
    most = images.shape[0] - 1 if need_unlabeled else images.shape[0]
    if labels.shape[0] != num_labeled or not 0 < num_labeled <= most:
        needs = " (the method needs labeled and unlabeled cases in every batch)" if need_unlabeled else ""
        raise ValueError(
            f"inconsistent batch: {images.shape[0]} images, {labels.shape[0]} labels, labeled_batch_size "
            f"{num_labeled}{needs}"
        )
    return SemiSupervisedBatch(images, labels, num_labeled)
