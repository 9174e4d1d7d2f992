"""Input checks on a data set's files before training: every problem is found and reported at once.

A broken file found in epoch 37 costs a day; found here it costs a second. :func:`check_cases` reads every image
and label file of the cases (read-only: it never writes, renames or touches a file) and raises one
:class:`DataValidationError` that lists every problem, one ``<file path>: <problem>`` line each.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from common.data.io import read_array, spatial_shape

__all__ = ["DataValidationError", "check_cases", "MAX_REPORTED_PROBLEMS"]

logger = logging.getLogger("common.data")

MAX_REPORTED_PROBLEMS = 50
"""Problems listed in a :class:`DataValidationError` message; the rest are counted."""

_MAX_LISTED_VALUES = 8


class DataValidationError(ValueError):
    """The input files have problems; ``problems`` holds one ``<file path>: <problem>`` line per problem.

    Args:
        problems: every problem found, one line each.
    """

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
