"""A bundle's own uncertainty for one study: the score by which the app ranks unlabeled studies for annotation.

Pure logic, without MONAI Label (torch, numpy and MONAI only), so that it runs and is tested where MONAI Label is
not installed; :mod:`lib.scoring` is the MONAI Label glue around it.

What the score is, per bundle (the contract of ``configs/inference.json``, see README, "Ranking cases by
uncertainty"):

- a bundle with ``save_uncertainty`` (UG-MCL, DFCPS) computes its own uncertainty map when that key is true: UG-MCL's
  inferer runs the Monte-Carlo passes (dropout active, input noise) of ``common.inferers.MCUncertaintyEstimator`` and
  appends their predictive entropy as the last channel; DFCPS's postprocessing takes the entropy of its two-network
  ensemble's mean softmax. :class:`BundleUncertainty` runs the bundle's own ``preprocessing``, ``inferer`` and
  ``postprocessing`` with ``save_uncertainty`` true and reads that map (key ``"uncertainty"``);
- a bundle without it (CMUNeXt, DMGSA, ASE-Net: no Monte-Carlo passes of their own) is scored by the entropy of its
  softmax, ``-sum_c p_c ln p_c`` (:func:`entropy_map`), from the same pipeline up to the argmax.

The score is the map's mean over voxels, in nats (``0`` certain to ``ln C`` uniform; :func:`map_score`); it is the
``mean_entropy`` that ``python -m common.bundle rank_uncertainty`` ranks cases by.

Why not MONAI Label's own ``epistemic`` scoring: it runs the bundle through MONAI Label's ``BundleInferTask`` once
per pass and image, from a thread pool, and each call puts the bundle folder on ``sys.path``, imports the bundle's
``scripts`` package and unloads it again, so that two threads race (``KeyError: 'scripts'``); and its
``epistemic_model`` option rebuilds the network with a ``dropout`` argument that four of our networks do not take.
:class:`BundleUncertainty` instead builds the bundle's pipeline once, under a process-wide lock, keeps the modules
it imported, and scores the studies one after the other.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "SCORE_KEY",
    "SOURCE_BUNDLE",
    "SOURCE_SOFTMAX",
    "BundleUncertainty",
    "as_probabilities",
    "entropy_map",
    "map_score",
    "prediction_transforms",
]

logger = logging.getLogger(__name__)

SCORE_KEY = "uncertainty"
"""Key of the score in MONAI Label's datastore image info (``update_image_info(image_id, {SCORE_KEY: ...})``)."""

SOURCE_BUNDLE = "bundle"
"""The score is the mean of the bundle's own uncertainty map (``save_uncertainty``)."""

SOURCE_SOFTMAX = "softmax_entropy"
"""The score is the mean entropy of the bundle's softmax (a bundle without ``save_uncertainty``)."""

_BUILD_LOCK = threading.Lock()  # sys.path and the bundle's `scripts` package are process-wide


def entropy_map(probabilities: torch.Tensor) -> torch.Tensor:
    """Voxel-wise entropy ``-sum_c p_c ln p_c`` (nats) over the channel axis, ``0 ln 0 = 0``.

    Args:
        probabilities: ``(C, *spatial)`` class probabilities; ``C = 1`` is a sigmoid output, the probability of the
            foreground, whose entropy is that of the two classes ``(1 - p, p)``.

    Returns:
        ``(1, *spatial)``, in ``[0, ln max(C, 2)]``.
    """
    p = probabilities.float()
    if p.shape[0] == 1:
        p = torch.cat([1 - p, p], dim=0)
    return -torch.special.xlogy(p, p).sum(dim=0, keepdim=True)


def as_probabilities(prediction: torch.Tensor, atol: float = 1e-3) -> torch.Tensor:
    """Class probabilities from a network's prediction, which may already be probabilities.

    The bundles' pipelines differ: CMUNeXt's and DMGSA's postprocessing apply a softmax, ASE-Net's and DFCPS's
    inferers average probabilities, and a bare network returns logits. A prediction is taken as probabilities when
    every value lies in ``[0, 1]`` and, for ``C > 1``, the channels sum to 1 (within ``atol``); else a softmax
    (``C > 1``) or sigmoid (``C = 1``) is applied.

    Args:
        prediction: ``(C, *spatial)``.
        atol: tolerance of the range and sum checks.

    Returns:
        ``(C, *spatial)`` probabilities.
    """
    p = prediction.float()
    in_range = bool(p.min() >= -atol) and bool(p.max() <= 1 + atol)
    if p.shape[0] == 1:
        return p.clamp(0, 1) if in_range else torch.sigmoid(p)
    if in_range and bool(torch.all(torch.abs(p.sum(dim=0) - 1) <= atol)):
        return p.clamp(0, 1)
    return torch.softmax(p, dim=0)


def map_score(uncertainty: torch.Tensor | np.ndarray) -> float:
    """The score of a study: the mean of its uncertainty map over all voxels (nats).

    Args:
        uncertainty: an entropy map, any shape.

    Returns:
        the mean.

    Raises:
        ValueError: an empty map, or one holding NaN, infinite or negative values (which no entropy has; tiny
            negative values from interpolation, above ``-1e-6``, are accepted as 0).
    """
    values = np.asarray(uncertainty.detach().cpu() if isinstance(uncertainty, torch.Tensor) else uncertainty)
    values = values.astype(np.float64)
    if values.size == 0:
        raise ValueError("an empty uncertainty map has no score")
    if not np.isfinite(values).all() or values.min() < -1e-6:
        raise ValueError("an uncertainty map must be finite and non-negative")
    return float(np.clip(values, 0, None).mean())


