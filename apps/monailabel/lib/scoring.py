"""Scoring methods of the app (registration hook for ``main.LabelEfficientApp.init_scoring_methods``).

``/scoring/uncertainty`` (:class:`BundleUncertaintyScoring`) scores every unlabeled study of the datastore with the
bundle's own uncertainty (:class:`lib.scoring_uncertainty.BundleUncertainty`: the Monte-Carlo passes of UG-MCL's
``save_uncertainty``, the ensemble entropy of DFCPS, the softmax entropy of the supervised bundles) and stores the
score in the study's datastore info, ``update_image_info(image_id, {"uncertainty": <mean entropy, nats>, ...})``,
where the ``uncertainty`` strategy (:mod:`lib.strategy`) reads it.

Request parameters (``POST /scoring/uncertainty`` with a JSON body; all optional):

- ``model``: the bundle to score with (default ``--conf uncertainty_model``, else the first model);
- ``device``: ``"cpu"``, ``"cuda"``, ... (default: ``cuda`` when available; ``cuda`` without a GPU runs on the CPU);
- ``force``: score again studies already scored by the current weights (default false: they are skipped);
- ``max_samples``: score at most that many studies (0: all);
- ``uncertainty_passes``: Monte-Carlo passes of a bundle that has the key (UG-MCL: 8), fewer for speed.

MONAI Label's failures that this method avoids (issue 17): its ``epistemic`` scoring runs the bundle task from a
thread pool, which races on the bundle's ``scripts`` package (``KeyError: 'scripts'``), and ``--conf
epistemic_model`` rebuilds the network with a ``dropout`` argument that CMUNeXt, UG-MCL's, ASE-Net's and DFCPS's
networks do not take. Here the pipeline is built once per request, under a lock, and the studies are scored one
after the other. MONAI Label runs a scoring request in a process of its own whose datastore was read when it
started; each score is written after reloading the datastore file when it changed (a label saved meanwhile by the
server is then not overwritten by a stale copy).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.scoring_uncertainty import SCORE_KEY, BundleUncertainty

__all__ = ["MODEL_TS_KEY", "SOURCE_KEY", "BundleUncertaintyScoring", "scoring_methods"]

logger = logging.getLogger(__name__)

MODEL_TS_KEY = "uncertainty_model_ts"
"""Datastore info key: modification time of the weights that computed the score (a retrained model rescores)."""

SOURCE_KEY = "uncertainty_source"
"""Datastore info key: ``"<model>: bundle"`` (its own uncertainty map) or ``"<model>: softmax_entropy"``."""


def _device(requested: Any) -> str:
    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    requested = str(requested[0] if isinstance(requested, list | tuple) else requested)
    if requested.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"UNCERTAINTY:: device {requested} requested but no GPU is available: scoring on the CPU")
        return "cpu"
    return requested


def _store(datastore: Datastore, image_id: str, info: dict[str, Any]) -> None:
    """``update_image_info`` after reloading a local datastore's file when another process changed it."""
    reload = getattr(datastore, "_init_from_datastore_file", None)  # LocalDatastore: re-reads only a changed file
    if callable(reload):
        reload()
    datastore.update_image_info(image_id, info)


class BundleUncertaintyScoring(ScoringMethod):
    """Score the unlabeled studies with a bundle's own uncertainty (see the module docstring).

    Args:
        models: ``{model name: bundle folder}`` of the app.
        default_model: the model used when a request names none (default: the first of ``models``).
    """

    def __init__(self, models: dict[str, str], default_model: str | None = None) -> None:
        super().__init__("Mean uncertainty (nats) of the bundle's prediction for every unlabeled study")
        self.models = dict(models)
        self.default_model = default_model or next(iter(self.models), None)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "models": list(self.models), "default_model": self.default_model, "key": SCORE_KEY}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        model = request.get("model") or self.default_model
        if model not in self.models:
            raise ValueError(f"no model {model!r} to score with; the app serves {list(self.models)}")
        path = self.models[model]
        weights = os.path.join(path, "models", "model.pt")
        model_ts = int(os.stat(weights).st_mtime) if os.path.isfile(weights) else 0
        force = str(request.get("force", False)).lower() in ("1", "true", "yes")
        unlabeled = list(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))
        todo = [
            image_id
            for image_id in unlabeled
            if force
            or datastore.get_image_info(image_id).get(MODEL_TS_KEY) != model_ts
            or datastore.get_image_info(image_id).get(SCORE_KEY) is None
        ]
        max_samples = int(request.get("max_samples", 0) or 0)
        todo = todo[:max_samples] if max_samples > 0 else todo
        start = time.time()
        logger.info(f"UNCERTAINTY:: {model}: {len(unlabeled)} unlabeled studies, {len(todo)} to score")
        failed: dict[str, str] = {}
        scored = 0
        if todo:
            overrides = {"uncertainty_passes": request["uncertainty_passes"]} if "uncertainty_passes" in request else {}
            scorer = BundleUncertainty(path, device=_device(request.get("device")), overrides=overrides)
            for image_id in todo:  # one after the other: no thread pool, no race on the bundle's modules
                began = time.time()
                try:
                    score = scorer(datastore.get_image_uri(image_id))
                except Exception as error:  # one unreadable study must not stop the others; it keeps no score
                    failed[image_id] = f"{type(error).__name__}: {error}"
                    logger.warning(f"UNCERTAINTY:: {image_id}: not scored ({failed[image_id]})")
                    continue
                _store(
                    datastore,
                    image_id,
                    {SCORE_KEY: score, MODEL_TS_KEY: model_ts, SOURCE_KEY: f"{model}: {scorer.source}"},
                )
                scored += 1
                logger.info(f"UNCERTAINTY:: {image_id} => {score:.6g} nats ({time.time() - began:.2f} s)")
        summary = {
            "model": model,
            "total": len(unlabeled),
            "skipped": len(unlabeled) - len(todo),
            "executed": scored,
            "failed": failed,
            "latency": round(time.time() - start, 3),
        }
        logger.info(f"UNCERTAINTY:: {summary}")
        return summary


def scoring_methods(app: Any) -> dict[str, Any]:
    """The scoring methods to register: ``{"uncertainty": BundleUncertaintyScoring}`` when the app has models.

    Args:
        app: the MONAI Label app; ``app.models`` maps model names to bundle folders, ``app.conf`` holds ``--conf``
            (``uncertainty_model``: the default model to score with).
    """
    models = dict(getattr(app, "models", {}) or {})
    if not models:
        return {}
    conf = getattr(app, "conf", {}) or {}
    return {"uncertainty": BundleUncertaintyScoring(models, conf.get("uncertainty_model"))}
