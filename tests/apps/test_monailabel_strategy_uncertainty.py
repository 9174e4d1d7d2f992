"""The app's ``uncertainty`` strategy logic (``apps/monailabel/lib/strategy_uncertainty.py``), without MONAI Label."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "apps" / "monailabel"
sys.path.insert(0, str(APP))
from lib.strategy_uncertainty import NO_SCORE_REASON, pick_study, rank_studies, study_score  # noqa: E402

KEY = "uncertainty"


def test_scored_studies_first_by_score_then_least_recently_served_then_id():
    infos = {
        "a": {KEY: 0.2},
        "b": {KEY: 0.5},
        "c": {},  # never scored (a new study)
        "d": {KEY: 0.5, "strategy": {"uncertainty": {"ts": 100}}},  # as uncertain as b, served before
        "e": {KEY: float("nan")},  # a failed score is no score
        "f": {KEY: 0.5, "strategy": {"random": {"ts": 100}}},  # served by another strategy: counts as never here
    }
    ranked = rank_studies(["a", "b", "c", "d", "e", "f"], infos, KEY)
    assert [s.id for s in ranked] == ["b", "f", "d", "a", "c", "e"]
    assert [s.score for s in ranked[:4]] == [0.5, 0.5, 0.5, 0.2]
    assert ranked[2].served_ts == 100 and ranked[1].served_ts == 0


def test_highest_score_wins_over_order_and_ids():
    # a higher score must win even when its id sorts last and it was served recently (not a lowest-first sort)
    infos = {"z": {KEY: 0.9, "strategy": {"uncertainty": {"ts": 1e9}}}, "a": {KEY: 0.1}, "m": {KEY: 0.3}}
    study, reason = pick_study(["a", "m", "z"], infos, KEY)
    assert study.id == "z" and study.score == 0.9
    assert reason == "most uncertain of 3 scored unlabeled studies (uncertainty 0.9 nats)"


def test_only_unlabeled_studies_are_candidates():
    infos = {"labeled": {KEY: 5.0}, "u1": {KEY: 0.1}, "u2": {KEY: 0.2}}
    study, _ = pick_study(["u1", "u2"], infos, KEY)
    assert study.id == "u2"


def test_no_score_at_all_falls_back_to_the_least_recently_served_and_says_so():
    infos = {"b": {}, "a": {"strategy": {"uncertainty": {"ts": 50}}}, "c": {KEY: None}}
    study, reason = pick_study(["a", "b", "c"], infos, KEY)
    assert study.id == "b" and study.score is None
    assert reason == NO_SCORE_REASON and "/scoring/uncertainty" in reason


def test_unscored_studies_are_reported_when_some_are_scored():
    study, reason = pick_study(["a", "b", "c"], {"b": {KEY: 0.3}}, KEY)
    assert study.id == "b"
    assert "2 unlabeled studies have no score yet" in reason


def test_nothing_unlabeled():
    assert pick_study([], {}, KEY) == (None, "every study is labeled")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.25, 0.25), (1, 1.0), ("0.5", 0.5), (None, None), (True, None), ("x", None), (float("inf"), None)],
)
def test_study_score(value, expected):
    assert study_score({KEY: value}, KEY) == expected
    assert study_score(None, KEY) is None
