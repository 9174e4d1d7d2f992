"""BUSI, Breast Ultrasound Images (Al-Dhabyani et al. 2020): ``Dataset_BUSI_with_GT/<class>/<class> (<n>).png``.

Each image ``benign (1).png`` has a mask ``benign (1)_mask.png`` and, when it shows several lesions, extra masks
``benign (1)_mask_1.png``, ``benign (1)_mask_2.png``; the case's label is the union of all its masks (given as a
list of files, which MONAI's ``LoadImage`` stacks along channels and ``common.transforms.BinaryMaskd`` merges).
Classes: benign (437), malignant (210), normal (133, empty masks). The CMUNeXt paper's 647 images are benign +
malignant, hence ``include_normal=False`` by default. Masks are PNG with values 0 and 255 (some are RGB-mode).
Case ids are ``<class>_<n>`` (e.g. ``benign_1``), unique across classes. No official split.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from common.data.io import write_png
from common.data.layouts.base import Layout, archive_root, check_phantom_case, list_files

__all__ = ["BUSILayout"]

_MASK_STEM = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<number>\d+))?$")
_CASE_ID = re.compile(r"^(?P<category>[a-z]+)_(?P<number>\d+)$")
_LESION_CLASSES = ("benign", "malignant")
_NORMAL_CLASS = "normal"


def _case_id(category: str, stem: str) -> str:
    """``benign (12)`` -> ``benign_12``; other names are lower-cased, non-alphanumerics collapsed to ``_``."""
    match = re.fullmatch(rf"{category} \((\d+)\)", stem)
    if match:
        return f"{category}_{int(match.group(1))}"
    cleaned = re.sub(r"[^0-9a-z]+", "_", stem.lower()).strip("_")
    return cleaned if cleaned.startswith(f"{category}_") else f"{category}_{cleaned}"


class BUSILayout(Layout):
    """BUSI: ``[Dataset_BUSI_with_GT/]{benign,malignant[,normal]}/<class> (<n>).png`` + ``..._mask[_<k>].png``.

    Args:
        include_normal: also list the normal cases (empty masks).
    """

    name: ClassVar[str] = "busi"
    modality: ClassVar[str] = "RGB"  # 8-bit ultrasound images (grey, read as RGB)
    description: ClassVar[str] = (
        "Dataset_BUSI_with_GT/{benign,malignant,normal}/'benign (1).png' + 'benign (1)_mask.png' [+ '_mask_1.png']"
    )
    label_values: ClassVar[frozenset[int] | None] = frozenset({0, 255})
    label_threshold: ClassVar[float] = 128
    archive_folder: ClassVar[str] = "Dataset_BUSI_with_GT"

    def __init__(self, include_normal: bool = False) -> None:
        self.include_normal = include_normal

    @property
    def categories(self) -> tuple[str, ...]:
        """The class folders read, in order."""
        return _LESION_CLASSES + ((_NORMAL_CLASS,) if self.include_normal else ())

    def _root(self, dataset_dir: str | os.PathLike) -> Path:
        markers = (*_LESION_CLASSES, _NORMAL_CLASS)  # "benign" first: the error names it
        return archive_root(dataset_dir, self.archive_folder, markers, f"expected the BUSI layout {self.description}")

    def _read_category(self, root: Path, category: str) -> list[dict[str, Any]]:
        folder = root / category
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: expected the BUSI layout {self.description}")
        images: dict[str, Path] = {}
        masks: dict[str, list[tuple[int, Path]]] = defaultdict(list)
        for path in list_files(folder, (".png",)):
            match = _MASK_STEM.match(path.stem)
            if match:
                number = int(match.group("number")) if match.group("number") else 0
                masks[match.group("stem")].append((number, path))
            else:
                images[path.stem] = path
        unpaired = [f"{images[stem]}: no '{stem}_mask.png'" for stem in sorted(images.keys() - masks.keys())]
        unpaired += [f"{masks[stem][0][1]}: no '{stem}.png'" for stem in sorted(masks.keys() - images.keys())]
        if unpaired:
            raise FileNotFoundError(f"{len(unpaired)} unpaired file(s) in {folder}:\n" + "\n".join(unpaired[:20]))
        cases = []
        for stem, image in images.items():
            label_files = [str(path) for _, path in sorted(masks[stem])]
            cases.append(
                {
                    "id": _case_id(category, stem),
                    "image": str(image),
                    "label": label_files[0] if len(label_files) == 1 else label_files,
                    "category": category,
                }
            )
        return cases

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the cases of the included classes.

        Args:
            dataset_dir: ``Dataset_BUSI_with_GT/`` or the folder that holds it.

        Returns:
            ``{"id": "benign_1", "image": ..., "label": <path or list of paths>, "category": "benign"}`` per image,
            sorted by id (absolute paths; the extra masks follow the main one in their numeric order).

        Raises:
            FileNotFoundError: a class folder is missing, or images and masks do not pair up.
            ValueError: two files map to one case id.
        """
        root = self._root(dataset_dir).absolute()
        cases = [case for category in self.categories for case in self._read_category(root, category)]
        seen: dict[str, str] = {}
        for case in cases:
            if case["id"] in seen:
                raise ValueError(f"{case['image']} and {seen[case['id']]} both map to case id {case['id']!r}")
            seen[case["id"]] = case["image"]
        return sorted(cases, key=lambda case: case["id"])

    def write_case(self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write ``<class>/<class> (<n>).png`` and one mask file per lesion, like BUSI's extra masks.

        The image is stored as a grey RGB-mode PNG (the luminance in three equal channels, as BUSI's ultrasound
        images are). The mask's 8-connected components go to ``_mask.png`` (the largest), ``_mask_1.png``, ...
        in decreasing size, so their union is exactly ``mask``; an empty mask gives one empty ``_mask.png``.

        Args:
            dataset_dir: the folder that plays ``Dataset_BUSI_with_GT/``.
            case_id: ``<class>_<n>`` with class benign, malignant or normal.
            image: ``(H, W, 3)`` uint8.
            mask: ``(H, W)`` bool.

        Raises:
            ValueError: ``case_id`` does not follow ``<class>_<n>``.
        """
        check_phantom_case(image, mask)
        match = _CASE_ID.match(case_id)
        if not match or match.group("category") not in (*_LESION_CLASSES, _NORMAL_CLASS):
            raise ValueError(f"BUSI case ids are '<class>_<n>' with class benign, malignant or normal, got {case_id!r}")
        category, number = match.group("category"), int(match.group("number"))
        folder = Path(dataset_dir) / category
        stem = f"{category} ({number})"
        luminance = np.rint(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        write_png(folder / f"{stem}.png", np.repeat(luminance.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2))
        components, num_components = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(components.ravel())[1:]
        by_size = np.argsort(-sizes, kind="stable") + 1
        for rank, component in enumerate(by_size.tolist() or [0]):
            suffix = "_mask" if rank == 0 else f"_mask_{rank}"
            part = components == component if num_components else np.zeros_like(mask)
            write_png(folder / f"{stem}{suffix}.png", part.astype(np.uint8) * 255)

    def phantom_case_id(self, index: int) -> str:
        """Two benign cases for each malignant one (BUSI's ratio 437:210): benign_1, benign_2, malignant_1, ..."""
        group, position = divmod(index, 3)
        if position == 2:
            return f"malignant_{group + 1}"
        return f"benign_{2 * group + position + 1}"

    def __repr__(self) -> str:
        return f"BUSILayout(include_normal={self.include_normal})"
