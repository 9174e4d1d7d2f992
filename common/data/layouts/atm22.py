"""ATM'22 (Airway Tree Modeling challenge, MICCAI 2022): ``imagesTr/<id>.nii.gz`` + ``labelsTr/<id>.nii.gz``.

The public training release holds chest CT volumes in Hounsfield units (NIfTI, int16) and binary airway labels
(0/1) under the same file name, e.g. ``imagesTr/ATM_001_0000.nii.gz`` and ``labelsTr/ATM_001_0000.nii.gz``. It is
distributed in two batches, ``TrainBatch1/`` and ``TrainBatch2/``, each with its ``imagesTr/`` and ``labelsTr/``;
``dataset_dir`` may point at a batch folder, or at the folder holding the batches (all are read). The validation
images (``imagesVal/``) come without labels: they are inference inputs, not listed here (a phantom written in this
layout puts its last cases there, without labels). Case ``ATM_164_0000`` was
withdrawn by the organisers (a faulty label) and is skipped by default. The data set has no official validation
split of labelled cases: the splitter draws one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from monai.utils import optional_import

from common.data.layouts.base import Layout, check_phantom_volume, list_files

nib, _ = optional_import("nibabel")

__all__ = ["ATM22Layout", "WITHDRAWN_CASES"]

WITHDRAWN_CASES: tuple[str, ...] = ("ATM_164_0000",)
"""Training cases the organisers withdrew."""

_SUFFIXES = (".gz", ".nii")


def _nifti_files(folder: Path) -> dict[str, Path]:
    """``{case id: path}`` of the ``.nii`` / ``.nii.gz`` files of ``folder``."""
    found = {}
    for path in list_files(folder, _SUFFIXES):
        name = path.name
        lower = name.lower()
        if lower.endswith(".nii.gz"):
            found[name[: -len(".nii.gz")]] = path
        elif lower.endswith(".nii"):
            found[name[: -len(".nii")]] = path
    return found


class ATM22Layout(Layout):
    """ATM'22: ``[TrainBatch*/]imagesTr/<id>.nii.gz`` paired by name with ``[TrainBatch*/]labelsTr/<id>.nii.gz``.

    Args:
        exclude: case ids to leave out (default: the withdrawn ``ATM_164_0000``).
    """

    name: ClassVar[str] = "atm22"
    modality: ClassVar[str] = "CT"  # chest CT in Hounsfield units
    description: ClassVar[str] = "imagesTr/*.nii.gz + labelsTr/*.nii.gz with the same file names (NIfTI, HU)"
    label_values: ClassVar[frozenset[int] | None] = frozenset({0, 1})
    label_threshold: ClassVar[float] = 0.5
    phantom_unlabeled_fraction: ClassVar[float] = 0.15
    """Share of a phantom's cases written as unlabelled ``imagesVal/`` images (ATM'22: 50 next to 300 labelled)."""

    def __init__(self, exclude: Sequence[str] = WITHDRAWN_CASES) -> None:
        self.exclude = tuple(exclude)

    def _roots(self, dataset_dir: str | os.PathLike) -> list[Path]:
        folder = Path(dataset_dir)
        expected = f"expected the ATM'22 layout {self.description}"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: {expected}")
        if (folder / "imagesTr").is_dir() or (folder / "labelsTr").is_dir():
            roots = [folder]
        else:
            roots = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "imagesTr").is_dir())
        if not roots:
            raise FileNotFoundError(
                f"{folder / 'imagesTr'} is missing (and no subfolder such as TrainBatch1/ holds one): {expected}"
            )
        for root in roots:
            for sub in ("imagesTr", "labelsTr"):
                if not (root / sub).is_dir():
                    raise FileNotFoundError(f"{root / sub} is missing: {expected}")
        return roots

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the labelled cases of an ATM'22 folder.

        Args:
            dataset_dir: a folder holding ``imagesTr/`` and ``labelsTr/``, or the folder holding ``TrainBatch1/``,
                ``TrainBatch2/``, ...

        Returns:
            ``{"id": <file name without .nii.gz>, "image": ..., "label": ...}`` per case, sorted by id (absolute
            paths).

        Raises:
            FileNotFoundError: ``imagesTr/`` or ``labelsTr/`` is missing, no image is found, images and labels do
                not pair up one to one, or two batches hold the same case.
        """
        images: dict[str, Path] = {}
        labels: dict[str, Path] = {}
        duplicates = []
        for root in self._roots(dataset_dir):
            root = root.absolute()
            for target, sub in ((images, "imagesTr"), (labels, "labelsTr")):
                for case_id, path in _nifti_files(root / sub).items():
                    if case_id in target:
                        duplicates.append(f"{path}: the case is also in {target[case_id]}")
                    target[case_id] = path
        if duplicates:
            raise FileNotFoundError(f"{len(duplicates)} duplicated case(s):\n" + "\n".join(duplicates[:20]))
        for case_id in self.exclude:
            images.pop(case_id, None)
            labels.pop(case_id, None)
        if not images:
            raise FileNotFoundError(
                f"no NIfTI image under {dataset_dir}: expected the ATM'22 layout {self.description}"
            )
        unpaired = [f"{images[c]}: no label of the same name in labelsTr/" for c in sorted(images.keys() - labels)]
        unpaired += [f"{labels[c]}: no image of the same name in imagesTr/" for c in sorted(labels.keys() - images)]
        if unpaired:
            raise FileNotFoundError(f"{len(unpaired)} unpaired file(s) in {dataset_dir}:\n" + "\n".join(unpaired[:20]))
        return [{"id": c, "image": str(images[c]), "label": str(labels[c])} for c in sorted(images)]

    def write_case(
        self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray | torch.Tensor, mask: np.ndarray
    ) -> None:
        """Write ``imagesTr/<case_id>.nii.gz`` (int16 HU) and ``labelsTr/<case_id>.nii.gz`` (uint8 0/1).

        Args:
            dataset_dir: the folder that plays a ``TrainBatch`` folder.
            case_id: the file name without ``.nii.gz``.
            image: ``(X, Y, Z)`` intensities in HU; a ``MetaTensor``'s ``affine`` (voxel to RAS millimetres) is
                written to the header, otherwise the identity (1 mm voxels).
            mask: ``(X, Y, Z)`` bool airway label.

        Raises:
            ValueError: the image is not ``(X, Y, Z)``, or the mask is not bool of the image's shape.
        """
        affine = np.asarray(getattr(image, "affine", np.eye(4)), dtype=np.float64)
        array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        check_phantom_volume(array.astype(np.float32, copy=False), mask)
        root = Path(dataset_dir)
        hu = np.clip(np.rint(array), np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)
        for sub, data in (("imagesTr", hu), ("labelsTr", mask.astype(np.uint8))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            volume = nib.Nifti1Image(data, affine)
            volume.header.set_xyzt_units("mm")
            volume.set_qform(affine, code=1)
            volume.set_sform(affine, code=1)
            nib.save(volume, str(root / sub / f"{case_id}.nii.gz"))

    def write_phantom_splits(self, dataset_dir: str | os.PathLike, case_ids: list[str]) -> None:
        """Turn the phantom's last cases into unlabelled validation images, as ATM'22 ships its ``imagesVal/``.

        The last ``ceil(phantom_unlabeled_fraction * n)`` cases (at least one labelled case stays) have their image
        moved to ``imagesVal/`` and their label removed: inference gets inputs that no training run has seen, and
        :meth:`find_cases` lists only the labelled ones, as for the real data.

        Args:
            dataset_dir: the phantom's folder.
            case_ids: the ids of the written cases, in generation order.
        """
        count = min(len(case_ids) - 1, math.ceil(self.phantom_unlabeled_fraction * len(case_ids)))
        root = Path(dataset_dir)
        for case_id in case_ids[len(case_ids) - count :]:
            (root / "imagesVal").mkdir(exist_ok=True)
            os.replace(root / "imagesTr" / f"{case_id}.nii.gz", root / "imagesVal" / f"{case_id}.nii.gz")
            (root / "labelsTr" / f"{case_id}.nii.gz").unlink()

    def phantom_case_id(self, index: int) -> str:
        """``phantom_000_0000``, ``phantom_001_0000``, ... (ATM'22 ids end with the modality index ``_0000``)."""
        return f"phantom_{index:03d}_0000"
