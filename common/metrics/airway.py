"""Airway segmentation metrics: overlap, tree length and branch detection, as in the ATM'22 / DMGSA evaluation.

For one case with a binary prediction ``P`` and truth ``G`` (the logic of the public DMGSA metric code, shared with
FANN and ATM'22):

1. both are cropped to the truth's bounding box widened by ``crop_margin`` voxels on every side;
2. ``P`` is reduced to its largest 6-connected component; while that component's IoU with ``G`` is below
   ``min_iou`` (0.1) the next largest is taken instead, up to the ``max_rank``-th (5th): the last one examined is
   kept (a prediction whose airway is not its largest blob is still scored on its airway);
3. the truth's skeleton ``S`` (``skimage.morphology.skeletonize``, Lee's 3D thinning) gives the tree length, and the
   truth's tree parsing (:func:`parse_airway_tree`) its branches.

Then, with ``|.|`` the voxel count:

- IoU ``|P n G| / |P u G|``; Dice ``2 |P n G| / (|P| + |G|)``; precision ``|P n G| / |P|`` (0 for an empty ``P``);
- DLR, the detected length ratio (ATM'22: TD, tree length detected) ``|P n S| / |S|``;
- DBR, the detected branch ratio (ATM'22: BD, branches detected): the fraction of the truth's branches whose
  skeleton voxels are at least 80 % inside ``P``;
- leakage ``|P \\ G| / |G|`` (false positives relative to the airway's size); AMR, the airway missing ratio
  ``|G \\ P| / |G|``;
- CCF ``(1 + b^2) IoU DLR / (b^2 IoU + DLR)`` with ``b = 0.9`` (0 when both are 0).

Deviations from the public code, on purpose: its crop keeps no margin above the truth along the first axis and drops
the truth's last slice (exclusive upper bounds); here the margin applies to both ends of every axis and the truth is
never cut. With fewer than ``max_rank`` components the public code fails; here the search stops at the last one.
A case whose truth is empty scores NaN on every metric (MONAI's reductions skip NaN); so do DLR, CCF and DBR when
the truth has no skeleton (Lee's thinning erases some shapes entirely, e.g. a straight bar of even width; the
public code divides by zero there) and DBR when the parsing finds no branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, optional_import
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

skeletonize, _has_skimage = optional_import("skimage.morphology", name="skeletonize")

__all__ = [
    "AIRWAY_METRICS",
    "METRIC_ALIASES",
    "AirwayMetric",
    "AirwayTreeParsing",
    "airway_metrics",
    "bounding_box_crop",
    "canonical_name",
    "ccf_score",
    "detected_branches",
    "parse_airway_tree",
    "select_airway_component",
    "skeleton",
]

AIRWAY_METRICS: tuple[str, ...] = ("iou", "dice", "dlr", "dbr", "precision", "leakage", "amr", "ccf")
"""Canonical metric names, in report order."""

METRIC_ALIASES: dict[str, str] = {"td": "dlr", "bd": "dbr", "fnr": "amr"}
"""ATM'22 names (tree length detected, branches detected) and the public code's name of the AMR."""

CCF_BETA = 0.9
BRANCH_DETECTION_THRESHOLD = 0.8
MIN_BRANCH_VOXELS = 5
_JUNCTION_NEIGHBOURS = 3  # a skeleton voxel with more than 3 voxels in its 3x3x3 sum (itself included) is a junction
_SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


def canonical_name(name: str) -> str:
    """The canonical metric name of ``name`` (case-insensitive; ATM'22 aliases accepted).

    Raises:
        ValueError: unknown name.
    """
    key = name.lower()
    key = METRIC_ALIASES.get(key, key)
    if key not in AIRWAY_METRICS:
        raise ValueError(
            f"unknown airway metric {name!r}; known: {', '.join(AIRWAY_METRICS)} (aliases {METRIC_ALIASES})"
        )
    return key


def bounding_box_crop(truth: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the truth's bounding box widened by ``margin`` voxels on every side (clipped to the volume).

    Args:
        truth: a binary volume with at least one foreground voxel.
        margin: voxels added on both ends of every axis.

    Returns:
        One slice per axis (inclusive of the truth's extreme voxels).
    """
    found = np.nonzero(truth)
    return tuple(
        slice(max(0, int(c.min()) - margin), min(size, int(c.max()) + margin + 1))
        for c, size in zip(found, truth.shape)
    )


def select_airway_component(pred: np.ndarray, truth: np.ndarray, min_iou: float = 0.1, max_rank: int = 5) -> np.ndarray:
    """The prediction's 6-connected component taken as its airway (see the module docstring, step 2).

    Args:
        pred: binary prediction.
        truth: binary truth of the same shape.
        min_iou: the largest component is kept when its IoU with ``truth`` reaches this.
        max_rank: the smaller components examined, at most (the largest is rank 1).

    Returns:
        A bool volume holding one component of ``pred`` (empty when ``pred`` is).
    """
    components, count = ndimage.label(pred, structure=_SIX_CONNECTED)
    if count == 0:
        return np.zeros(pred.shape, dtype=bool)
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(-sizes, kind="stable") + 1  # component labels, largest first
    truth_count = int(truth.sum())
    overlaps = np.bincount(components[truth].ravel(), minlength=count + 1)
    for rank, label in enumerate(order[:max_rank], start=1):
        intersection = int(overlaps[label])
        iou = intersection / max(int(sizes[label - 1]) + truth_count - intersection, 1)
        if iou >= min_iou or rank == min(max_rank, count):
            return components == label
    raise AssertionError("unreachable")  # pragma: no cover


def skeleton(mask: np.ndarray) -> np.ndarray:
    """3D skeleton of a binary volume (``skimage.morphology.skeletonize``, Lee's thinning) as bool.

    Raises:
        ImportError: scikit-image is not installed.
    """
    if not _has_skimage:
        raise ImportError("the airway metrics need scikit-image (pip install scikit-image)")
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    return np.asarray(skeletonize(mask.astype(bool))) > 0


class AirwayTreeParsing:
    """The branches of an airway: its skeleton cut at junctions into segments, and each airway voxel's segment.

    Attributes:
        skeleton: bool skeleton of the parsed mask (its largest 6-connected component, holes filled).
        segments: int32 volume, ``k`` on the skeleton voxels of segment ``k`` (1-based), 0 elsewhere.
        labels: int32 volume, every voxel of the parsed mask labelled with its nearest segment, 0 outside.
        num_branches: number of segments.
    """

    def __init__(self, skeleton: np.ndarray, segments: np.ndarray, labels: np.ndarray, num_branches: int) -> None:
        self.skeleton = skeleton
        self.segments = segments
        self.labels = labels
        self.num_branches = num_branches


def _largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` with its enclosed holes filled."""
    components, count = ndimage.label(mask, structure=_SIX_CONNECTED)
    if count <= 1:
        largest = mask.astype(bool)
    else:
        largest = components == (int(np.argmax(np.bincount(components.ravel())[1:])) + 1)
    filled = largest.copy()
    if largest.any():  # holes lie inside the bounding box: fill there only
        box = bounding_box_crop(largest, 1)
        filled[box] = ndimage.binary_fill_holes(largest[box])
    return filled


def _neighbour_pairs(points: np.ndarray, shape: tuple[int, ...], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` of ``points`` (sorted raster order) such that ``points[j] = points[i] + offset``."""
    linear = np.ravel_multi_index(points.T, shape)
    pairs_i, pairs_j = [], []
    for offset in offsets:
        moved = points + offset
        inside = np.all((moved >= 0) & (moved < np.asarray(shape)), axis=1)
        target = np.ravel_multi_index(moved[inside].T, shape)
        position = np.clip(np.searchsorted(linear, target), 0, len(linear) - 1)
        found = linear[position] == target
        pairs_i.append(np.flatnonzero(inside)[found])
        pairs_j.append(position[found])
    return np.concatenate(pairs_i), np.concatenate(pairs_j)


def parse_airway_tree(mask: np.ndarray, mask_skeleton: np.ndarray | None = None) -> AirwayTreeParsing:
    """Parse an airway mask into branches (the tree parsing of the public DMGSA / ATM'22 metric code).

    Steps: keep the largest 6-connected component with its holes filled; skeletonize it; remove the junction voxels
    (skeleton voxels with more than 3 skeleton voxels in their 3x3x3 neighbourhood, themselves included); label the
    remaining pieces 26-connected and drop those under 5 voxels: these are the branches, numbered in raster order
    of their first voxel (as ``scipy.ndimage.label`` numbers them); finally every voxel of the mask takes the label
    of its nearest branch voxel (Euclidean distance; the public code uses a distance transform's feature map, here
    a k-d tree over the branch voxels gives the same nearest voxel, ties aside, in a fraction of the time).

    Args:
        mask: binary airway volume.
        mask_skeleton: the skeleton of ``mask`` when already computed (used only if ``mask`` needs no change).

    Returns:
        The parsing (see :class:`AirwayTreeParsing`).
    """
    mask = mask.astype(bool)
    parsed = _largest_component_filled(mask)
    if mask_skeleton is not None and np.array_equal(parsed, mask):
        tree_skeleton = mask_skeleton
    else:
        tree_skeleton = skeleton(parsed)
    points = np.argwhere(tree_skeleton)  # raster order
    shape = tree_skeleton.shape
    segments = np.zeros(shape, dtype=np.int32)
    labels = np.zeros(shape, dtype=np.int32)
    if not len(points):
        return AirwayTreeParsing(tree_skeleton, segments, labels, 0)
    offsets = np.argwhere(np.ones((3, 3, 3), dtype=bool)) - 1
    # neighbours in the 3x3x3 block, the voxel itself included: more than 3 means a junction
    first, _ = _neighbour_pairs(points, shape, offsets)
    neighbours = np.bincount(first, minlength=len(points))
    pieces = points[neighbours <= _JUNCTION_NEIGHBOURS]
    count = 0
    if len(pieces):
        half = offsets[[tuple(o) > (0, 0, 0) for o in offsets]]  # 13 directions: each 26-adjacent pair once
        i, j = _neighbour_pairs(pieces, shape, half)
        graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(len(pieces), len(pieces)))
        _, component = connected_components(graph, directed=False)
        # number the components in the raster order of their first voxel, as scipy.ndimage.label does
        _, first_seen = np.unique(component, return_index=True)
        order = np.empty(len(first_seen), dtype=np.int64)
        order[np.argsort(first_seen)] = np.arange(len(first_seen))
        component = order[component]
        sizes = np.bincount(component)
        kept = sizes >= MIN_BRANCH_VOXELS
        relabel = np.zeros(len(sizes), dtype=np.int32)
        relabel[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)
        branch_of_piece = relabel[component]
        count = int(kept.sum())
        on_branch = branch_of_piece > 0
        segments[tuple(pieces[on_branch].T)] = branch_of_piece[on_branch]
    if count:
        branch_points = pieces[on_branch]
        voxels = np.argwhere(parsed)
        _, nearest = cKDTree(branch_points).query(voxels)
        labels[tuple(voxels.T)] = branch_of_piece[on_branch][nearest]
    return AirwayTreeParsing(tree_skeleton, segments, labels, count)


def detected_branches(
    pred: np.ndarray, parsing: AirwayTreeParsing, truth_skeleton: np.ndarray, threshold: float = 0.8
) -> np.ndarray:
    """Which branches of a parsed truth the prediction detects.

    A branch is detected when at least ``threshold`` of the truth-skeleton voxels in its territory (the mask voxels
    labelled with it) lie in the prediction. A branch whose territory holds no skeleton voxel counts as missed.

    Args:
        pred: binary prediction.
        parsing: the truth's parsing.
        truth_skeleton: the truth's skeleton.
        threshold: the detected fraction of a branch's skeleton.

    Returns:
        ``(num_branches,)`` bool, entry ``k - 1`` for branch ``k``.
    """
    n = parsing.num_branches
    on_skeleton = parsing.labels[truth_skeleton]
    total = np.bincount(on_skeleton, minlength=n + 1)[1:]
    hit = np.bincount(parsing.labels[truth_skeleton & pred.astype(bool)], minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.maximum(total, 1) >= threshold, False)


def ccf_score(iou: float, dlr: float, beta: float = CCF_BETA) -> float:
    """``(1 + b^2) IoU DLR / (b^2 IoU + DLR)`` (0 when both are 0)."""
    denominator = beta**2 * iou + dlr
    return float((1 + beta**2) * iou * dlr / denominator) if denominator > 0 else 0.0


def airway_metrics(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    metric_names: Sequence[str] = AIRWAY_METRICS,
    crop_margin: int = 20,
    min_iou: float = 0.1,
    max_rank: int = 5,
    beta: float = CCF_BETA,
    return_details: bool = False,
) -> dict[str, Any]:
    """The airway metrics of one case (see the module docstring); only what the requested names need is computed.

    Args:
        pred: binary prediction, any number of spatial dimensions (3 for CT).
        truth: binary truth of the same shape.
        metric_names: metrics to compute (canonical names or ATM'22 aliases).
        crop_margin: voxels around the truth's bounding box kept by the crop.
        min_iou: see :func:`select_airway_component`.
        max_rank: see :func:`select_airway_component`.
        beta: the CCF's ``b``.
        return_details: also return ``"_crop"`` (the slices), ``"_component"`` (the selected prediction component in
            the crop), ``"_skeleton"`` and ``"_parsing"`` where computed, and ``"_detected"`` (per-branch flags).

    Returns:
        ``{name: value}`` in the order of ``metric_names`` (the names as given), floats in [0, 1] except leakage
        (unbounded); NaN everywhere for an empty truth.

    Raises:
        ValueError: unknown metric name or shape mismatch.
    """
    pred = (pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)) > 0.5
    truth = (truth.detach().cpu().numpy() if isinstance(truth, torch.Tensor) else np.asarray(truth)) > 0.5
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the truth's {truth.shape}")
    wanted = {name: canonical_name(name) for name in metric_names}
    needed = set(wanted.values())
    if not truth.any():
        return {name: float("nan") for name in wanted}
    crop = bounding_box_crop(truth, crop_margin)
    truth, pred = truth[crop], pred[crop]
    component = select_airway_component(pred, truth, min_iou=min_iou, max_rank=max_rank)

    values: dict[str, float] = {}
    p, g = int(component.sum()), int(truth.sum())
    tp = int(np.count_nonzero(component & truth))
    values["iou"] = tp / (p + g - tp)
    values["dice"] = 2 * tp / (p + g)
    values["precision"] = tp / p if p else 0.0
    values["leakage"] = (p - tp) / g
    values["amr"] = (g - tp) / g
    details: dict[str, Any] = {"_crop": crop, "_component": component}
    if needed & {"dlr", "ccf", "dbr"}:
        truth_skeleton = skeleton(truth)
        details["_skeleton"] = truth_skeleton
        skeleton_size = int(truth_skeleton.sum())
        if skeleton_size:
            values["dlr"] = np.count_nonzero(component & truth_skeleton) / skeleton_size
            values["ccf"] = ccf_score(values["iou"], values["dlr"], beta)
        else:  # the thinning erased the truth (e.g. a straight bar of even width): no length to detect
            values["dlr"] = values["ccf"] = float("nan")
        if "dbr" in needed:
            parsing = parse_airway_tree(truth, mask_skeleton=truth_skeleton)
            detected = detected_branches(component, parsing, truth_skeleton, BRANCH_DETECTION_THRESHOLD)
            values["dbr"] = float(detected.mean()) if parsing.num_branches else float("nan")
            details.update(_parsing=parsing, _detected=detected)
    result: dict[str, Any] = {name: float(values[key]) for name, key in wanted.items()}
    if return_details:
        result.update(details)
    return result


def _foreground(x: torch.Tensor) -> torch.Tensor:
    """``(C, *spatial)`` one-hot (channel 1 = airway) or ``(1, *spatial)`` binary -> ``(*spatial)`` bool."""
    return (x[1] if x.shape[0] > 1 else x[0]) > 0.5


class AirwayMetric(CumulativeIterationMetric):
    """Airway metrics per case (IoU, Dice, DLR/TD, DBR/BD, precision, leakage, AMR, CCF) as a MONAI metric.

    Inputs follow MONAI's convention: ``y_pred`` and ``y`` are batch-first ``(B, C, *spatial)`` tensors (or lists of
    channel-first tensors) holding either one binary channel or a one-hot encoding whose channel 1 is the airway.
    Each case is scored on the CPU with :func:`airway_metrics`; the expensive steps (skeleton, tree parsing) run once
    per case whatever the number of metrics requested.

    Args:
        metric_name: one name or several (see :data:`AIRWAY_METRICS`; ``"td"``/``"bd"`` are accepted).
        crop_margin: voxels kept around the truth's bounding box.
        min_iou: see :func:`select_airway_component`.
        max_rank: see :func:`select_airway_component`.
        beta: the CCF's ``b``.
        reduction: MONAI reduction over cases (NaN cases skipped), default mean.
        get_not_nans: also return the number of cases that were not NaN.

    Example::

        metric = AirwayMetric(metric_name=["dlr", "dbr"])
        metric(y_pred=pred_onehot, y=label_onehot)
        dlr, dbr = metric.aggregate()
    """

    def __init__(
        self,
        metric_name: str | Sequence[str] = "ccf",
        crop_margin: int = 20,
        min_iou: float = 0.1,
        max_rank: int = 5,
        beta: float = CCF_BETA,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        names = [metric_name] if isinstance(metric_name, str) else list(metric_name)
        if not names:
            raise ValueError("metric_name must name at least one airway metric")
        for name in names:
            canonical_name(name)
        if crop_margin < 0 or max_rank < 1 or not 0 <= min_iou <= 1:
            raise ValueError(f"invalid crop_margin={crop_margin}, max_rank={max_rank} or min_iou={min_iou}")
        self.metric_name = names
        self.crop_margin = crop_margin
        self.min_iou = min_iou
        self.max_rank = max_rank
        self.beta = beta
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Score each case of the batch.

        Args:
            y_pred: ``(B, C, *spatial)`` prediction (binary channel or one-hot).
            y: ``(B, C, *spatial)`` truth.

        Returns:
            ``(B, M)`` float32, one column per requested metric.
        """
        if y_pred.ndim < 3:
            raise ValueError(f"y_pred must be (B, C, *spatial), got shape {tuple(y_pred.shape)}")
        rows = []
        for pred_case, truth_case in zip(y_pred, y):
            scores = airway_metrics(
                _foreground(pred_case),
                _foreground(truth_case),
                self.metric_name,
                crop_margin=self.crop_margin,
                min_iou=self.min_iou,
                max_rank=self.max_rank,
                beta=self.beta,
            )
            rows.append([scores[name] for name in self.metric_name])
        return torch.tensor(rows, dtype=torch.float32, device=y_pred.device)

    def aggregate(  # type: ignore[override]
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | list:
        """Reduce the buffered cases, per metric.

        Args:
            reduction: overrides the constructor's reduction.

        Returns:
            One value per requested metric (a list when several names were given); with ``get_not_nans``, each
            value is a ``(value, not_nans)`` pair.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor")
        results = []
        for column in range(data.shape[1]):
            value, not_nans = do_metric_reduction(data[:, column : column + 1].clone(), reduction or self.reduction)
            results.append((value, not_nans) if self.get_not_nans else value)
        return results[0] if len(results) == 1 else results

    def buffer_columns(self) -> Mapping[str, torch.Tensor]:
        """The per-case values of each metric: ``{name: (N, 1) tensor}`` (gathered across processes)."""
        data = self.get_buffer()
        return {name: data[:, i : i + 1] for i, name in enumerate(self.metric_name)}
