"""Uncertainty-masked consistency between a student's and a teacher's predictions (UA-MT, UG-MCL).

``L = sum(M * (s - t)^2) / (C * sum(M) + eps)`` with ``s``, ``t`` the student's and teacher's ``(B, C, *spatial)`` maps
and ``M`` a ``(B, 1, *spatial)`` mask of the voxels where the teacher is certain (broadcast over the ``C`` channels):
the mean squared difference over the masked voxels and all channels. For two classes the denominator is the reference
code's ``2 sum(mask) + 1e-16``. The teacher side carries no gradient.
"""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["MaskedMSELoss"]


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
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in shape")
        if mask.ndim != student.ndim or mask.shape[0] != student.shape[0] or mask.shape[2:] != student.shape[2:]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match the predictions {tuple(student.shape)}")
        if mask.shape[1] not in (1, student.shape[1]):
            raise ValueError(f"mask must have 1 or {student.shape[1]} channels, got {mask.shape[1]}")
        mask = mask.to(student.dtype)
        squared = (student - teacher.detach()) ** 2
        channels = student.shape[1] if mask.shape[1] == 1 else 1
        return torch.sum(mask * squared) / (channels * torch.sum(mask) + self.eps)
