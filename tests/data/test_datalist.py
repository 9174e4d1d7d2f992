"""Tests of common.data.datalist: reproducible splits, labeled subsets, official splits, the JSON round trip."""

from __future__ import annotations

import json
import logging
import random

import pytest

from common.data import evaluation_cases, load_datalist, save_datalist, split_cases


def make_cases(count: int, **extra: object) -> list[dict]:
    return [
        {
            "id": f"case{i:03d}",
            "image": f"/data/images/case{i:03d}.jpg",
            "label": f"/data/masks/case{i:03d}.jpg",
            **extra,
        }
        for i in range(count)
    ]


def ids(cases: list[dict]) -> list[str]:
    return [case["id"] for case in cases]


@pytest.mark.parametrize(
    ("count", "val_fraction", "test_fraction", "expected"),
    [
        (100, 0.2, 0.0, (80, 20, 0)),
        (100, 0.2, 0.1, (70, 20, 10)),
        (647, 0.3, 0.0, (453, 194, 0)),  # BUSI 70/30: round(194.1) = 194
        (10, 0.25, 0.0, (7, 3, 0)),  # 2.5 rounds half up to 3
        (3, 0.1, 0.1, (1, 1, 1)),  # a positive fraction gives at least one case
        (5, 0.0, 0.0, (5, 0, 0)),
    ],
)
def test_split_sizes(count: int, val_fraction: float, test_fraction: float, expected: tuple[int, int, int]) -> None:
    split = split_cases(make_cases(count), val_fraction=val_fraction, test_fraction=test_fraction, seed=41)
    assert (len(split["training"]), len(split["validation"]), len(split["test"])) == expected
    assert split["unlabeled"] == []
    all_ids = ids(split["training"]) + ids(split["validation"]) + ids(split["test"])
    assert sorted(all_ids) == ids(make_cases(count))


def test_split_is_pinned_for_a_seed() -> None:
    """The split of a seed must never change silently: published results refer to it."""
    split = split_cases(make_cases(10), val_fraction=0.3, seed=41)
    assert ids(split["validation"]) == ["case000", "case007", "case009"]


def test_same_split_for_shuffled_input_and_different_for_other_seed() -> None:
    cases = make_cases(50)
    reference = split_cases(cases, val_fraction=0.2, test_fraction=0.2, labeled=10, seed=3)
    shuffled = list(cases)
    random.Random(0).shuffle(shuffled)
    assert split_cases(shuffled, val_fraction=0.2, test_fraction=0.2, labeled=10, seed=3) == reference
    other = split_cases(cases, val_fraction=0.2, test_fraction=0.2, labeled=10, seed=4)
    assert ids(other["validation"]) != ids(reference["validation"])
    for key in ("training", "unlabeled", "validation", "test"):
        assert ids(reference[key]) == sorted(ids(reference[key]))


@pytest.mark.parametrize(("labeled", "num_labeled"), [(8, 8), (0.25, 20), (1.0, 80), (0.001, 1), (80, 80)])
def test_labeled_count(labeled: int | float, num_labeled: int) -> None:
    split = split_cases(make_cases(100), val_fraction=0.2, labeled=labeled, seed=0)
    assert len(split["training"]) == num_labeled
    assert len(split["unlabeled"]) == 80 - num_labeled
    assert all("label" in case for case in split["training"])
    assert all("label" not in case and "image" in case for case in split["unlabeled"])


def test_labeled_subsets_are_nested_and_do_not_move_the_split() -> None:
    small = split_cases(make_cases(100), labeled=8, seed=7)
    large = split_cases(make_cases(100), labeled=16, seed=7)
    everything = split_cases(make_cases(100), seed=7)
    assert set(ids(small["training"])) < set(ids(large["training"]))
    assert small["validation"] == large["validation"] == everything["validation"]
    assert sorted(ids(small["training"]) + ids(small["unlabeled"])) == ids(everything["training"])


def official_cases(split: str, prefix: str, count: int) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "image": f"{prefix}{i}.jpg", "label": f"{prefix}{i}.png", "official_split": split}
        for i in range(count)
    ]


