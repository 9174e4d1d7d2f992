"""Data: datalists with labeled / unlabeled / validation / test cases, real-layout adapters, phantoms, input checks.

The flow every bundle follows: ``prepare_datalist(dataset_dir, layout, output_file, phantom=..., ...)`` writes the
phantom if the data set is absent, lists the cases with the layout adapter, splits them reproducibly, checks the
files and saves the datalist; ``load_datalist`` reads it back with absolute paths for MONAI's ``Dataset``.
"""

from __future__ import annotations

from common.data.checks import DataValidationError, IntensityCheckError, check_cases, check_intensities
from common.data.datalist import evaluation_cases, load_datalist, save_datalist, split_cases
from common.data.layouts import LAYOUTS, get_layout
from common.data.phantoms import AirwayPhantom3D, LesionPhantom2D, OrganPhantom3D
from common.data.prepare import prepare_datalist
from common.data.readers import H5Reader
from common.data.semi_supervised import LABELED_BATCH_SIZE_KEY, LabeledUnlabeledLoader, unlabeled_cases

__all__ = [
    "LABELED_BATCH_SIZE_KEY",
    "LAYOUTS",
    "AirwayPhantom3D",
    "DataValidationError",
    "H5Reader",
    "IntensityCheckError",
    "LabeledUnlabeledLoader",
    "LesionPhantom2D",
    "OrganPhantom3D",
    "check_cases",
    "check_intensities",
    "evaluation_cases",
    "get_layout",
    "load_datalist",
    "prepare_datalist",
    "save_datalist",
    "split_cases",
    "unlabeled_cases",
]
