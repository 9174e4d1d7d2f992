"""Which unlabeled study to annotate next: the most uncertain one, by the scores that :mod:`lib.scoring` stored.

Pure logic, without MONAI Label, so that it is tested where MONAI Label is not installed; :mod:`lib.strategy` is the
MONAI Label glue around it.

Rules of :func:`rank_studies` (most wanted first):

1. studies with a score (a finite number under :data:`lib.scoring_uncertainty.SCORE_KEY` in their datastore info)
   before studies without one (a new study, or one that failed to score), highest score first;
2. equal scores: the study this strategy served least recently first (MONAI Label records when a strategy served a
   study under ``info["strategy"][<name>]["ts"]``; never served counts as 0), so that two annotators asking in turn
   get different studies among equals;
3. then by study id, so that the order is deterministic.

When no unlabeled study has a score, :func:`pick_study` still returns one (rules 2 and 3) and says why in its
``reason``: the user is told to run ``/scoring/uncertainty`` first, instead of silently getting an arbitrary study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_SCORE_REASON", "RankedStudy", "pick_study", "rank_studies", "study_score"]

NO_SCORE_REASON = "no unlabeled study has an uncertainty score yet: run /scoring/uncertainty first"


@dataclass(frozen=True)
class RankedStudy:
    """One unlabeled study in the ranking.

    Attributes:
        id: the datastore's image id.
        score: its uncertainty (nats), or None when it has none.
        served_ts: when this strategy last served it (seconds since the epoch; 0 = never).
    """

    id: str
    score: float | None
    served_ts: float


def study_score(info: Mapping[str, Any] | None, key: str) -> float | None:
    """The score in a study's datastore info: a finite number under ``key``, else None (absent, NaN, not a number)."""
    value = (info or {}).get(key)
    if isinstance(value, bool):
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def _served_ts(info: Mapping[str, Any] | None, strategy: str) -> float:
    record = ((info or {}).get("strategy") or {}).get(strategy) or {}
    try:
        return float(record.get("ts", 0))
    except (TypeError, ValueError):
        return 0.0


def rank_studies(
    unlabeled: Sequence[str], infos: Mapping[str, Mapping[str, Any]], key: str, strategy: str = "uncertainty"
) -> list[RankedStudy]:
    """The unlabeled studies, most wanted first (rules in the module docstring).

    Args:
        unlabeled: the datastore's unlabeled image ids.
        infos: their datastore infos (``get_image_info``); a missing entry counts as an empty info.
        key: the score's key.
        strategy: this strategy's name, under which MONAI Label records when it served a study.

    Returns:
        one entry per unlabeled study.
    """
    ranked = [
        RankedStudy(str(i), study_score(infos.get(i), key), _served_ts(infos.get(i), strategy)) for i in unlabeled
    ]
    return sorted(ranked, key=lambda s: (s.score is None, -(s.score or 0.0), s.served_ts, s.id))


def pick_study(
    unlabeled: Sequence[str], infos: Mapping[str, Mapping[str, Any]], key: str, strategy: str = "uncertainty"
) -> tuple[RankedStudy | None, str]:
    """The study to annotate next and why.

    Args:
        unlabeled: see :func:`rank_studies`.
        infos: see :func:`rank_studies`.
        key: see :func:`rank_studies`.
        strategy: see :func:`rank_studies`.

    Returns:
        ``(study, reason)``: the first of :func:`rank_studies` (None when nothing is unlabeled) and a sentence:
        the most uncertain of how many scored studies, or :data:`NO_SCORE_REASON`.
    """
    ranked = rank_studies(unlabeled, infos, key, strategy)
    if not ranked:
        return None, "every study is labeled"
    first = ranked[0]
    if first.score is None:
        return first, NO_SCORE_REASON
    scored = sum(s.score is not None for s in ranked)
    unscored = len(ranked) - scored
    reason = f"most uncertain of {scored} scored unlabeled studies ({key} {first.score:.4g} nats)"
    if unscored:
        reason += f"; {unscored} unlabeled studies have no score yet and come after the scored ones"
    return first, reason
