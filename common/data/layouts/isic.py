"""ISIC skin-lesion segmentation challenges (ISIC 2018 Task 1, ISBI 2016 Part 1): JPEG images + PNG masks.

Each challenge ships one input folder and one ground-truth folder per split; the masks are 8-bit PNG with
values 0 and 255. The input folders also hold ``ATTRIBUTION.txt`` and ``LICENSE.txt``, and some releases
``*_superpixels.png`` files: only ``ISIC_<id>.jpg`` images are cases. Validation and test folders, when present
(with their ground truth), give the cases' ``official_split``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from common.data.io import write_jpeg, write_png
from common.data.layouts.base import Layout, check_phantom_case, list_files

__all__ = ["ISIC2016Layout", "ISIC2018Layout"]

logger = logging.getLogger("common.data")

_IMAGE_SUFFIXES = (".jpg", ".jpeg")
_SUPERPIXELS_SUFFIX = "_superpixels"
_IMAGE_QUALITY = 95


class _ISICLayout(Layout):
    """Shared logic of the ISIC layouts: per split, ``<input folder>/<id>.jpg`` + ``<truth folder>/<id><suffix>``.

    Args:
        include_splits: which official splits to read, among ``"training"``, ``"validation"`` and ``"test"``
            (e.g. ``("training",)`` for protocols that split the training set themselves).

    Raises:
        ValueError: an unknown split name.
    """

    folders: ClassVar[dict[str, tuple[str, str]]]
    """Official split -> (input folder, ground-truth folder)."""
    mask_suffix: ClassVar[str]
    challenge: ClassVar[str]
    modality: ClassVar[str] = "RGB"  # 8-bit colour dermoscopy images

    def __init__(self, include_splits: Sequence[str] = ("training", "validation", "test")) -> None:
        unknown = sorted(set(include_splits) - self.folders.keys())
        if unknown:
            raise ValueError(f"unknown split(s) {unknown} for {self.name}: expected some of {list(self.folders)}")
        if "training" not in include_splits:
            raise ValueError(f"{self.name}: include_splits must contain 'training', got {list(include_splits)}")
        self.include_splits = tuple(include_splits)

    def _read_split(self, root: Path, split: str) -> list[dict[str, Any]]:
        input_name, truth_name = self.folders[split]
        inputs, truths = root / input_name, root / truth_name
        expected = f"expected the {self.challenge} layout {self.description}"
        if split != "training" and not (inputs.is_dir() and truths.is_dir()):
            if inputs.is_dir() or truths.is_dir():
                present, absent = (inputs, truths) if inputs.is_dir() else (truths, inputs)
                logger.warning("%s: %s has no %s; its %s cases are skipped", self.name, present, absent.name, split)
            return []
        for folder in (inputs, truths):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is missing: {expected}")
        images = {
            path.stem: path
            for path in list_files(inputs, _IMAGE_SUFFIXES)
            if not path.stem.endswith(_SUPERPIXELS_SUFFIX)
        }
        suffix = self.mask_suffix.lower()
        masks = {
            path.name[: -len(suffix)]: path
            for path in list_files(truths, (".png",))
            if path.name.lower().endswith(suffix)
        }
        if not images:
            raise FileNotFoundError(f"{inputs} holds no ISIC_*.jpg image: {expected}")
        unpaired = [
            f"{images[key]}: no {key}{self.mask_suffix} in {truths}" for key in sorted(images.keys() - masks.keys())
        ]
        unpaired += [f"{masks[key]}: no {key}.jpg in {inputs}" for key in sorted(masks.keys() - images.keys())]
        if unpaired:
            raise FileNotFoundError(f"{len(unpaired)} unpaired file(s) in {root}:\n" + "\n".join(unpaired[:20]))
        return [
            {"id": key, "image": str(images[key]), "label": str(masks[key]), "official_split": split}
            for key in sorted(images)
        ]

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the cases of every included split present in ``dataset_dir``.

        Args:
            dataset_dir: the folder holding the challenge's input and ground-truth folders.

        Returns:
            ``{"id": "ISIC_0000000", "image": ..., "label": ..., "official_split": ...}`` per image, sorted by id
            (absolute paths). A validation or test split is read only when both its folders are present.

        Raises:
            FileNotFoundError: ``dataset_dir`` or a training folder is missing, or images and masks do not pair up.
        """
        root = Path(dataset_dir).absolute()
        if not root.is_dir():
            raise FileNotFoundError(f"{root} does not exist: expected the {self.challenge} layout {self.description}")
        cases = [case for split in self.include_splits for case in self._read_split(root, split)]
        return sorted(cases, key=lambda case: case["id"])

    def write_case(
        self,
        dataset_dir: str | os.PathLike,
        case_id: str,
        image: np.ndarray,
        mask: np.ndarray,
        split: str = "training",
    ) -> None:
        """Write ``<input folder>/<case_id>.jpg`` and ``<truth folder>/<case_id><mask suffix>`` (PNG 0/255).

        Args:
            dataset_dir: the folder holding the challenge's folders.
            case_id: ``ISIC_<7 digits>``.
            image: ``(H, W, 3)`` uint8.
            mask: ``(H, W)`` bool.
            split: the official split whose folders receive the case.
        """
        check_phantom_case(image, mask)
        input_name, truth_name = self.folders[split]
        root = Path(dataset_dir)
        write_jpeg(root / input_name / f"{case_id}.jpg", image, quality=_IMAGE_QUALITY, subsampling=2)
        write_png(root / truth_name / f"{case_id}{self.mask_suffix}", mask.astype(np.uint8) * 255)

    def phantom_case_id(self, index: int) -> str:
        """``ISIC_0000000``, ``ISIC_0000001``, ... (the challenges' naming)."""
        return f"ISIC_{index:07d}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(include_splits={self.include_splits})"


class ISIC2018Layout(_ISICLayout):
    """ISIC 2018 Task 1 (2594 training, 100 validation, 1000 test images).

    ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_0000000.jpg`` +
    ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_0000000_segmentation.png``.
    """

    name: ClassVar[str] = "isic2018"
    challenge: ClassVar[str] = "ISIC 2018 Task 1"
    mask_suffix: ClassVar[str] = "_segmentation.png"
    folders: ClassVar[dict[str, tuple[str, str]]] = {
        "training": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
        "validation": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
        "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
    }
    description: ClassVar[str] = (
        "ISIC2018_Task1-2_Training_Input/ISIC_*.jpg + ISIC2018_Task1_Training_GroundTruth/ISIC_*_segmentation.png"
    )


class ISIC2016Layout(_ISICLayout):
    """ISBI 2016 ISIC Part 1 (900 training, 379 test images).

    ``ISBI2016_ISIC_Part1_{Training,Test}_Data/ISIC_0000000.jpg`` +
    ``ISBI2016_ISIC_Part1_{Training,Test}_GroundTruth/ISIC_0000000_Segmentation.png`` (capital S).

    Args:
        include_splits: which official splits to read, among ``"training"`` and ``"test"``.
    """

    name: ClassVar[str] = "isic2016"
    challenge: ClassVar[str] = "ISBI 2016 ISIC Part 1"
    mask_suffix: ClassVar[str] = "_Segmentation.png"
    folders: ClassVar[dict[str, tuple[str, str]]] = {
        "training": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    }
    description: ClassVar[str] = (
        "ISBI2016_ISIC_Part1_Training_Data/ISIC_*.jpg"
        " + ISBI2016_ISIC_Part1_Training_GroundTruth/ISIC_*_Segmentation.png"
    )

    def __init__(self, include_splits: Sequence[str] = ("training", "test")) -> None:
        super().__init__(include_splits)
