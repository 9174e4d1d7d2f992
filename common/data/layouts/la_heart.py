"""Left atrium (2018 Atrial Segmentation Challenge, LGE-MRI) as the semi-supervised repositories ship it.

UA-MT, DTC, SSL4MIS, MC-Net and their descendants convert the challenge's 100 training volumes
(``lgemri.nrrd`` + ``laendo.nrrd``) to one HDF5 file per case and split them with two list files::

    LA/
        train.list                      80 case ids, one per line
        test.list                       20 case ids
        2018LA_Seg_Training Set/
            0RZDK210BSMWAA6467LU/
                mri_norm2.h5            datasets "image" (float32, z-score normalised, cropped around the atrium)
                                        and "label" (uint8, 1 = left atrium cavity)
            ...

``dataset_dir`` may point at ``LA/`` or at ``2018LA_Seg_Training Set/`` itself; the list files are looked for beside
the case folders and one level up (both places occur in the public code). Cases named in ``train.list`` /
``test.list`` get that official split; without list files every case is split by the fractions. The volumes carry no
spacing: the challenge's MR volumes are 0.625 mm isotropic (give it to :class:`common.data.readers.H5Reader`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from common.data.io import write_h5
from common.data.layouts.base import Layout, check_phantom_volume

__all__ = ["LAHeartLayout"]

_CASE_FOLDER_NAMES = ("2018LA_Seg_Training Set", "2018LA_Seg_Training", "2018LA_Seg_TrainingSet")
_LISTS = {"train.list": "training", "test.list": "test"}


class LAHeartLayout(Layout):
    """LA benchmark layout: ``[LA/]2018LA_Seg_Training Set/<case>/mri_norm2.h5`` plus ``train.list`` / ``test.list``.

    A case's ``image`` and ``label`` are the same HDF5 file (datasets ``"image"`` and ``"label"``).

    Attributes:
        file_name: the per-case file name.
        phantom_test_fraction: the share of phantom cases written to ``test.list`` (the benchmark's 20 of 100).
    """

    name: ClassVar[str] = "la_heart"
    modality: ClassVar[str] = "MRI"  # LGE-MRI, z-score normalised per volume in the public mri_norm2.h5 files
    description: ClassVar[str] = "2018LA_Seg_Training Set/<case>/mri_norm2.h5 (+ train.list, test.list)"
    label_values: ClassVar[frozenset[int] | None] = frozenset({0, 1})
    label_threshold: ClassVar[float] = 1
    file_name: ClassVar[str] = "mri_norm2.h5"
    case_folder: ClassVar[str] = _CASE_FOLDER_NAMES[0]
    phantom_test_fraction: ClassVar[float] = 0.2

    def _case_root(self, dataset_dir: str | os.PathLike) -> Path:
        folder = Path(dataset_dir)
        expected = f"expected the LA layout {self.description}"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: {expected}")
        for name in _CASE_FOLDER_NAMES:
            if (folder / name).is_dir():
                return folder / name
        if any((sub / self.file_name).is_file() for sub in folder.iterdir() if sub.is_dir()):
            return folder  # dataset_dir is the case folder itself
        raise FileNotFoundError(
            f"{folder / self.case_folder} is missing and {folder} holds no <case>/{self.file_name}: {expected}"
        )

    @staticmethod
    def _read_list(path: Path) -> list[str]:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def find_cases(self, dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """List the cases, with their official split when ``train.list`` / ``test.list`` exist.

        Args:
            dataset_dir: ``LA/`` (holding ``2018LA_Seg_Training Set/``) or the case folder itself.

        Returns:
            ``{"id": <case folder>, "image": <mri_norm2.h5>, "label": <the same file>[, "official_split": ...]}`` per
            case, sorted by id (absolute paths).

        Raises:
            FileNotFoundError: no case folder, a case folder without ``mri_norm2.h5``, a listed case that does not
                exist, or a case named in both lists; the message names the files.
        """
        root = self._case_root(dataset_dir).absolute()
        folders = sorted(sub for sub in root.iterdir() if sub.is_dir() and not sub.name.startswith("."))
        problems = [
            f"{sub}: no {self.file_name} in this case folder" for sub in folders if not (sub / self.file_name).is_file()
        ]
        if problems:
            raise FileNotFoundError(
                f"{len(problems)} case folder(s) without {self.file_name} (convert lgemri.nrrd/laendo.nrrd with the "
                "benchmark's preprocessing first):\n" + "\n".join(problems[:20])
            )
        if not folders:
            raise FileNotFoundError(f"{root} holds no case folder: expected the LA layout {self.description}")
        ids = {sub.name for sub in folders}
        official: dict[str, str] = {}
        for list_name, split in _LISTS.items():
            for candidate in (root / list_name, root.parent / list_name):
                if candidate.is_file():
                    listed = self._read_list(candidate)
                    missing = sorted(set(listed) - ids)
                    if missing:
                        raise FileNotFoundError(
                            f"{candidate} names {len(missing)} case(s) with no folder in {root}: {missing[:10]}"
                        )
                    twice = sorted(case_id for case_id in listed if official.get(case_id, split) != split)
                    if twice:
                        raise FileNotFoundError(f"{candidate}: case(s) {twice[:10]} are also in another list")
                    official.update(dict.fromkeys(listed, split))
                    break
        cases = []
        for sub in folders:
            path = str(sub / self.file_name)
            case: dict[str, Any] = {"id": sub.name, "image": path, "label": path}
            if sub.name in official:
                case["official_split"] = official[sub.name]
            cases.append(case)
        return cases

    def write_case(self, dataset_dir: str | os.PathLike, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write ``2018LA_Seg_Training Set/<case_id>/mri_norm2.h5`` with ``image`` (float32) and ``label`` (uint8).

        Args:
            dataset_dir: the folder that plays ``LA/``.
            case_id: the case folder name.
            image: ``(X, Y, Z)`` float32 intensities (the public files are z-score normalised).
            mask: ``(X, Y, Z)`` bool.
        """
        check_phantom_volume(image, mask)
        path = Path(dataset_dir) / self.case_folder / case_id / self.file_name
        write_h5(path, {"image": image, "label": mask.astype(np.uint8)}, compress=("label",))

    def write_phantom_splits(self, dataset_dir: str | os.PathLike, case_ids: list[str]) -> None:
        """Write ``train.list`` (the first 80 % of the cases) and ``test.list`` (the rest) into ``dataset_dir``.

        Args:
            dataset_dir: the folder that plays ``LA/``.
            case_ids: the phantom's case ids, in generation order (the cases are independent draws, so the last
                ones are as good a test set as any).
        """
        num_test = math.floor(self.phantom_test_fraction * len(case_ids) + 0.5) if len(case_ids) > 1 else 0
        num_train = len(case_ids) - num_test
        root = Path(dataset_dir)
        for list_name, ids in (("train.list", case_ids[:num_train]), ("test.list", case_ids[num_train:])):
            (root / list_name).write_text("".join(f"{case_id}\n" for case_id in ids), encoding="utf-8")

    def phantom_case_id(self, index: int) -> str:
        """``phantom_0000``, ``phantom_0001``, ... (the challenge's ids are opaque 20-character strings)."""
        return f"phantom_{index:04d}"
