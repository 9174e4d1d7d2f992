"""Metrics: airway topology metrics (IoU, Dice, DLR/TD, DBR/BD, precision, leakage, AMR, CCF); their Ignite handler is
``common.handlers.AirwayMetricHandler``."""

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

__all__ = [
    "AIRWAY_METRICS",
    "METRIC_ALIASES",
    "AirwayMetric",
    "AirwayTreeParsing",
    "airway_metrics",
    "bounding_box_crop",
    "ccf_score",
    "detected_branches",
    "parse_airway_tree",
    "select_airway_component",
    "skeleton",
]
