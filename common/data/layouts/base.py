"""The interface every real-layout adapter implements, and the file-listing helpers they share."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["Layout", "archive_root", "list_files", "check_phantom_case", "check_phantom_volume"]


def archive_root(dataset_dir: str | os.PathLike, archive_folder: str, markers: Sequence[str], expected: str) -> Path:
    """The folder of a data set given as itself or as the folder its archive was unpacked into.

    Args:
        dataset_dir: the user's folder.
        archive_folder: the top folder of the published archive (e.g. ``"Kvasir-SEG"``), looked for inside it.
        markers: subfolders of which one at least marks the data set's own folder; the first is named in the error.
        expected: the layout's description, ending the error messages.

    Returns:
        ``dataset_dir`` when it holds one of ``markers``, else ``dataset_dir / archive_folder`` when that does.

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist, or neither folder holds any of ``markers``.
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: {expected}")
    for candidate in (folder, folder / archive_folder):
        if any((candidate / marker).is_dir() for marker in markers):
            return candidate
    raise FileNotFoundError(
        f"{folder / markers[0]} is missing (and so is {folder / archive_folder / markers[0]}): {expected}, "
        f"in {folder} or in its {archive_folder}/ subfolder"
    )


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files of ``folder`` with one of ``suffixes`` (lower case, any case on disk), sorted by name.

    Hidden files (``.DS_Store``, macOS ``._*`` resource forks) are skipped.

    Args:
        folder: the folder to list (not recursive).
        suffixes: accepted suffixes, e.g. ``(".jpg", ".jpeg")``.

    Returns:
        The matching files, sorted by name.
    """
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes
    )


def check_phantom_case(image: np.ndarray, mask: np.ndarray) -> None:
    """Validate the arrays given to :meth:`Layout.write_case`.

    Args:
        image: expected ``(H, W, 3)`` uint8.
        mask: expected ``(H, W)`` bool.

    Raises:
        ValueError: wrong dtype or shape, or the two sizes differ.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
    if mask.dtype != np.bool_ or mask.shape != image.shape[:2]:
        raise ValueError(
            f"mask must be (H, W) bool matching the image {image.shape[:2]}, got {mask.dtype} {mask.shape}"
        )


def check_phantom_volume(image: np.ndarray, mask: np.ndarray) -> None:
    """Validate the arrays given to :meth:`Layout.write_case` of a 3D layout.

    Args:
        image: expected ``(X, Y, Z)`` float32 intensities.
        mask: expected ``(X, Y, Z)`` bool.

    Raises:
        ValueError: wrong dtype or shape, or the two sizes differ.
    """
    if image.dtype != np.float32 or image.ndim != 3:
        raise ValueError(f"image must be (X, Y, Z) float32, got {image.dtype} {image.shape}")
    if mask.dtype != np.bool_ or mask.shape != image.shape:
        raise ValueError(f"mask must be (X, Y, Z) bool matching the image {image.shape}, got {mask.dtype} {mask.shape}")


class Layout(ABC):
    """A public data set's folder layout: finds its cases, and writes phantom cases in the same files and names.

    Subclasses set the class attributes and implement :meth:`find_cases`, :meth:`write_case` and
    :meth:`phantom_case_id`; they join the registry in ``common.data.layouts`` with ``register_layout``.

    Attributes:
        name: registry name (the ``layout`` value of bundle configs and datalists).
        description: the expected layout in a few words, for error messages.
        label_values: raw values a mask file may hold, or None for lossy (JPEG) masks.
        label_threshold: raw value at or above which a mask pixel is foreground.
        modality: what the image values mean, one of ``common.transforms.MODALITIES``: ``"CT"`` (Hounsfield units),
            ``"MRI"`` (scanner units, no absolute scale) or ``"RGB"`` (8-bit values, colour or grey); a bundle's
            ``intensity_normalization: "auto"`` picks the normalisation from it (HU window, per-volume scaling, /255).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    modality: ClassVar[str]
    label_values: ClassVar[frozenset[int] | None] = frozenset({0, 255})
    label_threshold: ClassVar[float] = 128

    @abstractmethod
    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the data set's cases.

        Args:
            dataset_dir: the data set's folder (each layout documents which folders it accepts).

        Returns:
            One dict per case: ``"id"`` (unique), ``"image"`` (absolute path), ``"label"`` (absolute path, or a
            list of paths whose union is the mask), ``"official_split"`` where the data set defines one, and any
            layout-specific keys; sorted by id.

        Raises:
            FileNotFoundError: the layout is not found in ``dataset_dir``; the message names the missing folder and
                the expected layout.
        """

    @abstractmethod
    def write_case(self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write one case in the layout's exact file formats and names (used for the phantom).

        Args:
            dataset_dir: the data set's folder, as later given to :meth:`find_cases`.
            case_id: the case id as :meth:`find_cases` will report it (see :meth:`phantom_case_id`).
            image: ``(H, W, 3)`` uint8 colour image (2D layouts) or ``(X, Y, Z)`` float32 volume (3D layouts).
            mask: ``(H, W)`` or ``(X, Y, Z)`` bool foreground mask.
        """

    @abstractmethod
    def phantom_case_id(self, index: int) -> str:
        """The id of the ``index``-th phantom case, following the data set's naming convention."""

    def write_phantom_splits(self, dataset_dir: str | os.PathLike, case_ids: list[str]) -> None:
        """Write the data set's own split files for a phantom's cases, once all cases are written.

        Layouts whose public data set ships split files (e.g. the LA benchmark's ``train.list`` / ``test.list``)
        override this, so that a phantom is split the way the real data is; the default writes nothing.

        Args:
            dataset_dir: the data set's folder.
            case_ids: the ids of the phantom's cases, in generation order.
        """
        del dataset_dir, case_ids

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
