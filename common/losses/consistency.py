"""Uncertainty-masked consistency between a student's and a teacher's predictions (UA-MT, UG-MCL).

``L = sum(M * (s - t)^2) / (C * sum(M) + eps)`` with ``s``, ``t`` the student's and teacher's ``(B, C, *spatial)`` maps
and ``M`` a ``(B, 1, *spatial)`` mask of the voxels where the teacher is certain (broadcast over the ``C`` channels):
the mean squared difference over the masked voxels and all channels. For two classes the denominator is the reference
code's ``2 sum(mask) + 1e-16``. The teacher side carries no gradient.
"""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["MaskedMSELoss", "check_masked_pair"]


def check_masked_pair(
    input: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    names: tuple[str, str] = ("input", "target"),
    compared: str = "input",
) -> None:
    """Check the inputs of a masked voxel-wise loss: one shape for both maps, a mask of 1 or ``C`` channels.

    Args:
        input: ``(B, C, *spatial)`` map.
        target: the map compared with it, the same shape.
        mask: ``(B, 1, *spatial)`` or ``(B, C, *spatial)`` weights.
        names: what the error messages call ``input`` and ``target`` (a loss's own argument names).
        compared: what the mask error message calls the maps.

    Raises:
        ValueError: the shapes of ``input`` and ``target`` differ, or ``mask`` differs from them in batch, rank or
            spatial size, or has neither 1 nor ``C`` channels.
    """
    if input.shape != target.shape:
        raise ValueError(f"{names[0]} {tuple(input.shape)} and {names[1]} {tuple(target.shape)} differ in shape")
    if mask.ndim != input.ndim or mask.shape[0] != input.shape[0] or mask.shape[2:] != input.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the {compared} {tuple(input.shape)}")
    if mask.shape[1] not in (1, input.shape[1]):
        raise ValueError(f"mask must have 1 or {input.shape[1]} channels, got {mask.shape[1]}")


class MaskedMSELoss(_Loss):
    """Mean squared error over the voxels selected by a mask: ``sum(M (s - t)^2) / (C sum(M) + eps)``.

    Args:
        eps: added to the denominator so that an empty mask gives 0 (1e-16, as in UA-MT / UG-MCL).

    Inputs: ``student`` and ``teacher`` ``(B, C, *spatial)``; ``mask`` ``(B, 1, *spatial)`` (or ``(B, C, *spatial)``)
    in {0, 1} (or soft weights). Returns the scalar loss; the gradient flows into ``student`` only.
    """

    def __init__(self, eps: float = 1e-16) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The masked mean squared difference.

        Raises:
            ValueError: the shapes of ``student`` and ``teacher`` differ, or ``mask`` does not broadcast to them with
                one channel or ``C`` channels.
        """
        check_masked_pair(student, teacher, mask, names=("student", "teacher"), compared="predictions")
        mask = mask.to(student.dtype)
        squared = (student - teacher.detach()) ** 2
        channels = student.shape[1] if mask.shape[1] == 1 else 1
        return torch.sum(mask * squared) / (channels * torch.sum(mask) + self.eps)
