"""Labeled and unlabeled data for semi-supervised training: two datalists, two loaders, one batch per step.

Semi-supervised methods train on batches of ``labeled_batch_size`` labeled cases followed by unlabeled ones (UA-MT's
and SSL4MIS's ``TwoStreamBatchSampler``: 2 labeled + 2 unlabeled on the LA benchmark). Here the two parts come from
two ordinary ``DataLoader`` objects, each with its own sampler, so that under DDP a ``DistributedSampler`` shards
each list, and unlabeled cases never need a label file. :class:`LabeledUnlabeledLoader` zips them into one batch per
step: ``image`` holds the labeled images first, then the unlabeled ones; ``label`` holds the labeled part only;
``labeled_batch_size`` says where the split is. An epoch has a fixed length (``epoch_length``, or one pass over the
labeled loader); each stream restarts, reshuffled, whenever it runs out, as the reference sampler does. Other
per-case images that both streams carry (``extra_keys``, e.g. the strong view ``image_strong`` of FixMatch-style
methods) are concatenated the same way, labeled part first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from monai.utils import convert_to_tensor

__all__ = ["LABELED_BATCH_SIZE_KEY", "LabeledUnlabeledLoader", "unlabeled_cases"]

LABELED_BATCH_SIZE_KEY = "labeled_batch_size"
"""Batch key holding the number of labeled cases at the start of the batch."""

_PASSES_PER_EPOCH = 10_000  # spacing of the sampler epochs of successive passes, so that no two passes repeat a shuffle


def unlabeled_cases(
    datalist: Mapping[str, Sequence[Mapping[str, Any]]], include_labeled: bool = False
) -> list[dict[str, Any]]:
    """The cases a semi-supervised method may use without labels, stripped of their ``label``.

    Args:
        datalist: a datalist with ``"unlabeled"`` and ``"training"`` lists (see :mod:`common.data.datalist`).
        include_labeled: also use the labeled training cases as unlabeled ones (some methods do; the reference
            LA / BraTS protocols keep the two sets disjoint, the default).

    Returns:
        ``{"id", "image", ...}`` dicts without ``"label"``: the unlabeled list, then (if asked) the labeled one.

    Raises:
        ValueError: the result is empty (e.g. every training case is labeled).
    """
    cases = [dict(case) for case in datalist.get("unlabeled", [])]
    if include_labeled:
        cases += [dict(case) for case in datalist.get("training", [])]
    for case in cases:
        case.pop("label", None)
    if not cases:
        raise ValueError(
            "no unlabeled case: the datalist's 'unlabeled' list is empty (set a labeled count below the number of "
            "training cases, or include_labeled=True)"
        )
    return cases


def _set_sampler_epoch(loader: Iterable, epoch: int) -> None:
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


class LabeledUnlabeledLoader:
    """Zip a labeled and an unlabeled data loader into semi-supervised batches of a fixed number per epoch.

    Each step takes one batch from each loader and returns ``{"image": cat(labeled, unlabeled), "label": labeled,
    "labeled_batch_size": n}`` (tensors without MONAI metadata). Either loader restarts when it runs out; before each
    pass, a sampler with ``set_epoch`` (``DistributedSampler``) is given a new epoch number derived from the engine's
    epoch (:meth:`set_epoch`), so each pass is shuffled differently and every rank agrees on it.

    Each epoch starts both streams afresh (new iterators of both loaders), so nothing of a stream's position carries
    from one epoch to the next: a run resumed at an epoch boundary continues exactly when the random generators are
    restored, which :class:`common.handlers.RandomStates` does by walking the public ``labeled_loader`` and
    ``unlabeled_loader`` (their samplers' and loaders' generators, their transforms' ``R``).

    Args:
        labeled_loader: batches of labeled cases (dicts with ``image_key`` and ``label_key``).
        unlabeled_loader: batches of unlabeled cases (dicts with ``image_key``).
        epoch_length: steps per epoch; None for one pass over ``labeled_loader``.
        image_key: key of the images in both loaders' batches.
        label_key: key of the labels in the labeled loader's batches.
        extra_keys: keys of other images in both loaders' batches, concatenated like ``image_key`` (labeled first),
            e.g. ``"image_strong"``; the batch shape of each must match ``image_key``'s.

    Raises:
        ValueError: a non-positive ``epoch_length``, or an empty labeled loader without ``epoch_length``.
    """

    def __init__(
        self,
        labeled_loader: Iterable,
        unlabeled_loader: Iterable,
        epoch_length: int | None = None,
        image_key: str = "image",
        label_key: str = "label",
        extra_keys: Sequence[str] | str | None = None,
    ) -> None:
        if epoch_length is not None and epoch_length < 1:
            raise ValueError(f"epoch_length must be at least 1, got {epoch_length}")
        self.labeled_loader = labeled_loader
        self.unlabeled_loader = unlabeled_loader
        self.epoch_length = epoch_length
        self.image_key = image_key
        self.label_key = label_key
        self.extra_keys: tuple[str, ...] = (extra_keys,) if isinstance(extra_keys, str) else tuple(extra_keys or ())
        self.epoch = 0
        if epoch_length is None and len(labeled_loader) == 0:  # type: ignore[arg-type]
            raise ValueError("the labeled loader yields no batch (fewer labeled cases than its batch size?)")

    def __len__(self) -> int:
        return int(self.epoch_length) if self.epoch_length is not None else len(self.labeled_loader)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next iteration belongs to (the trainer calls it at every epoch start).

        Args:
            epoch: the engine's epoch number.
        """
        self.epoch = int(epoch)

    def _cycle(self, loader: Iterable, name: str) -> Iterator[Any]:
        for restart in itertools.count():
            _set_sampler_epoch(loader, self.epoch * _PASSES_PER_EPOCH + restart)
            empty = True
            for batch in loader:
                empty = False
                yield batch
            if empty:
                raise ValueError(f"the {name} loader yields no batch (fewer cases than its batch size with drop_last?)")

    def combine(self, labeled: Mapping[str, Any], unlabeled: Mapping[str, Any]) -> dict[str, Any]:
        """One semi-supervised batch from a labeled and an unlabeled batch.

        Args:
            labeled: a labeled batch: ``image_key`` ``(L, C, *spatial)`` and ``label_key`` ``(L, 1, *spatial)``.
            unlabeled: an unlabeled batch: ``image_key`` ``(U, C, *spatial)``.

        Returns:
            ``{image_key: (L + U, C, *spatial), label_key: (L, 1, *spatial), "labeled_batch_size": L}``, plus each of
            ``extra_keys`` concatenated as ``image_key``.

        Raises:
            KeyError: a batch lacks its image or label.
            ValueError: the two parts' image shapes differ beyond the batch axis.
        """
        for part, batch, keys in (
            ("labeled", labeled, (self.image_key, self.label_key, *self.extra_keys)),
            ("unlabeled", unlabeled, (self.image_key, *self.extra_keys)),
        ):
            missing = [key for key in keys if key not in batch]
            if missing:
                raise KeyError(f"the {part} batch has no {missing} (keys: {sorted(batch)})")
        labeled_images = convert_to_tensor(labeled[self.image_key], track_meta=False)
        unlabeled_images = convert_to_tensor(unlabeled[self.image_key], track_meta=False)
        if labeled_images.shape[1:] != unlabeled_images.shape[1:]:
            raise ValueError(
                f"labeled images {tuple(labeled_images.shape)} and unlabeled images {tuple(unlabeled_images.shape)} "
                "differ beyond the batch axis: crop both streams to the same patch size"
            )
        batch = {
            self.image_key: torch.cat([labeled_images, unlabeled_images], dim=0),
            self.label_key: convert_to_tensor(labeled[self.label_key], track_meta=False),
            LABELED_BATCH_SIZE_KEY: int(labeled_images.shape[0]),
        }
        for key in self.extra_keys:
            parts = [convert_to_tensor(part[key], track_meta=False) for part in (labeled, unlabeled)]
            if [tuple(p.shape) for p in parts] != [tuple(labeled_images.shape), tuple(unlabeled_images.shape)]:
                raise ValueError(
                    f"{key!r} has shapes {[tuple(p.shape) for p in parts]}, the images "
                    f"{[tuple(labeled_images.shape), tuple(unlabeled_images.shape)]}: extra keys must match the images"
                )
            batch[key] = torch.cat(parts, dim=0)
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        labeled = self._cycle(self.labeled_loader, "labeled")
        unlabeled = self._cycle(self.unlabeled_loader, "unlabeled")
        for _ in range(len(self)):
            yield self.combine(next(labeled), next(unlabeled))
