"""Ignite handlers: atomic checkpoints and resumption, progress, figures, mean teacher, ramp-ups, distances in mm,
the dynamic mask ratio, airway figures and metrics."""

from __future__ import annotations

from .airway_figure import AirwayFigureSaver, draw_airway_projection
from .airway_metric import AirwayMetricHandler
from .checkpoint import (
    AtomicCheckpointSaver,
    GradScalerStates,
    RandomStates,
    ResumeCheckpointLoader,
    RunRecord,
    data_fingerprint,
    latest_checkpoint,
)
from .curves import TrainingCurvesSaver, scalar_outputs
from .dataset_iou import DatasetMeanIoU, DatasetMeanIoUMetric
from .distances import (
    MISSED_DISTANCE,
    MISSED_SUFFIX,
    HausdorffDistanceMM,
    MissAwareHausdorffDistanceMetric,
    MissAwareSurfaceDistanceMetric,
    SurfaceDistanceMM,
    image_diagonal,
    missed_case_distances,
    voxel_spacing,
)
from .ema import EMAMomentumScheduler, EMATeacher, mean_teacher_alpha, teacher_copy
from .figures import CaseFigureSaver, OverlayFigureSaver, draw_overlay
from .mask_ratio import DynamicMaskRatio, dynamic_mask_ratio
from .progress import TrainingBanner, TrainingProgressBar
from .ramps import RAMPS, RampScheduler, cosine_rampdown, cosine_rampup, linear_rampup, sigmoid_rampup

__all__ = [
    "AtomicCheckpointSaver",
    "GradScalerStates",
    "RandomStates",
    "ResumeCheckpointLoader",
    "RunRecord",
    "data_fingerprint",
    "latest_checkpoint",
    "CaseFigureSaver",
    "OverlayFigureSaver",
    "draw_overlay",
    "TrainingBanner",
    "TrainingProgressBar",
    "EMAMomentumScheduler",
    "EMATeacher",
    "mean_teacher_alpha",
    "teacher_copy",
    "RAMPS",
    "RampScheduler",
    "cosine_rampdown",
    "cosine_rampup",
    "linear_rampup",
    "sigmoid_rampup",
    "HausdorffDistanceMM",
    "SurfaceDistanceMM",
    "voxel_spacing",
    "MISSED_DISTANCE",
    "MISSED_SUFFIX",
    "MissAwareHausdorffDistanceMetric",
    "MissAwareSurfaceDistanceMetric",
    "image_diagonal",
    "missed_case_distances",
    "AirwayFigureSaver",
    "AirwayMetricHandler",
    "draw_airway_projection",
    "DynamicMaskRatio",
    "dynamic_mask_ratio",
]
__all__ += ["DatasetMeanIoU", "DatasetMeanIoUMetric"]
__all__ += ["TrainingCurvesSaver", "scalar_outputs"]
from .temperature import DyBACTemperature, dybac_temperature  # noqa: E402  (ASE-Net)

__all__ += ["DyBACTemperature", "dybac_temperature"]
