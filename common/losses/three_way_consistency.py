"""ASE-Net's three-way consistency between the student, the student on noisy input and the mean teacher.

``L_cons = mean([(p - q)^2 + (p_xi - q)^2 + (p - p_xi)^2] / 3)`` over the unlabeled cases, where ``p`` and ``p_xi``
are the student's probability maps of ``x_u`` and ``x_u + xi`` and ``q`` the teacher's (no gradient reaches it).
Probabilities are a softmax over the classes for two or more output channels and a sigmoid for one: the official
3D code's softmax over its single channel is identically 1, which made its consistency term always zero.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ThreeWayConsistencyLoss", "segmentation_probabilities"]


def segmentation_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the channel axis for ``C >= 2`` channels, sigmoid for ``C = 1``.

    Args:
        logits: ``(B, C, *spatial)``.

    Returns:
        Probabilities of the same shape.
    """
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


class ThreeWayConsistencyLoss(nn.Module):
    """Mean of ``[(p - q)^2 + (p_xi - q)^2 + (p - p_xi)^2] / 3`` on probability maps (see the module docstring).

    Args:
        from_logits: the inputs are logits, turned into probabilities by :func:`segmentation_probabilities`.
    """

    def __init__(self, from_logits: bool = True) -> None:
        super().__init__()
        self.from_logits = from_logits

    def forward(self, student: torch.Tensor, noisy_student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The consistency of ``(B, C, *spatial)`` student, noisy-student and teacher maps (teacher detached).

        Raises:
            ValueError: the three shapes differ.
        """
        if not student.shape == noisy_student.shape == teacher.shape:
            raise ValueError(
                f"shapes differ: student {tuple(student.shape)}, noisy student {tuple(noisy_student.shape)}, "
                f"teacher {tuple(teacher.shape)}"
            )
        if self.from_logits:
            student, noisy_student = segmentation_probabilities(student), segmentation_probabilities(noisy_student)
            teacher = segmentation_probabilities(teacher)
        teacher = teacher.detach()
        squared = (student - teacher) ** 2 + (noisy_student - teacher) ** 2 + (student - noisy_student) ** 2
        return (squared / 3.0).mean()
