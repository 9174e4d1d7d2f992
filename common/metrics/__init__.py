"""Metrics: airway topology metrics (IoU, Dice, DLR/TD, DBR/BD, precision, leakage, AMR, CCF) and their handlers."""

from __future__ import annotations

from .airway import (
    AIRWAY_METRICS,
    METRIC_ALIASES,
    AirwayMetric,
    AirwayTreeParsing,
    airway_metrics,
    bounding_box_crop,
    ccf_score,
    detected_branches,
    parse_airway_tree,
    select_airway_component,
    skeleton,
)
from .handlers import AirwayMetricHandler

__all__ = [
    "AIRWAY_METRICS",
    "METRIC_ALIASES",
    "AirwayMetric",
    "AirwayMetricHandler",
    "AirwayTreeParsing",
    "airway_metrics",
    "bounding_box_crop",
    "ccf_score",
    "detected_branches",
    "parse_airway_tree",
    "select_airway_component",
    "skeleton",
]
