"""Active-learning strategies of the app (registration hook for ``main.LabelEfficientApp.init_strategies``).

``/activelearning/uncertainty`` (:class:`MostUncertain`) returns the unlabeled study with the highest score that
``/scoring/uncertainty`` stored (rules and fallback: :mod:`lib.strategy_uncertainty`). MONAI Label's own
``Epistemic`` strategy is not used: it reads ``epistemic_entropy``, which our scoring does not write, and treats a
missing score as 0 without saying so.

The answer is MONAI Label's: ``{"id": <image id>, ...}`` (the endpoint adds the path and the study's datastore
info), here with ``uncertainty`` (the score, or None), ``rank`` (1 = most uncertain), ``scored`` (how many unlabeled
studies have a score) and ``reason`` (a sentence; when no study is scored it says to run ``/scoring/uncertainty``).
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.scoring_uncertainty import SCORE_KEY
from lib.strategy_uncertainty import NO_SCORE_REASON, pick_study, rank_studies

__all__ = ["MostUncertain", "strategies"]

logger = logging.getLogger(__name__)


class MostUncertain(Strategy):
    """The most uncertain unlabeled study, by the scores of ``/scoring/uncertainty``.

    Args:
        key: the datastore info key of the score.
    """

    def __init__(self, key: str = SCORE_KEY) -> None:
        super().__init__("The unlabeled study whose prediction is most uncertain (run /scoring/uncertainty first)")
        self.key = key

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        name = request.get("strategy") or "uncertainty"
        # the scores were written by MONAI Label's scoring process: re-read a local datastore's file when it changed
        # (the server's own copy follows the file only with MONAI_LABEL_DATASTORE_AUTO_RELOAD, and with a delay)
        reload = getattr(datastore, "_init_from_datastore_file", None)
        if callable(reload):
            reload()
        unlabeled = list(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))
        infos = {image_id: datastore.get_image_info(image_id) for image_id in unlabeled}
        study, reason = pick_study(unlabeled, infos, self.key, name)
        if study is None:
            logger.info(f"{name}: {reason}")
            return None
        ranked = rank_studies(unlabeled, infos, self.key, name)
        scored = sum(s.score is not None for s in ranked)
        log = logger.warning if reason == NO_SCORE_REASON else logger.info
        log(f"{name}: selected {study.id}: {reason}")
        return {"id": study.id, self.key: study.score, "rank": 1, "scored": scored, "reason": reason}


def strategies(app: Any) -> dict[str, Any]:
    """The strategies to register besides MONAI Label's ``random`` and ``first``: ``{"uncertainty": MostUncertain}``."""
    return {"uncertainty": MostUncertain()}
