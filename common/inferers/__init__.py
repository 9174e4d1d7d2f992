"""Inference components: strided sliding windows that average probabilities, Monte-Carlo uncertainty."""

from __future__ import annotations

from .sliding_window import ProbabilitySlidingWindowInferer, stride_to_overlap
from .uncertainty import MCUncertainty, MCUncertaintyEstimator, add_input_noise, mc_dropout, predictive_entropy

__all__ = [
    "MCUncertainty",
    "MCUncertaintyEstimator",
    "ProbabilitySlidingWindowInferer",
    "add_input_noise",
    "mc_dropout",
    "predictive_entropy",
    "stride_to_overlap",
]