def test_official_held_out_splits_replace_the_fractions() -> None:
    cases = make_cases(20, official_split="training") + official_cases("validation", "val", 4)
    cases += official_cases("test", "test", 3) + [
        {"id": f"free{i}", "image": f"f{i}.jpg", "label": f"f{i}.png"} for i in range(10)
    ]
    split = split_cases(cases, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert ids(split["validation"]) == [f"val{i}" for i in range(4)]
    assert ids(split["test"]) == [f"test{i}" for i in range(3)]
    assert len(split["training"]) == 30
    assert all("official_split" not in case for key in split for case in split[key])

    ignored = split_cases(cases, val_fraction=0.2, test_fraction=0.1, seed=0, use_official_split=False)
    assert (len(ignored["training"]), len(ignored["validation"]), len(ignored["test"])) == (26, 7, 4)


def test_a_missing_official_split_is_drawn_from_the_training_cases() -> None:
    """ISBI 2016: official training and test folders, no validation: validation comes from the training cases."""
    cases = make_cases(900, official_split="training") + official_cases("test", "test", 379)
    split = split_cases(cases, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert (len(split["training"]), len(split["validation"]), len(split["test"])) == (720, 180, 379)
    assert all(case["id"].startswith("case") for case in split["validation"])


def test_extra_keys_are_kept() -> None:
    split = split_cases(make_cases(10, category="benign"), labeled=2, seed=0)
    assert all(case["category"] == "benign" for key in split for case in split[key])


def test_an_official_validation_split_alone_leaves_the_test_fraction_to_the_other_cases() -> None:
    """UG-MCL's train.txt + val.txt without test.txt: the test cases are drawn from the officially training ones."""
    cases = make_cases(40, official_split="training") + official_cases("validation", "val", 5)
    split = split_cases(cases, val_fraction=0.1, test_fraction=0.2, seed=1337)
    assert ids(split["validation"]) == [f"val{i}" for i in range(5)]
    assert len(split["test"]) == 8  # round(0.2 * 40): the fraction counts among the 40 cases not held out
    assert len(split["training"]) == 32
    assert all(case["id"].startswith("case") for case in split["test"])


def key_sets(split: dict) -> dict[str, set[str]]:
    return {key: set(ids(split[key])) for key in ("training", "unlabeled", "validation", "test")}


@pytest.mark.parametrize(
    "cases",
    [
        make_cases(647),
        make_cases(20, official_split="training") + official_cases("test", "test", 3),
        make_cases(20, official_split="training") + official_cases("validation", "val", 3),
    ],
)
def test_the_four_lists_are_disjoint_and_the_test_list_is_never_validation(cases: list[dict]) -> None:
    split = split_cases(cases, val_fraction=0.3, test_fraction=0.2, labeled=0.5, seed=41)
    sets = key_sets(split)
    assert sets["test"] and sets["validation"]
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not sets[first] & sets[second], (first, second)
    assert set().union(*sets.values()) == set(ids(cases))


def test_copying_validation_into_test_is_no_longer_an_option() -> None:
    """The old ``test_from_validation`` switch reported on the selection set under the name "test"."""
    with pytest.raises(TypeError, match="test_from_validation"):
        split_cases(make_cases(10), val_fraction=0.3, test_from_validation=True)  # type: ignore[call-arg]


def test_evaluation_cases_returns_the_test_list() -> None:
    split = split_cases(make_cases(10), val_fraction=0.2, test_fraction=0.2, seed=0)
    cases = evaluation_cases(split)
    assert cases == split["test"] and cases is not split["test"]
    assert len(cases) == 2
    assert not set(ids(cases)) & set(ids(split["validation"]))


def test_evaluation_refuses_an_empty_test_list() -> None:
    """ASE-Net's old ``test_fraction: 0.0`` on a layout without an official test list."""
    split = split_cases(make_cases(10), val_fraction=0.2, test_fraction=0.0, seed=0)
    with pytest.raises(ValueError, match=r"'test' list is empty.*test_fraction > 0"):
        evaluation_cases(split)
    with pytest.raises(ValueError, match="'test' list is empty"):
        evaluation_cases({"training": split["training"]})


def test_evaluation_refuses_a_test_list_that_is_the_validation_list() -> None:
    """CMUNeXt's old ``test_from_validation: true`` datalist: "test" was a copy of the validation cases."""
    split = split_cases(make_cases(10), val_fraction=0.3, seed=41)
    split["test"] = [dict(case) for case in split["validation"]]
    with pytest.raises(ValueError, match="3 test case"):
        evaluation_cases(split)
    hand_written = {"training": [{"image": "/d/a.png", "label": "/d/a_m.png"}], "test": [{"image": "/d/a.png"}]}
    with pytest.raises(ValueError, match="1 test case"):  # no ids: the image path identifies the case
        evaluation_cases(hand_written)


def test_evaluation_of_the_validation_split_is_allowed_and_says_what_it_is(caplog) -> None:
    split = split_cases(make_cases(10), val_fraction=0.3, seed=41)
    with caplog.at_level(logging.WARNING, logger="common.data"):
        assert evaluation_cases(split, "validation") == split["validation"]
    assert "selected the checkpoint" in caplog.text
    with pytest.raises(ValueError, match="held-out split"):
        evaluation_cases(split, "training")


@pytest.mark.parametrize(
    ("cases", "arguments", "message"),
    [
        ([], {}, "no cases"),
        (make_cases(3) + make_cases(1), {}, "duplicate case ids"),
        ([{"image": "a.jpg"}], {}, "no 'id'"),
        (make_cases(10), {"labeled": 9}, "more labeled cases than the 8 training cases"),
        (make_cases(10), {"labeled": 0}, "at least 1"),
        (make_cases(10), {"labeled": 1.5}, r"\(0, 1\]"),
        (make_cases(10), {"labeled": True}, "labeled must be"),
        (make_cases(10), {"val_fraction": 0.6, "test_fraction": 0.4}, "below 1"),
        (make_cases(10), {"val_fraction": -0.1}, r"val_fraction must be a number in \[0, 1\)"),
        (make_cases(10), {"test_fraction": 1.0}, "test_fraction"),
        (make_cases(2, official_split="holdout"), {}, "official_split must be one of"),
        (make_cases(2, official_split="validation"), {}, "no training case left"),
        (make_cases(2), {"val_fraction": 0.5, "test_fraction": 0.4}, "no training case left"),
    ],
)
def test_impossible_requests_raise(cases: list[dict], arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_cases(cases, **arguments)


def test_datalist_round_trip(tmp_path) -> None:
    dataset_dir = tmp_path / "dataset"
    cases = [
        {"id": "a", "image": str(dataset_dir / "images" / "a.jpg"), "label": str(dataset_dir / "masks" / "a.jpg")},
        {
            "id": "b",
            "image": str(dataset_dir / "images" / "b.jpg"),
            "label": [str(dataset_dir / "m" / "b.png"), str(dataset_dir / "m" / "b_1.png")],
        },
        {"id": "c", "image": str(dataset_dir / "images" / "c.jpg"), "label": str(dataset_dir / "masks" / "c.jpg")},
    ]
    split = split_cases(cases, val_fraction=0.34, labeled=1, seed=1)
    datalist = {
        "name": "demo",
        "layout": "kvasir_seg",
        "dataset_dir": str(dataset_dir),
        "seed": 1,
        "split": {"labeled": 1},
        **split,
    }
    output = save_datalist(datalist, tmp_path / "nested" / "folder" / "datalist.json")
    assert output == tmp_path / "nested" / "folder" / "datalist.json"
    assert sorted(path.name for path in output.parent.iterdir()) == ["datalist.json"]  # no temporary file left

    on_disk = json.loads(output.read_text())
    stored_paths = [case["image"] for key in ("training", "unlabeled", "validation") for case in on_disk[key]]
    assert sorted(stored_paths) == ["images/a.jpg", "images/b.jpg", "images/c.jpg"]
    assert on_disk["dataset_dir"] == str(dataset_dir)

    loaded = load_datalist(output)
    assert loaded == datalist
    assert len(loaded["training"]) == 1 and len(loaded["unlabeled"]) == 1 and len(loaded["validation"]) == 1


def test_paths_outside_dataset_dir_stay_absolute(tmp_path) -> None:
    datalist = {
        "dataset_dir": str(tmp_path / "d"),
        "training": [{"id": "x", "image": "/elsewhere/x.png", "label": "/elsewhere/y.png"}],
    }
    on_disk = json.loads(save_datalist(datalist, tmp_path / "list.json").read_text())
    assert on_disk["training"][0]["image"] == "/elsewhere/x.png"
    assert load_datalist(tmp_path / "list.json")["training"][0]["label"] == "/elsewhere/y.png"


def test_load_resolves_relative_or_absent_dataset_dir(tmp_path) -> None:
    (tmp_path / "list.json").write_text(json.dumps({"training": [{"image": "i/a.png", "label": "m/a.png"}]}))
    loaded = load_datalist(tmp_path / "list.json")
    assert loaded["training"][0]["image"] == str(tmp_path / "i" / "a.png")
    assert loaded["unlabeled"] == loaded["validation"] == loaded["test"] == []
    (tmp_path / "rel.json").write_text(
        json.dumps({"dataset_dir": "data", "training": [{"image": "a.png", "label": "b.png"}]})
    )
    assert load_datalist(tmp_path / "rel.json")["training"][0]["label"] == str(tmp_path / "data" / "b.png")


def test_load_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_datalist(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        load_datalist(broken)
    no_training = tmp_path / "no_training.json"
    no_training.write_text(json.dumps({"dataset_dir": "/x", "validation": []}))
    with pytest.raises(ValueError, match="no_training.json: missing required key 'training'"):
        load_datalist(no_training)
    no_label = tmp_path / "no_label.json"
    no_label.write_text(json.dumps({"training": [{"image": "a.png"}]}))
    with pytest.raises(ValueError, match=r"no_label.json: training\[0\] must be an object with keys"):
        load_datalist(no_label)
    with pytest.raises(ValueError, match="dataset_dir"):
        save_datalist({"training": []}, tmp_path / "x.json")
