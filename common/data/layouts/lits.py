"""LiTS (Liver Tumor Segmentation Challenge, ISBI 2017 / MICCAI 2017) training data as it is distributed.

The 131 contrast-enhanced abdominal CT volumes come in two archives, each unpacked to its own folder::

    LiTS/
        Training Batch 1/               volumes 0-27
            volume-0.nii                CT in Hounsfield units (int16 or float), uncompressed NIfTI
            segmentation-0.nii          labels: 0 background, 1 liver, 2 tumour
            ...
        Training Batch 2/               volumes 28-130
            volume-28.nii
            segmentation-28.nii
            ...
        test_num.txt                    optional: volume numbers of the test split, one per line

``dataset_dir`` may point at ``LiTS/`` (whose sub-folders hold the volumes) or at a folder holding
``volume-N.nii[.gz]`` files directly (many mirrors flatten the two batches). Each ``volume-N`` is paired with
``segmentation-N`` of the same folder.

ASE-Net segments the liver: tumour voxels are liver, so the foreground is ``label >= 1`` (``label_threshold = 1``).
Its official repository splits the 131 volumes 121 / 10 by volume number and ships the ten test numbers as
``file_name/lits_file/test_num.txt``; copy that file beside the batch folders (or name it ``test.txt`` /
``test.list``) and those volumes get the official ``"test"`` split, all others ``"training"``. Without it every
volume is split by the bundle's fractions.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from monai.utils import optional_import

from common.data.layouts.base import Layout, check_phantom_volume

# optional: a bundle exported without NIfTI layouts in use runs without nibabel (common.bundle.vendor)
nib, _ = optional_import("nibabel")

__all__ = ["ASENET_TEST_VOLUMES", "LiTSLayout", "phantom_hounsfield"]

ASENET_TEST_VOLUMES: tuple[int, ...] = (84, 61, 75, 63, 48, 14, 39, 36, 67, 17)
"""The ten test volumes of ASE-Net's LiTS split (``file_name/lits_file/test_num.txt`` of the official code)."""

_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_TEST_FILES = ("test_num.txt", "test.txt", "test.list")
_BATCH_FOLDERS = ("Training Batch 1", "Training Batch 2")
_FIRST_VOLUME_OF_BATCH_2 = 28
# The phantom's z-scored intensities become HU: tissue (z ~ -0.3) near 30 HU, the organ (z ~ 2) near 100 HU, as
# soft tissue and contrast-enhanced liver are; the same HU window then reads phantom and real CT.
_PHANTOM_HU_OFFSET = 40.0
_PHANTOM_HU_SCALE = 30.0


def phantom_hounsfield(image: np.ndarray) -> np.ndarray:
    """Map a z-scored phantom volume to int16 Hounsfield units: ``round(40 + 30 z)`` clipped to ``[-1024, 3071]``.

    Args:
        image: ``(X, Y, Z)`` float32 z-scored intensities.

    Returns:
        ``(X, Y, Z)`` int16 HU values, as LiTS stores its CT.
    """
    hounsfield = np.rint(_PHANTOM_HU_OFFSET + _PHANTOM_HU_SCALE * image.astype(np.float64))
    return np.clip(hounsfield, -1024, 3071).astype(np.int16)


