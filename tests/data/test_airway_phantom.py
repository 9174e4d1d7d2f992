"""The airway CT phantom: determinism, Murray's law, exact labels, known branch counts, HU levels and difficulty."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from common.data import AirwayPhantom3D
from common.data.phantoms.airway3d import _segment_distance
from common.metrics import airway_metrics, parse_airway_tree

SMALL = {"shape": (96, 96, 112), "spacing": (2.0, 2.0, 2.0), "trachea_radius": (3.5, 4.5)}


@pytest.fixture(scope="module")
def phantom() -> AirwayPhantom3D:
    return AirwayPhantom3D(num_cases=3, seed=0)


@pytest.fixture(scope="module")
def case0(phantom: AirwayPhantom3D):
    image, label = phantom.generate(0)
    return image, label, phantom.tree(0)


def test_same_case_for_same_seed_and_index_whatever_the_order() -> None:
    forward = [AirwayPhantom3D(num_cases=2, seed=3, **SMALL).generate(i) for i in range(2)]
    backward = [AirwayPhantom3D(num_cases=2, seed=3, **SMALL).generate(i) for i in (1, 0)][::-1]
    for (image_a, label_a), (image_b, label_b) in zip(forward, backward):
        assert np.array_equal(image_a.numpy(), image_b.numpy()) and np.array_equal(label_a, label_b)
    other, _ = AirwayPhantom3D(num_cases=2, seed=4, **SMALL).generate(0)
    assert not np.array_equal(other.numpy(), forward[0][0].numpy())


def test_shapes_types_spacing_and_params(phantom: AirwayPhantom3D, case0) -> None:
    image, label, _ = case0
    assert image.shape == (112, 112, 128) and str(image.dtype) == "torch.float32"
    assert label.dtype == np.bool_ and label.shape == image.shape
    np.testing.assert_allclose(np.diag(np.asarray(image.affine))[:3], [1.75, 1.75, 1.75])
    assert image.meta["branch_count"] == phantom.branch_count(0)
    assert json.loads(json.dumps(phantom.params())) == phantom.params()
    assert phantom.params()["generator"] == "AirwayPhantom3D" and phantom.params()["version"] == 1
    assert 0.002 < label.mean() < 0.02  # airways are a small fraction of the volume


def test_tree_follows_murrays_law_and_only_bifurcates(phantom: AirwayPhantom3D) -> None:
    for index in range(phantom.num_cases):
        tree = phantom.tree(index)
        children: dict[int, list] = {}
        for branch in tree[1:]:
            children.setdefault(branch.parent, []).append(branch)
        assert set(Counter(len(c) for c in children.values())) == {2}  # every split is a bifurcation
        for parent_index, pair in children.items():
            parent = tree[parent_index]
            assert parent.radius**3 == pytest.approx(sum(c.radius**3 for c in pair), rel=1e-9)
            assert all(np.allclose(c.start, parent.end) for c in pair)
            assert all(c.generation == parent.generation + 1 for c in pair)
        terminal = [b.radius for i, b in enumerate(tree) if i not in children]
        assert min(terminal) >= phantom.min_radius
        assert np.median(terminal) <= 2.0  # terminal branches of 1-2 voxels radius
        assert len(tree) >= 25 and max(b.generation for b in tree) >= 5


def test_label_is_exactly_the_union_of_the_lumens(case0) -> None:
    _, label, tree = case0
    points = np.argwhere(np.ones(label.shape, dtype=bool)).astype(float)
    inside = np.zeros(len(points), dtype=bool)
    for branch in tree:
        low = np.minimum(branch.start, branch.end) - branch.radius - 1
        high = np.maximum(branch.start, branch.end) + branch.radius + 1
        near = np.all((points >= low) & (points <= high), axis=1)
        distance = _segment_distance(points[near], np.asarray(branch.start), np.asarray(branch.end))
        inside[np.flatnonzero(near)[distance < branch.radius]] = True
    assert np.array_equal(inside.reshape(label.shape), label)


def test_the_label_alone_is_the_label_of_the_case(phantom: AirwayPhantom3D, case0) -> None:
    assert np.array_equal(phantom.label(0), case0[1])


def test_known_branch_count_matches_the_parsing_of_the_label(phantom: AirwayPhantom3D) -> None:
    """The ATM'22 / DMGSA tree parsing of the exact label finds (almost) the generated branches: a few short
    terminal ones fall under its 5-voxel minimum."""
    for index in range(2):
        _, label = phantom.generate(index)
        known = phantom.branch_count(index)
        found = parse_airway_tree(label).num_branches
        assert 0.85 * known <= found <= known, (index, known, found)


def test_hounsfield_levels(case0) -> None:
    image, label, tree = case0
    image = image.numpy()
    wide = [b for b in tree if b.radius > 3]
    centres = [np.clip(np.round((np.add(b.start, b.end)) / 2).astype(int), 0, 127) for b in wide]
    assert np.mean([image[tuple(c)] for c in centres]) < -950  # wide lumens are air
    from scipy import ndimage

    far = ~ndimage.binary_dilation(label, iterations=6)
    lung = far & (image < -700) & (image > -950)
    assert abs(np.median(image[lung]) - (-850)) < 30  # parenchyma near -850 HU
    wall = ndimage.binary_dilation(label, iterations=1) & ~label
    assert np.median(image[wall]) > np.median(image[lung]) > np.median(image[label])  # walls brighter than lumen
    assert image.min() >= -1024 and image.max() < 400


def test_thin_branches_are_hard_for_a_weak_model(phantom: AirwayPhantom3D) -> None:
    """A threshold at -900 HU (a weak model) finds the trachea and large bronchi but misses many thin branches."""
    for index in range(2):
        image, label = phantom.generate(index)
        scores = airway_metrics(image.numpy() < -900, label, ["dlr", "dbr"])
        assert 0.2 < scores["dbr"] < 0.8 and scores["dlr"] < 0.85, scores
    _, label = phantom.generate(0)
    assert airway_metrics(label, label, ["dbr"])["dbr"] == 1.0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="num_cases"):
        AirwayPhantom3D(num_cases=0)
    with pytest.raises(ValueError, match="shape"):
        AirwayPhantom3D(shape=(16, 64, 64))
    with pytest.raises(ValueError, match="min_radius"):
        AirwayPhantom3D(min_radius=6.0)
    with pytest.raises(IndexError):
        AirwayPhantom3D(num_cases=2).generate(2)
