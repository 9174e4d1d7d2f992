"""Kvasir-SEG (1000 polyp images, Simula): ``images/<id>.jpg`` + ``masks/<id>.jpg``.

The public ``kvasir-seg.zip`` unpacks to a ``Kvasir-SEG/`` folder holding ``images/``, ``masks/`` and
``kavsir_bboxes.json``; ``dataset_dir`` may point at ``Kvasir-SEG/`` or at its parent. Masks are JPEG files
(usually 3-channel), so their values spread around 0 and 255: a pixel is foreground at or above 128.
The data set has no official split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from common.data.io import write_jpeg
from common.data.layouts.base import Layout, archive_root, check_phantom_case, list_files

__all__ = ["KvasirSegLayout"]

_SUFFIXES = (".jpg", ".jpeg", ".png")
_IMAGE_QUALITY = 90
# Quality 100 (quantisation step 1) without chroma subsampling keeps every pixel of a 0/255 mask within a few
# levels of its value, so thresholding at 128 gives back the written mask exactly (tested).
_MASK_QUALITY = 100


class KvasirSegLayout(Layout):
    """Kvasir-SEG: ``[Kvasir-SEG/]images/<id>.jpg`` paired by name with ``[Kvasir-SEG/]masks/<id>.jpg``."""

    name: ClassVar[str] = "kvasir_seg"
    modality: ClassVar[str] = "RGB"  # 8-bit colour endoscopy images
    description: ClassVar[str] = "images/*.jpg + masks/*.jpg"
    label_values: ClassVar[frozenset[int] | None] = None
    label_threshold: ClassVar[float] = 128
    archive_folder: ClassVar[str] = "Kvasir-SEG"

    def _root(self, dataset_dir: str | os.PathLike) -> Path:
        expected = f"expected the Kvasir-SEG layout {self.description}"
        root = archive_root(dataset_dir, self.archive_folder, ("images", "masks"), expected)
        for sub in ("images", "masks"):  # the folder that holds one must hold both
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"{root / sub} is missing: {expected}")
        return root

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the cases of a Kvasir-SEG folder.

        Args:
            dataset_dir: ``Kvasir-SEG/`` or the folder that holds it.

        Returns:
            ``{"id": <file stem>, "image": ..., "label": ...}`` per image, sorted by id (absolute paths).

        Raises:
            FileNotFoundError: ``images/`` or ``masks/`` is missing, no image is found, or images and masks do not
                pair up one to one.
        """
        root = self._root(dataset_dir).absolute()
        images = {path.stem: path for path in list_files(root / "images", _SUFFIXES)}
        masks = {path.stem: path for path in list_files(root / "masks", _SUFFIXES)}
        if not images:
            raise FileNotFoundError(
                f"{root / 'images'} holds no image: expected the Kvasir-SEG layout {self.description}"
            )
        unpaired = [f"{images[stem]}: no mask in {root / 'masks'}" for stem in sorted(images.keys() - masks.keys())]
        unpaired += [f"{masks[stem]}: no image in {root / 'images'}" for stem in sorted(masks.keys() - images.keys())]
        if unpaired:
            raise FileNotFoundError(f"{len(unpaired)} unpaired file(s) in {root}:\n" + "\n".join(unpaired[:20]))
        return [{"id": stem, "image": str(images[stem]), "label": str(masks[stem])} for stem in sorted(images)]

    def write_case(self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write ``images/<case_id>.jpg`` and a 3-channel JPEG ``masks/<case_id>.jpg`` (0/255) under ``dataset_dir``.

        Args:
            dataset_dir: the folder that plays ``Kvasir-SEG/``.
            case_id: the file stem.
            image: ``(H, W, 3)`` uint8.
            mask: ``(H, W)`` bool.
        """
        check_phantom_case(image, mask)
        root = Path(dataset_dir)
        write_jpeg(root / "images" / f"{case_id}.jpg", image, quality=_IMAGE_QUALITY, subsampling=2)
        mask_rgb = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
        write_jpeg(root / "masks" / f"{case_id}.jpg", mask_rgb, quality=_MASK_QUALITY, subsampling=0)

    def phantom_case_id(self, index: int) -> str:
        """``phantom_0000``, ``phantom_0001``, ... (Kvasir-SEG ids are opaque strings)."""
        return f"phantom_{index:04d}"
