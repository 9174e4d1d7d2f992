"""NIfTI volumes in the Medical Segmentation Decathlon / nnU-Net layout: ``imagesTr/`` + ``labelsTr/``.

::

    dataset_dir/
        imagesTr/<id>.nii.gz            or <id>_0000.nii.gz (nnU-Net's channel suffix; ``channel`` picks the file)
        labelsTr/<id>.nii.gz            integer labels; foreground = label >= ``label_threshold``
        imagesTs/ + labelsTs/           optional: cases with both are the official test split
        train.txt, val.txt, test.txt    optional (also ``.list``): one id per line (text after a comma is ignored,
                                        as in SSL4MIS / UG-MCL's lists), giving the official split

BraTS 2019 for UG-MCL: the official code segments the whole tumour (every label > 0) from FLAIR alone. Put one FLAIR
volume per case in ``imagesTr/`` (``<id>.nii.gz``, or ``<id>_0000.nii.gz`` with ``channel="0000"``) and the BraTS
segmentation (labels 0, 1, 2, 4) in ``labelsTr/``; ``label_threshold = 1`` makes it whole tumour. Copy UG-MCL's
``data/BraTS2019/{train,val,test}.txt`` beside ``imagesTr/`` to reproduce its 250 / 25 / 60 split.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from monai.utils import optional_import

from common.data.layouts.base import Layout, check_phantom_volume

# optional: a bundle exported without NIfTI layouts in use runs without nibabel (common.bundle.vendor)
nib, _ = optional_import("nibabel")

__all__ = ["NiftiLayout"]

_SUFFIXES = (".nii.gz", ".nii")
_SPLIT_FILES = {
    "training": ("train.txt", "train.list"),
    "validation": ("val.txt", "val.list"),
    "test": ("test.txt", "test.list"),
}


def _stem(path: Path) -> str | None:
    lowered = path.name.lower()
    for suffix in _SUFFIXES:
        if lowered.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _nifti_files(folder: Path) -> dict[str, Path]:
    """Stem -> file of the NIfTI files in ``folder`` (hidden files skipped)."""
    found = {}
    for path in sorted(folder.iterdir()):
        stem = _stem(path)
        if stem is not None and path.is_file() and not path.name.startswith("."):
            found[stem] = path
    return found


class NiftiLayout(Layout):
    """``imagesTr/<id>[_<channel>].nii.gz`` paired with ``labelsTr/<id>.nii.gz`` (MSD / nnU-Net / ATM'22 style).

    Args:
        channel: the nnU-Net channel suffix to read when image files are named ``<id>_<channel>.nii.gz``.
        label_values: the label values a file may hold (e.g. ``{0, 1, 2, 4}`` for BraTS), or None to skip the check.
        label_threshold: label value at or above which a voxel is foreground.
        spacing: voxel size in millimetres written into phantom cases' headers by :meth:`write_case`.
        modality: ``"MRI"`` (BraTS, MSD MRI tasks) or ``"CT"`` (MSD CT tasks, in HU); it picks the bundles'
            ``"auto"`` intensity normalisation.
    """

    name: ClassVar[str] = "nifti"
    description: ClassVar[str] = "imagesTr/<id>.nii.gz + labelsTr/<id>.nii.gz"

    def __init__(
        self,
        channel: str = "0000",
        label_values: Iterable[int] | None = None,
        label_threshold: float = 1,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        modality: str = "MRI",
    ) -> None:
        self.channel = str(channel)
        self.label_values = None if label_values is None else frozenset(int(value) for value in label_values)
        self.label_threshold = label_threshold
        self.spacing = tuple(float(value) for value in spacing)
        if str(modality).upper() not in ("CT", "MRI", "RGB"):
            raise ValueError(f"modality must be 'CT', 'MRI' or 'RGB', got {modality!r}")
        self.modality = str(modality).upper()

    def _pairs(self, images_dir: Path, labels_dir: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
        images = _nifti_files(images_dir)
        labels = _nifti_files(labels_dir)
        by_id: dict[str, Path] = {}
        for stem, path in images.items():
            case_id, _, channel = stem.rpartition("_")
            # "<id>_0003" is a channel file of case <id> when <id> has a label and "<id>_0003" itself has none
            if stem not in labels and case_id in labels and len(channel) == 4 and channel.isdigit():
                if channel == self.channel:
                    by_id[case_id] = path
            else:
                by_id[stem] = path
        problems = [
            f"{by_id[case_id]}: no label {labels_dir / (case_id + '.nii.gz')}"
            for case_id in sorted(by_id.keys() - labels.keys())
        ]
        problems += [f"{labels[case_id]}: no image in {images_dir}" for case_id in sorted(labels.keys() - by_id.keys())]
        pairs = {
            case_id: {"image": str(by_id[case_id]), "label": str(labels[case_id])}
            for case_id in by_id.keys() & labels.keys()
        }
        return pairs, problems

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the cases of ``imagesTr``/``labelsTr`` (and ``imagesTs``/``labelsTs``), with official splits.

        Args:
            dataset_dir: the folder holding ``imagesTr/`` and ``labelsTr/``.

        Returns:
            ``{"id", "image", "label"[, "official_split"]}`` per case, sorted by id (absolute paths).

        Raises:
            FileNotFoundError: a missing folder, no case, an image without label (or the reverse), or a split file
                naming an unknown case; the message names the files.
        """
        root = Path(dataset_dir).absolute()
        expected = f"expected the NIfTI layout {self.description}"
        if not root.is_dir():
            raise FileNotFoundError(f"{root} does not exist: {expected}")
        for sub in ("imagesTr", "labelsTr"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"{root / sub} is missing: {expected}")
        pairs, problems = self._pairs(root / "imagesTr", root / "labelsTr")
        test_pairs: dict[str, dict[str, str]] = {}
        if (root / "imagesTs").is_dir() and (root / "labelsTs").is_dir():
            test_pairs, test_problems = self._pairs(root / "imagesTs", root / "labelsTs")
            problems += test_problems
        if problems:
            raise FileNotFoundError(f"{len(problems)} unpaired file(s) in {root}:\n" + "\n".join(problems[:20]))
        clash = sorted(pairs.keys() & test_pairs.keys())
        if clash:
            raise FileNotFoundError(f"case id(s) {clash[:10]} are in both imagesTr and imagesTs of {root}")
        if not pairs and not test_pairs:
            raise FileNotFoundError(f"{root / 'imagesTr'} holds no NIfTI image: {expected}")
        official = {case_id: "test" for case_id in test_pairs}
        for split, names in _SPLIT_FILES.items():
            for name in names:
                if (root / name).is_file():
                    listed = [
                        line.split(",")[0].strip() for line in (root / name).read_text(encoding="utf-8").splitlines()
                    ]
                    listed = [case_id for case_id in listed if case_id]
                    unknown = sorted(set(listed) - pairs.keys() - test_pairs.keys())
                    if unknown:
                        raise FileNotFoundError(f"{root / name} names {len(unknown)} unknown case(s): {unknown[:10]}")
                    official.update(dict.fromkeys(listed, split))
                    break
        cases = []
        for case_id, files in sorted({**pairs, **test_pairs}.items()):
            case: dict[str, Any] = {"id": case_id, **files}
            if case_id in official:
                case["official_split"] = official[case_id]
            cases.append(case)
        return cases

    def write_case(self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write ``imagesTr/<case_id>.nii.gz`` (float32) and ``labelsTr/<case_id>.nii.gz`` (uint8 0/1).

        Args:
            dataset_dir: the data set folder.
            case_id: the file stem.
            image: ``(X, Y, Z)`` float32.
            mask: ``(X, Y, Z)`` bool.
        """
        check_phantom_volume(image, mask)
        root = Path(dataset_dir)
        affine = np.diag([*self.spacing, 1.0])
        for sub, array in (("imagesTr", image), ("labelsTr", mask.astype(np.uint8))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), root / sub / f"{case_id}.nii.gz")

    def phantom_case_id(self, index: int) -> str:
        """``phantom_0000``, ``phantom_0001``, ..."""
        return f"phantom_{index:04d}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(channel={self.channel!r}, label_values={self.label_values}, "
            f"label_threshold={self.label_threshold})"
        )
