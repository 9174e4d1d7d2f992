"""Input checks on a data set's files before training: every problem is found and reported at once.

A broken file found in epoch 37 costs a day; found here it costs a second. :func:`check_cases` reads every image
and label file of the cases (read-only: it never writes, renames or touches a file) and raises one
:class:`DataValidationError` that lists every problem, one ``<file path>: <problem>`` line each.

:func:`check_intensities` runs a few cases through the bundle's own loading and intensity normalisation and stops
when the normalisation flattens an image (an HU window applied to MRI turns a volume into a constant, and training
then learns nothing without a word).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from common.data.io import read_array, spatial_shape

__all__ = [
    "DataValidationError",
    "IntensityCheckError",
    "check_cases",
    "check_intensities",
    "MAX_REPORTED_PROBLEMS",
    "MAX_FLAT_FRACTION",
    "MIN_NORMALIZED_STD",
]

logger = logging.getLogger("common.data")

MAX_REPORTED_PROBLEMS = 50
"""Problems listed in a :class:`DataValidationError` message; the rest are counted."""

_MAX_LISTED_VALUES = 8


class DataValidationError(ValueError):
    """The input files have problems; ``problems`` holds one ``<file path>: <problem>`` line per problem.

    Args:
        problems: every problem found, one line each.
    """

    # printed as the last lines of a bundle run, without the traceback (common.bundle.install_error_hook)
    user_facing = True

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_REPORTED_PROBLEMS]
        lines = [f"{len(self.problems)} problem(s) found in the input files:", *shown]
        if len(self.problems) > len(shown):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        super().__init__("\n".join(lines))


def _as_paths(value: Any) -> list[str]:
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(item) for item in value]


def _describe_values(values: np.ndarray) -> str:
    listed = ", ".join(str(value) for value in values[:_MAX_LISTED_VALUES].tolist())
    more = f", ... ({len(values)} values)" if len(values) > _MAX_LISTED_VALUES else ""
    return listed + more


def _read(path: str, problems: list[str], h5_dataset: str = "image") -> np.ndarray | None:
    """Read ``path`` fully (``h5_dataset`` of an HDF5 file); on failure append its problem line and return None."""
    if not os.path.exists(path):
        problems.append(f"{path}: missing file")
        return None
    if os.path.isdir(path):
        problems.append(f"{path}: is a folder, expected an image file")
        return None
    if os.path.getsize(path) == 0:
        problems.append(f"{path}: empty file (0 bytes)")
        return None
    try:
        return read_array(path, h5_dataset=h5_dataset)
    except (OSError, ValueError) as error:
        problems.append(f"{path}: unreadable or corrupt image ({error})")
        return None


def _check_finite(path: str, array: np.ndarray, problems: list[str]) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array)
    if not finite.all():
        num_nan = int(np.isnan(array).sum())
        num_inf = int(array.size - finite.sum() - num_nan)
        problems.append(f"{path}: non-finite intensities ({num_nan} NaN, {num_inf} inf)")


def _check_label_values(path: str, array: np.ndarray, label_values: np.ndarray, problems: list[str]) -> None:
    found = np.unique(array)
    unexpected = found[~np.isin(found, label_values)]
    if unexpected.size:
        problems.append(
            f"{path}: mask values outside the allowed set {{{_describe_values(label_values)}}}: "
            f"{_describe_values(unexpected)}"
        )


def check_cases(
    cases: Iterable[Mapping[str, Any]],
    *,
    label_values: Iterable[float] | None = None,
    label_threshold: float | None = None,
    check_label_values: bool = True,
) -> None:
    """Check every image and label file of ``cases`` and report all problems at once.

    Checks, per case: each file exists, is not empty and decodes completely (a truncated JPEG or PNG is caught);
    floating-point images and labels (32-bit TIFF, NIfTI) hold no NaN or inf; each label file has the image's
    spatial size (``(H, W)`` for 2D files, ``(X, Y, Z)`` for NIfTI and HDF5); label values lie in ``label_values``. A
    label may be a list of files (e.g. BUSI's extra masks): each file is checked. An HDF5 file (LA layout) may be both
    the image and the label of a case: its ``"image"`` dataset is read as the image, its ``"label"`` dataset as the
    label. Files are only read, never modified.

    Args:
        cases: datalist entries with an ``"image"`` path and, for labeled cases, a ``"label"`` path or list of
            paths; an ``"id"`` names the case in problems that concern no file.
        label_values: the raw values a label file may hold (e.g. ``{0, 255}`` for PNG masks); None skips the
            value check, as for lossy JPEG masks whose values spread around 0 and 255.
        label_threshold: raw value at or above which a label pixel is foreground; when given, the number of labels
            with no foreground pixel is logged (empty masks are legitimate, e.g. BUSI's normal cases, but a
            data set where every mask is empty usually means the wrong threshold or the wrong folder).
        check_label_values: False skips the value check even when ``label_values`` is given.

    Raises:
        DataValidationError: at least one problem was found; its message lists every problem, one
            ``<file path>: <problem>`` line each (at most ``MAX_REPORTED_PROBLEMS`` lines, then a count).
    """
    allowed = None if label_values is None or not check_label_values else np.asarray(sorted(set(label_values)))
    problems: list[str] = []
    num_labels = num_empty_labels = 0
    for index, case in enumerate(cases):
        case_name = str(case.get("id", f"case #{index}"))
        if "image" not in case:
            problems.append(f"{case_name}: no 'image' entry in the case")
            continue
        image_path = os.fspath(case["image"])
        image = _read(image_path, problems)
        image_shape = None
        if image is not None:
            _check_finite(image_path, image, problems)
            image_shape = spatial_shape(image_path, image)
        if "label" in case:
            foreground = _check_labels(
                case_name, case["label"], image_path, image_shape, allowed, label_threshold, problems
            )
            if foreground is not None:
                num_labels += 1
                num_empty_labels += not foreground
    if label_threshold is not None and num_labels:
        log = logger.warning if num_empty_labels == num_labels else logger.info
        log("%d of %d labels have no foreground pixel (no value >= %s)", num_empty_labels, num_labels, label_threshold)
        if allowed is None:
            # lossy (JPEG) masks hold values around 0 and 255 (3, 128, 252, ...): they are binarised, not refused
            logger.info(
                "mask values not checked against a label set (lossy masks): a pixel is foreground where its value "
                ">= %s, so stray values from compression are thresholded",
                label_threshold,
            )
    if problems:
        raise DataValidationError(problems)


def _check_labels(
    case_name: str,
    label: Any,
    image_path: str,
    image_shape: tuple[int, ...] | None,
    allowed: np.ndarray | None,
    label_threshold: float | None,
    problems: list[str],
) -> bool | None:
    """Check a case's label file(s), appending problems.

    Returns:
        Whether a label file has a value at or above ``label_threshold``; None when a file could not be read.
    """
    label_paths = _as_paths(label)
    if not label_paths:
        problems.append(f"{case_name}: empty 'label' list")
        return None
    foreground: bool | None = False
    for label_path in label_paths:
        array = _read(label_path, problems, h5_dataset="label")
        if array is None:
            foreground = None
            continue
        _check_finite(label_path, array, problems)
        label_shape = spatial_shape(label_path, array)
        if image_shape is not None and label_shape != image_shape:
            problems.append(
                f"{label_path}: spatial size {label_shape} differs from the image's {image_shape} ({image_path})"
            )
        if allowed is not None:
            _check_label_values(label_path, array, allowed, problems)
        if foreground is not None and label_threshold is not None:
            foreground = foreground or bool(np.any(array >= label_threshold))
    return foreground


MAX_FLAT_FRACTION = 0.95
"""Share of voxels at the normalised image's minimum or maximum (clipped to one value) that counts as flattened."""

MIN_NORMALIZED_STD = 0.01
"""Standard deviation of a normalised image below which it counts as flattened: 1 % of the [0, 1] output range of a
window or percentile scaling, 1 % of a z-score's unit standard deviation. (Ours: these two thresholds are not from a
paper; a well-windowed CT or a scaled MRI volume has a standard deviation of 0.1 to 1 on these scales.)"""

NORMALIZATION_KEYS_HINT = "intensity_normalization (auto | ct_window | mri_zscore | mri_percentile | rgb | none)"
"""The config key that changes the normalisation, named in the error message."""


class IntensityCheckError(DataValidationError):
    """The intensity normalisation flattens some cases; ``problems`` holds one ``<file path>: <problem>`` line each.

    The message ends with one line saying what to do (``hint``), so that it is the last line a bundle run prints.

    Args:
        problems: one line per flattened case.
        hint: what to change.
    """

    def __init__(self, problems: Sequence[str], hint: str = "") -> None:
        super().__init__(problems)
        self.hint = hint
        if hint:
            self.args = (f"{self.args[0]}\n{hint}",)


def _describe_normalization(transforms: Sequence[Any]) -> str:
    descriptions = [transform.describe() for transform in transforms if callable(getattr(transform, "describe", None))]
    if descriptions:
        return "; ".join(descriptions)
    return ", ".join(type(transform).__name__ for transform in transforms) or "no intensity transform"


def _as_array(image: Any) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    # a copy: a later transform may write into the loaded image's memory
    return np.array(image, dtype=np.float64, copy=True)


def check_intensities(
    cases: Iterable[Mapping[str, Any]],
    load: Sequence[Any],
    normalize: Sequence[Any],
    *,
    num_cases: int = 3,
    image_key: str = "image",
    min_std: float = MIN_NORMALIZED_STD,
    max_flat_fraction: float = MAX_FLAT_FRACTION,
) -> None:
    """Run the first ``num_cases`` cases through ``load`` then ``normalize`` and stop if an image is flattened.

    A normalised image is flattened when at least ``max_flat_fraction`` of its voxels sit at its minimum or at its
    maximum (clipped to one value: a window far from the data), or when its standard deviation is below ``min_std``
    (a tiny spread: an MRI volume in ``[0, 1.2]`` through the HU window ``[-200, 250]`` spans ``[0.4442, 0.4471]``).
    The cases are those training starts with, read with the bundle's own transforms, so the check sees exactly what
    the network would see (before the random crops and augmentations).

    Args:
        cases: datalist entries (``"image"`` path, ``"label"`` where labeled), e.g. ``datalist["training"]``.
        load: the bundle's loading transforms (dictionary transforms, e.g. ``LoadImaged`` + ``EnsureChannelFirstd``).
        normalize: the bundle's intensity transforms (e.g. ``[ModalityNormalized(...)]``); a transform with a
            ``describe()`` method is named by it in the message.
        num_cases: how many cases to check, from the start of ``cases``.
        image_key: the key of the image in the transformed dict.
        min_std: standard deviation of the normalised image below which it is flattened.
        max_flat_fraction: share of voxels at the minimum or the maximum at or above which it is flattened.

    Raises:
        IntensityCheckError: some case is flattened; one line per case names its image file, the raw and normalised
            ranges, the normalisation and the config key to change.
    """
    load, normalize = list(load), list(normalize)
    problems: list[str] = []
    for index, case in enumerate(cases):
        if index >= num_cases:
            break
        data: Any = dict(case)
        for transform in load:
            data = transform(data)
        raw = _as_array(data[image_key])
        for transform in normalize:
            data = transform(data)
        image = _as_array(data[image_key])
        if image.size == 0:
            continue
        low, high = float(image.min()), float(image.max())
        tolerance = 1e-6 * max(1.0, high - low)
        flat_fraction = max(float(np.mean(image <= low + tolerance)), float(np.mean(image >= high - tolerance)))
        std = float(image.std())
        if std >= min_std and flat_fraction < max_flat_fraction:
            continue
        path = case.get(image_key, case.get("id", f"case #{index}"))
        problems.append(
            f"{os.fspath(path) if isinstance(path, str | os.PathLike) else path}: the intensity normalisation "
            f"flattens this image: raw [{raw.min():.4g}, {raw.max():.4g}] -> [{low:.4g}, {high:.4g}], std {std:.3g}, "
            f"{100 * flat_fraction:.1f}% of voxels at one value"
        )
    if problems:
        hint = (
            f"Normalisation: {_describe_normalization(normalize)}. Set {NORMALIZATION_KEYS_HINT} or the window to fit "
            "this data (--check_data False skips this check)."
        )
        raise IntensityCheckError(problems, hint)
