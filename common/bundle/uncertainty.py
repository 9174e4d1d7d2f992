"""Ranking inference cases by the uncertainty maps a semi-supervised bundle saves, for annotation tools.

The contract the semi-supervised bundles follow: ``configs/inference.json`` has a top-level ``save_uncertainty``
(false by default) and ``uncertainty_postfix`` (``"uncertainty"``); with ``--save_uncertainty True`` every
prediction ``<case>_<output_postfix>.<ext>`` under ``output_dir`` gets an entropy map
``<case>_<uncertainty_postfix>.<ext>`` beside it: one channel, the prediction's spatial shape, the predictive
entropy in nats (``0`` to ``ln C`` for ``C`` classes). An annotation tool asks a person to label the cases the model
is least sure about first: the mean entropy per case, highest first, is what :func:`rank_by_uncertainty` computes
and ``python -m common.bundle rank_uncertainty`` writes as CSV.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CaseUncertainty", "rank_by_uncertainty", "write_ranking"]


@dataclass(frozen=True)
class CaseUncertainty:
    """The uncertainty of one case.

    Attributes:
        case: the case, as the map's path relative to the output folder without ``_<postfix>.<ext>``.
        mean_entropy: mean of the map over its voxels (nats).
        max_entropy: its maximum (nats).
        file: the map's path.
    """

    case: str
    mean_entropy: float
    max_entropy: float
    file: Path


def _read_map(path: Path) -> np.ndarray:
    from monai.transforms import LoadImage

    return np.asarray(LoadImage(image_only=True)(str(path)), dtype=np.float64)


def rank_by_uncertainty(output_dir: str | Path, postfix: str = "uncertainty") -> list[CaseUncertainty]:
    """The cases of an inference output folder, most uncertain first.

    Args:
        output_dir: the inference's ``output_dir`` (searched recursively, as outputs may keep the input folders).
        postfix: the ``uncertainty_postfix`` of the bundle's ``inference.json``.

    Returns:
        one entry per ``*_<postfix>.*`` file, sorted by mean entropy, highest first (ties by case name).

    Raises:
        FileNotFoundError: no uncertainty map in ``output_dir`` (was inference run with ``--save_uncertainty True``?).
        ValueError: a map holding NaN, infinite or negative values, which no entropy has.
    """
    folder = Path(output_dir)
    marker = f"_{postfix}."
    files = sorted(p for p in folder.rglob(f"*{marker}*") if p.is_file()) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no uncertainty map (*{marker}*) in {folder}: run the bundle's inference with --save_uncertainty True"
        )
    ranked = []
    for path in files:
        values = _read_map(path)
        if not np.isfinite(values).all() or values.min() < 0:
            raise ValueError(f"{path}: an entropy map must be finite and non-negative")
        relative = path.relative_to(folder).as_posix()
        case = relative[: relative.rindex(marker)]
        ranked.append(CaseUncertainty(case, float(values.mean()), float(values.max()), path))
    return sorted(ranked, key=lambda c: (-c.mean_entropy, c.case))


def write_ranking(ranking: list[CaseUncertainty], csv_file: str | Path, num_classes: int | None = None) -> Path:
    """Write a ranking as CSV: ``rank,case,mean_entropy,max_entropy[,normalised_mean],file``.

    Args:
        ranking: from :func:`rank_by_uncertainty`.
        csv_file: the file to write; its folder is created.
        num_classes: when given, a ``normalised_mean`` column divides the mean by ``ln C`` (0 certain, 1 uniform).

    Returns:
        the CSV file.
    """
    path = Path(csv_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["rank", "case", "mean_entropy", "max_entropy"] + (["normalised_mean"] if num_classes else []) + ["file"]
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for rank, case in enumerate(ranking, start=1):
            row = [rank, case.case, f"{case.mean_entropy:.6g}", f"{case.max_entropy:.6g}"]
            if num_classes:
                row.append(f"{case.mean_entropy / math.log(num_classes):.6g}")
            writer.writerow([*row, str(case.file)])
    return path