def _name(transform: Any) -> str:
    return type(transform).__name__


def prediction_transforms(transforms: Sequence[Callable]) -> list[Callable]:
    """The bundle's postprocessing up to its prediction's probabilities: before the first argmax, without writers.

    Kept: everything before the first ``AsDiscreted`` (the softmax, the uncertainty map's extraction, the
    inversion to the image's geometry where it comes first); dropped: that ``AsDiscreted`` and what follows
    (connected components, inversion of a discrete label), and every ``SaveImaged`` (scoring writes no files).

    Args:
        transforms: the transforms of the bundle's ``postprocessing`` ``Compose``, in order.

    Returns:
        the transforms to apply, in order.
    """
    kept = []
    for transform in transforms:
        if _name(transform) in ("AsDiscreted", "AsDiscrete"):
            break
        if _name(transform) in ("SaveImaged", "SaveImage"):
            continue
        kept.append(transform)
    return kept


class BundleUncertainty:
    """Score studies with a bundle's own uncertainty (see the module docstring): built once, then called per image.

    Args:
        bundle_path: the bundle folder (an export: ``configs/inference.json``, ``models/model.pt``, ``scripts/``).
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        config_file: the inference config, relative to ``bundle_path``.
        model_file: the weights, relative to ``bundle_path``.
        overrides: config ids to set, e.g. ``{"uncertainty_passes": 4}`` (ids the config lacks are ignored with a
            warning, so that one request can serve every bundle).

    Raises:
        FileNotFoundError: no config or no weights.
    """

    def __init__(
        self,
        bundle_path: str | os.PathLike,
        device: str | torch.device = "cpu",
        config_file: str = "configs/inference.json",
        model_file: str = "models/model.pt",
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.bundle_path = os.path.abspath(os.fspath(bundle_path))
        self.device = torch.device(device)
        self.config_path = os.path.join(self.bundle_path, config_file)
        self.model_path = os.path.join(self.bundle_path, model_file)
        for path in (self.config_path, self.model_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} does not exist: the bundle cannot be scored")
        with _BUILD_LOCK:
            self._build(dict(overrides or {}))

    def _build(self, overrides: dict[str, Any]) -> None:
        from monai.bundle import ConfigParser

        added = self.bundle_path not in sys.path
        if added:
            sys.path.insert(0, self.bundle_path)
        try:
            if os.path.isdir(os.path.join(self.bundle_path, "scripts")):
                # imported now, and the module objects kept by what the config instantiates, so that another task
                # unloading `scripts` later (MONAI Label's bundle tasks do, after each call) cannot break scoring
                importlib.import_module("scripts")
            parser = ConfigParser()
            parser.read_config(self.config_path)
            parser["bundle_root"] = self.bundle_path
            parser["device"] = self.device
            self.has_own_uncertainty = "save_uncertainty" in parser
            if self.has_own_uncertainty:
                parser["save_uncertainty"] = True
            for key, value in overrides.items():
                if key in parser:
                    parser[key] = value
                else:
                    logger.warning(f"{self.bundle_path}: inference.json has no '{key}'; override ignored")
            self.preprocessing = parser.get_parsed_content("preprocessing")
            self.inferer = parser.get_parsed_content("inferer")
            self.network = parser.get_parsed_content("network").to(self.device)
            postprocessing = parser.get_parsed_content("postprocessing")
            self.postprocessing = prediction_transforms(getattr(postprocessing, "transforms", [postprocessing]))
        finally:
            if added and self.bundle_path in sys.path:
                sys.path.remove(self.bundle_path)
        self._load_weights()
        self.network.eval()

    def _load_weights(self) -> None:
        from ignite.handlers import Checkpoint

        checkpoint = torch.load(self.model_path, map_location=self.device, weights_only=True)
        if not (isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], dict)):
            checkpoint = {"model": checkpoint}  # MONAI's CheckpointLoader: one object, saved as its state dict
        Checkpoint.load_objects(to_load={"model": self.network}, checkpoint=checkpoint)

    @property
    def source(self) -> str:
        """:data:`SOURCE_BUNDLE` or :data:`SOURCE_SOFTMAX`."""
        return SOURCE_BUNDLE if self.has_own_uncertainty else SOURCE_SOFTMAX

    @torch.no_grad()
    def uncertainty_map(self, image: str | os.PathLike) -> torch.Tensor:
        """The uncertainty map of one image, ``(1, *spatial)`` in nats.

        Args:
            image: the image file (what the bundle's ``preprocessing`` reads).

        Raises:
            RuntimeError: a bundle with ``save_uncertainty`` whose pipeline produced no ``"uncertainty"``.
        """
        data = self.preprocessing({"image": os.fspath(image)})
        batch = data["image"].unsqueeze(0).to(self.device)
        data["pred"] = self.inferer(batch, self.network)[0]
        for transform in self.postprocessing:
            data = transform(data)
        if self.has_own_uncertainty:
            if "uncertainty" not in data:
                raise RuntimeError(f"{self.config_path}: save_uncertainty is true but no 'uncertainty' was computed")
            return torch.as_tensor(data["uncertainty"]).float()
        return entropy_map(as_probabilities(torch.as_tensor(data["pred"])))

    def __call__(self, image: str | os.PathLike) -> float:
        """The score of one image: :func:`map_score` of :meth:`uncertainty_map`."""
        return map_score(self.uncertainty_map(image))
