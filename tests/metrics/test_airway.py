"""Airway metrics on hand-built trees: a straight tube, a Y bifurcation missing a branch, disconnected fragments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.metrics import (
    AIRWAY_METRICS,
    AirwayMetric,
    airway_metrics,
    bounding_box_crop,
    ccf_score,
    parse_airway_tree,
    select_airway_component,
    skeleton,
)


def capsule(shape: tuple[int, int, int], start, end, radius: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius`` of the segment ``start``-``end``."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), axis=-1)
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    t = np.clip(((grid - start) @ axis) / (axis @ axis), 0, 1)
    return np.linalg.norm(grid - (start + t[..., None] * axis), axis=-1) <= radius


SHAPE = (30, 30, 50)


@pytest.fixture(scope="module")
def tube() -> np.ndarray:
    return capsule(SHAPE, (15, 15, 5), (15, 15, 44), 3.0)


@pytest.fixture(scope="module")
def y_tree() -> dict[str, np.ndarray]:
    shape = (44, 30, 60)
    trunk = capsule(shape, (22, 15, 4), (22, 15, 30), 3.0)
    left = capsule(shape, (22, 15, 30), (8, 15, 52), 2.5)
    right = capsule(shape, (22, 15, 30), (36, 15, 52), 2.5)
    return {"trunk": trunk, "left": left, "right": right, "truth": trunk | left | right}


# ----------------------------------------------------------------------------------------------- straight tube
def test_a_perfect_prediction_scores_one_everywhere(tube: np.ndarray) -> None:
    scores = airway_metrics(tube, tube)
    assert list(scores) == list(AIRWAY_METRICS)
    for name in ("iou", "dice", "dlr", "dbr", "precision", "ccf"):
        assert scores[name] == pytest.approx(1.0), name
    assert scores["leakage"] == 0.0 and scores["amr"] == 0.0


def test_half_a_tube(tube: np.ndarray) -> None:
    pred = tube.copy()
    pred[:, :, 25:] = False  # the upper half is missed
    g, p = int(tube.sum()), int(pred.sum())
    tube_skeleton = skeleton(tube)
    scores = airway_metrics(pred, tube)
    assert scores["iou"] == pytest.approx(p / g)
    assert scores["dice"] == pytest.approx(2 * p / (p + g))
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["amr"] == pytest.approx((g - p) / g)
    assert scores["leakage"] == 0.0
    # the skeleton is the tube's centre line: about the lower half of it is detected
    assert scores["dlr"] == pytest.approx(tube_skeleton[:, :, :25].sum() / tube_skeleton.sum())
    assert 0.4 < scores["dlr"] < 0.6
    assert parse_airway_tree(tube).num_branches == 1
    assert scores["dbr"] == 0.0  # one branch, half of its skeleton inside P: below the 80 % rule
    b2 = 0.9**2
    assert scores["ccf"] == pytest.approx(
        (1 + b2) * scores["iou"] * scores["dlr"] / (b2 * scores["iou"] + scores["dlr"])
    )


def test_eighty_percent_rule(tube: np.ndarray) -> None:
    tube_skeleton = skeleton(tube)
    z = np.nonzero(tube_skeleton)[2]
    cut_detected = int(np.quantile(z, 0.85)) + 1  # keeps more than 80 % of the centre line
    cut_missed = int(np.quantile(z, 0.7))  # keeps less
    for cut, expected in ((cut_detected, 1.0), (cut_missed, 0.0)):
        pred = tube.copy()
        pred[:, :, cut:] = False
        kept = tube_skeleton[:, :, :cut].sum() / tube_skeleton.sum()
        assert (kept >= 0.8) == bool(expected)
        assert airway_metrics(pred, tube, ["dbr"])["dbr"] == expected


def test_leakage_and_precision_of_a_dilated_prediction(tube: np.ndarray) -> None:
    from scipy import ndimage

    pred = ndimage.binary_dilation(tube)
    g, p = int(tube.sum()), int(pred.sum())
    scores = airway_metrics(pred, tube)
    assert scores["precision"] == pytest.approx(g / p)
    assert scores["leakage"] == pytest.approx((p - g) / g)
    assert scores["amr"] == 0.0 and scores["dlr"] == 1.0 and scores["iou"] == pytest.approx(g / p)


# ------------------------------------------------------------------------------------------------ Y bifurcation
def test_y_parsing_finds_three_branches(y_tree: dict[str, np.ndarray]) -> None:
    parsing = parse_airway_tree(y_tree["truth"])
    assert parsing.num_branches == 3
    # every truth voxel belongs to one of the three branches, and each branch's territory is where its tube is
    assert set(np.unique(parsing.labels[y_tree["truth"]])) == {1, 2, 3}
    for part in ("trunk", "left", "right"):
        only = y_tree[part] & ~(y_tree["truth"] & ~y_tree[part])
        labels, counts = np.unique(parsing.labels[only], return_counts=True)
        assert counts.max() / counts.sum() > 0.8, part  # the tube's own voxels are mostly one territory


def test_y_with_one_branch_missing_gives_dbr_two_thirds(y_tree: dict[str, np.ndarray]) -> None:
    """Worked out: the parsing gives 3 branches (trunk, left, right); the prediction holds the trunk and the left
    branch entirely, and of the right branch only the few centre-line voxels inside the trunk's tube near the
    junction: 2 of 3 branches reach the 80 % rule."""
    pred = y_tree["trunk"] | y_tree["left"]
    truth = y_tree["truth"]
    result = airway_metrics(pred, truth, return_details=True)
    assert result["_parsing"].num_branches == 3
    assert result["_detected"].sum() == 2
    assert result["dbr"] == pytest.approx(2 / 3)
    truth_skeleton = skeleton(truth)
    assert result["dlr"] == pytest.approx((pred & truth_skeleton).sum() / truth_skeleton.sum())
    assert 0.5 < result["dlr"] < 0.85
    assert result["precision"] == 1.0
    assert result["amr"] == pytest.approx((truth & ~pred).sum() / truth.sum())


# -------------------------------------------------------------------------------------------------- fragments
def test_a_small_disconnected_fragment_is_ignored(tube: np.ndarray) -> None:
    pred = tube.copy()
    pred[2:5, 2:5, 10:13] = True  # 27 voxels, far from the tube, inside the crop
    assert airway_metrics(pred, tube) == airway_metrics(tube, tube)


def test_a_larger_fragment_is_skipped_because_its_iou_is_below_0_1(tube: np.ndarray) -> None:
    pred = tube.copy()
    blob = np.zeros_like(tube)
    blob[0:8, 0:8, 5:45] = True  # 2560 voxels, larger than the tube (~1200), not touching it
    assert blob.sum() > tube.sum() and not (blob & tube).any()
    pred |= blob
    component = select_airway_component(pred, tube)
    assert np.array_equal(component, tube)
    assert airway_metrics(pred, tube)["iou"] == pytest.approx(1.0)


def test_the_search_stops_at_the_fifth_component(tube: np.ndarray) -> None:
    pred = np.zeros((30, 30, 50), dtype=bool)
    pred[14:17, 14:17, 20:23] = True  # a bit of the airway: the smallest component
    blobs = []
    for i in range(5):  # five blobs larger than it, none touching the truth: ranks 1-5
        blob = np.zeros_like(pred)
        blob[1 + 6 * i : 5 + 6 * i, 26:29, 2 : 10 + i] = True
        blobs.append(blob)
        pred |= blob
    component = select_airway_component(pred, tube, min_iou=0.1, max_rank=5)
    # the 5th largest is the first blob (the smallest of the five); the airway piece (6th) is never examined
    assert np.array_equal(component, blobs[0])
    assert airway_metrics(pred, tube)["iou"] == 0.0
    assert np.array_equal(select_airway_component(pred, tube, max_rank=6), pred & tube)


def test_empty_prediction_and_empty_truth(tube: np.ndarray) -> None:
    scores = airway_metrics(np.zeros_like(tube), tube)
    assert scores["iou"] == 0 and scores["dlr"] == 0 and scores["dbr"] == 0 and scores["ccf"] == 0
    assert scores["precision"] == 0 and scores["amr"] == 1 and scores["leakage"] == 0
    assert all(math.isnan(v) for v in airway_metrics(tube, np.zeros_like(tube)).values())


def test_prediction_outside_the_crop_does_not_count(tube: np.ndarray) -> None:
    crop = bounding_box_crop(tube, 2)
    assert crop == (slice(10, 21), slice(10, 21), slice(0, 50))  # the rounded caps reach z = 2 and z = 47
    pred = tube.copy()
    pred[0:3, :, 5:45] = True  # a slab touching... nothing: beyond the margin of 2 along the first axis
    assert airway_metrics(pred, tube, crop_margin=2)["leakage"] == 0.0
    assert airway_metrics(pred, tube, crop_margin=20)["leakage"] == 0.0  # disconnected: not the airway component
    pred[3:13, 15, 20] = True  # now the slab is connected to the tube by a bridge
    assert airway_metrics(pred, tube, crop_margin=2)["leakage"] > 0
    assert airway_metrics(pred, tube, crop_margin=20)["leakage"] > airway_metrics(pred, tube, crop_margin=2)["leakage"]


def test_ccf_score_by_hand() -> None:
    assert ccf_score(0.8, 0.9) == pytest.approx(1.81 * 0.72 / (0.81 * 0.8 + 0.9))
    assert ccf_score(0.0, 0.0) == 0.0
    assert ccf_score(1.0, 1.0) == pytest.approx(1.0)


def test_metric_names_and_aliases(tube: np.ndarray) -> None:
    scores = airway_metrics(tube, tube, ["TD", "bd", "fnr"])
    assert scores == {"TD": 1.0, "bd": 1.0, "fnr": 0.0}
    with pytest.raises(ValueError, match="unknown airway metric 'hd95'"):
        airway_metrics(tube, tube, ["hd95"])
    with pytest.raises(ValueError, match="differs"):
        airway_metrics(tube[:-1], tube)


# ------------------------------------------------------------------------------------------ the MONAI metric
def test_airway_metric_accumulates_cases_and_reduces_per_metric(tube: np.ndarray) -> None:
    half = tube.copy()
    half[:, :, 25:] = False
    truth = torch.from_numpy(tube)[None, None].float()
    onehot = lambda m: torch.stack([~m, m]).float()[None]  # noqa: E731
    metric = AirwayMetric(metric_name=["iou", "dbr", "td"])
    metric(y_pred=onehot(torch.from_numpy(tube)), y=truth)  # one-hot prediction, binary truth
    metric(y_pred=torch.from_numpy(half)[None, None].float(), y=onehot(torch.from_numpy(tube)))
    iou, dbr, td = metric.aggregate()
    expected_half = airway_metrics(half, tube, ["iou", "dbr", "dlr"])
    assert iou.item() == pytest.approx((1 + expected_half["iou"]) / 2)
    assert dbr.item() == pytest.approx(0.5)
    assert td.item() == pytest.approx((1 + expected_half["dlr"]) / 2)
    assert metric.get_buffer().shape == (2, 3)
    metric(y_pred=truth, y=torch.zeros_like(truth))  # an empty truth is NaN and skipped by the mean
    assert metric.aggregate()[0].item() == pytest.approx(iou.item())
    metric.reset()
    with pytest.raises(ValueError, match="at least one"):
        AirwayMetric(metric_name=[])


def test_a_truth_without_skeleton_has_no_length_to_detect() -> None:
    bar = np.zeros((24, 24, 40), dtype=bool)
    bar[10:14, 10:14, 4:36] = True  # Lee's thinning erases a straight bar of even width
    assert not skeleton(bar).any()
    scores = airway_metrics(bar, bar)
    assert scores["iou"] == 1.0
    assert math.isnan(scores["dlr"]) and math.isnan(scores["ccf"]) and math.isnan(scores["dbr"])


def reference_parsing(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """The public code's parsing written with dense scipy operations (convolution, labelling, distance transform)."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 1))
    largest = components == np.argmax(np.bincount(components.ravel())[1:]) + 1 if count > 1 else mask
    largest = ndimage.binary_fill_holes(largest)
    tree_skeleton = skeleton(largest).astype(np.uint8)
    neighbours = ndimage.convolve(tree_skeleton, np.ones((3, 3, 3), dtype=np.uint8), mode="constant") * tree_skeleton
    pieces = tree_skeleton.copy()
    pieces[neighbours > 3] = 0
    segments, count = ndimage.label(pieces, structure=ndimage.generate_binary_structure(3, 3))
    for index in range(1, count + 1):
        if (segments == index).sum() < 5:
            pieces[segments == index] = 0
    segments, count = ndimage.label(pieces, structure=ndimage.generate_binary_structure(3, 3))
    _, indices = ndimage.distance_transform_edt(1 - pieces, return_indices=True)
    labels = segments[tuple(indices)] * largest
    return count, segments, labels


def test_parsing_matches_the_dense_reference_on_a_phantom_tree() -> None:
    from common.data import AirwayPhantom3D

    label = AirwayPhantom3D(num_cases=1, seed=5).label(0)
    count, segments, labels = reference_parsing(label)
    parsing = parse_airway_tree(label)
    assert parsing.num_branches == count > 20
    assert np.array_equal(parsing.segments, segments)  # same branches, same numbering
    differ = np.argwhere(label & (parsing.labels != labels))
    assert len(differ) < 0.02 * label.sum()
    # where the two disagree, both labels hold a branch voxel at the smallest distance: ties, broken differently
    from scipy.spatial import cKDTree

    nearest, _ = cKDTree(np.argwhere(segments > 0)).query(differ)
    for labelling in (parsing.labels, labels):
        chosen = labelling[tuple(differ.T)]
        for branch in np.unique(chosen):
            at = chosen == branch
            distance, _ = cKDTree(np.argwhere(segments == branch)).query(differ[at])
            np.testing.assert_allclose(distance, nearest[at])