class LiTSLayout(Layout):
    """LiTS layout: ``[LiTS/<batch folder>/]volume-N.nii`` + ``segmentation-N.nii`` (+ optional ``test_num.txt``).

    Args:
        spacing: voxel size in millimetres written into phantom headers by :meth:`write_case` (real LiTS volumes
            carry their own, 0.5-1.0 mm in-plane and 0.7-5 mm between slices).
    """

    name: ClassVar[str] = "lits"
    modality: ClassVar[str] = "CT"  # abdominal CT in Hounsfield units
    description: ClassVar[str] = "[Training Batch 1|2/]volume-N.nii + segmentation-N.nii (labels 0/1/2)"
    label_values: ClassVar[frozenset[int] | None] = frozenset({0, 1, 2})
    label_threshold: ClassVar[float] = 1

    def __init__(self, spacing: tuple[float, float, float] = (0.8, 0.8, 2.5)) -> None:
        if len(spacing) != 3 or any(float(value) <= 0 for value in spacing):
            raise ValueError(f"spacing must be three positive sizes in mm, got {spacing}")
        self.spacing = tuple(float(value) for value in spacing)

    @staticmethod
    def _volumes(folder: Path) -> dict[int, Path]:
        found = {}
        for path in folder.iterdir():
            match = _VOLUME.match(path.name)
            if match and path.is_file():
                found[int(match.group(1))] = path
        return found

    def _volume_folders(self, root: Path) -> list[Path]:
        expected = f"expected the LiTS layout {self.description}"
        if not root.is_dir():
            raise FileNotFoundError(f"{root} does not exist: {expected}")
        folders = [root] if self._volumes(root) else []
        folders += sorted(sub for sub in root.iterdir() if sub.is_dir() and self._volumes(sub))
        if not folders:
            raise FileNotFoundError(f"{root} holds no volume-N.nii, nor does any sub-folder: {expected}")
        return folders

    def _official_test(self, root: Path, numbers: set[int]) -> set[int] | None:
        for name in _TEST_FILES:
            path = root / name
            if path.is_file():
                listed = {int(line.split(",")[0]) for line in path.read_text(encoding="utf-8").split() if line}
                unknown = sorted(listed - numbers)
                if unknown:
                    raise FileNotFoundError(f"{path} names volume(s) {unknown[:10]} that are not in {root}")
                return listed
        return None

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the volumes with their segmentations (and the official test split when a test file exists).

        Args:
            dataset_dir: ``LiTS/`` (with ``Training Batch 1/`` and ``Training Batch 2/``) or a flat folder.

        Returns:
            ``{"id": "volume-N", "image": <volume-N.nii>, "label": <segmentation-N.nii>, "volume": N
            [, "official_split"]}`` per case, sorted by ``N`` (absolute paths).

        Raises:
            FileNotFoundError: no volume, a volume without its segmentation, the same number in two folders, or a
                test file naming a missing volume; the message names the files.
        """
        root = Path(dataset_dir).absolute()
        volumes: dict[int, Path] = {}
        problems = []
        for folder in self._volume_folders(root):
            for number, path in self._volumes(folder).items():
                if number in volumes:
                    problems.append(f"{path}: volume {number} is also {volumes[number]}")
                    continue
                volumes[number] = path
        labels = {}
        for number, path in volumes.items():
            suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
            candidates = [path.parent / f"segmentation-{number}{ext}" for ext in (suffix, ".nii", ".nii.gz")]
            label = next((candidate for candidate in candidates if candidate.is_file()), None)
            if label is None:
                problems.append(f"{path}: no {candidates[0].name} beside it")
            else:
                labels[number] = label
        if problems:
            raise FileNotFoundError(
                f"{len(problems)} problem(s) in the LiTS folder {root}:\n" + "\n".join(problems[:20])
            )
        test = self._official_test(root, set(volumes))
        cases = []
        for number in sorted(volumes):
            case: dict[str, Any] = {
                "id": f"volume-{number}",
                "image": str(volumes[number]),
                "label": str(labels[number]),
                "volume": number,
            }
            if test is not None:
                case["official_split"] = "test" if number in test else "training"
            cases.append(case)
        return cases

    def write_case(self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write ``Training Batch 1|2/volume-N.nii`` (int16 HU) and ``segmentation-N.nii`` (uint8, 1 = liver).

        Args:
            dataset_dir: the folder that plays ``LiTS/``.
            case_id: ``volume-N`` (see :meth:`phantom_case_id`); volumes below 28 go to batch 1, as in LiTS.
            image: ``(X, Y, Z)`` float32 z-scored phantom intensities (mapped by :func:`phantom_hounsfield`).
            mask: ``(X, Y, Z)`` bool organ mask (written as label 1; the phantom has no tumour).

        Raises:
            ValueError: a case id that is not ``volume-N``, or arrays of the wrong kind.
        """
        check_phantom_volume(image, mask)
        match = re.fullmatch(r"volume-(\d+)", case_id)
        if match is None:
            raise ValueError(f"LiTS case ids are volume-N, got {case_id!r}")
        number = int(match.group(1))
        folder = Path(dataset_dir) / _BATCH_FOLDERS[0 if number < _FIRST_VOLUME_OF_BATCH_2 else 1]
        folder.mkdir(parents=True, exist_ok=True)
        affine = np.diag([*self.spacing, 1.0])
        nib.save(nib.Nifti1Image(phantom_hounsfield(image), affine), folder / f"volume-{number}.nii")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / f"segmentation-{number}.nii")

    def write_phantom_splits(self, dataset_dir: str | os.PathLike, case_ids: list[str]) -> None:
        """Write ``test_num.txt``: ASE-Net's ten test volumes when the phantom has them all, else its last cases.

        The fallback keeps ASE-Net's proportion (10 of 131), at least one volume.

        Args:
            dataset_dir: the folder that plays ``LiTS/``.
            case_ids: the phantom's case ids (``volume-N``), in generation order.
        """
        numbers = [int(case_id.split("-")[1]) for case_id in case_ids]
        if set(ASENET_TEST_VOLUMES) <= set(numbers):
            test = list(ASENET_TEST_VOLUMES)
        else:
            count = max(1, math.floor(len(numbers) * len(ASENET_TEST_VOLUMES) / 131 + 0.5)) if len(numbers) > 1 else 0
            test = numbers[len(numbers) - count :]
        Path(dataset_dir, _TEST_FILES[0]).write_text("".join(f"{number}\n" for number in test), encoding="utf-8")

    def phantom_case_id(self, index: int) -> str:
        """``volume-0``, ``volume-1``, ... (LiTS's own names)."""
        return f"volume-{index}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spacing={self.spacing})"
