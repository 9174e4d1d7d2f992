"""Argument checks shared by the networks, so that every network names a bad argument the same way."""

from __future__ import annotations

__all__ = ["check_probabilities", "check_spatial_dims"]


def check_spatial_dims(spatial_dims: int) -> None:
    """Raise ``ValueError`` unless ``spatial_dims`` is 2 or 3 (the networks are 2D/3D convolutional)."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def check_probabilities(name: str, *probabilities: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless every probability is in [0, 1) (dropout: 1 would zero all).

    Args:
        name: the argument(s) to name in the message, e.g. ``"dropout_prob"``.
        probabilities: the values to check.
    """
    if any(not 0.0 <= p < 1.0 for p in probabilities):
        shown = probabilities[0] if len(probabilities) == 1 else list(probabilities)
        raise ValueError(f"{name} must be in [0, 1), got {shown}")
