"""The active-learning simulation's selection and bookkeeping (``benchmarks/active_learning.py``), without training."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import active_learning  # noqa: E402
from active_learning import case_key, choose_cases, round_datalist  # noqa: E402


def test_uncertainty_takes_the_top_of_the_ranking_that_is_still_in_the_pool():
    ranking = ["x", "c", "a", "d", "b"]  # most uncertain first; "x" was annotated in an earlier round
    assert choose_cases(["a", "b", "c", "d"], 2, "uncertainty", ranking) == ["c", "a"]
    assert choose_cases(["a", "b"], 5, "uncertainty", ranking) == ["a", "b"]  # the whole pool when it is smaller
    assert choose_cases(["a", "b"], 0, "uncertainty", ranking) == []


def test_uncertainty_refuses_a_ranking_that_misses_pool_cases():
    with pytest.raises(ValueError, match="no uncertainty score"):
        choose_cases(["a", "b", "c"], 1, "uncertainty", ["a", "b"])
    with pytest.raises(ValueError, match="needs a ranking"):
        choose_cases(["a"], 1, "uncertainty", None)


def test_random_draw_depends_on_seed_and_round_only():
    pool = [f"case_{i:02d}" for i in range(30)]
    first = choose_cases(pool, 4, "random", seed=1, round_=0)
    assert first == choose_cases(list(reversed(pool)), 4, "random", seed=1, round_=0)  # not on the pool's order
    assert len(set(first)) == 4 and set(first) <= set(pool)
    draws = {tuple(choose_cases(pool, 4, "random", seed=s, round_=r)) for s in range(3) for r in range(3)}
    assert len(draws) > 1  # seeds and rounds change the draw
    # a uniform draw: over many seeds, every case is drawn about 4/30 of the time
    counts = dict.fromkeys(pool, 0)
    for seed in range(600):
        for case in choose_cases(pool, 4, "random", seed=seed, round_=0):
            counts[case] += 1
    assert all(abs(c / 600 - 4 / 30) < 0.06 for c in counts.values())


def test_unknown_strategy_and_negative_count():
    with pytest.raises(ValueError, match="strategy"):
        choose_cases(["a"], 1, "entropy")
    with pytest.raises(ValueError, match="non-negative"):
        choose_cases(["a"], -1, "random")


def test_round_datalist_moves_annotated_cases_to_the_labeled_list():
    full = {
        "name": "phantom",
        "dataset_dir": "/data",
        "training": [{"id": i, "image": f"/data/images/{i}.jpg", "label": f"/data/masks/{i}.jpg"} for i in "abc"],
        "unlabeled": [],
        "validation": [{"id": "v", "image": "/data/images/v.jpg", "label": "/data/masks/v.jpg"}],
        "test": [{"id": "t", "image": "/data/images/t.jpg", "label": "/data/masks/t.jpg"}],
    }
    out = round_datalist(full, ["c", "a"])
    assert [c["id"] for c in out["training"]] == ["a", "c"] and all("label" in c for c in out["training"])
    assert out["unlabeled"] == [{"id": "b", "image": "/data/images/b.jpg"}]  # its label hidden
    assert out["validation"] == full["validation"] and out["test"] == full["test"] and out["name"] == "phantom"
    assert len(full["training"]) == 3  # the oracle is not modified
    with pytest.raises(KeyError, match="v"):
        round_datalist(full, ["v"])  # a validation case is never annotated into training


def test_case_key_is_the_file_name_inference_writes():
    assert case_key({"image": "/data/images/case_007.jpg"}) == "case_007"
    assert case_key({"image": "/data/vol.nii.gz"}) == "vol"


def test_summary_counts_the_shared_start_for_both_strategies():
    rows = [
        {"method": "dfcps", "strategy": "start", "round": 0, "labeled": 4, "seed": 0, "test_mean_dice": 0.2},
        {"method": "dfcps", "strategy": "start", "round": 0, "labeled": 4, "seed": 1, "test_mean_dice": 0.4},
        {"method": "dfcps", "strategy": "uncertainty", "round": 1, "labeled": 8, "seed": 0, "test_mean_dice": 0.5},
        {"method": "dfcps", "strategy": "uncertainty", "round": 1, "labeled": 8, "seed": 1, "test_mean_dice": 0.7},
        {"method": "dfcps", "strategy": "random", "round": 1, "labeled": 8, "seed": 0, "test_mean_dice": 0.3},
        {"method": "dfcps", "strategy": "random", "round": 1, "labeled": 8, "seed": 1, "test_mean_dice": 0.5},
    ]
    summary = active_learning.summarise(rows)
    sd = math.sqrt(0.02)  # sample std of (0.2, 0.4), of (0.5, 0.7), of (0.3, 0.5): 0.141421
    assert summary[("dfcps", "uncertainty", 4)] == pytest.approx((0.3, sd, 2))
    assert summary[("dfcps", "random", 4)] == pytest.approx((0.3, sd, 2))
    assert summary[("dfcps", "uncertainty", 8)] == pytest.approx((0.6, sd, 2))
    assert summary[("dfcps", "random", 8)] == pytest.approx((0.4, sd, 2))
    table = active_learning.markdown(rows, "header")
    assert "| dfcps | 8 | 0.600 ± 0.141 (2) | 0.400 ± 0.141 (2) | +0.200 |" in table
    assert "| dfcps | 4 | 0.300 ± 0.141 (2) | 0.300 ± 0.141 (2) | +0.000 |" in table
    assert len(active_learning.unique_rows(rows + rows[:1])) == len(rows)
