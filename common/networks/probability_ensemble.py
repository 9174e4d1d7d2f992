"""An ensemble network whose output is the mean of its members' class probabilities.

Co-training methods such as CPS and DFCPS train two networks and predict with the average of their probabilities. As a
module, the ensemble is what inference, validation, MONAI Label and the TorchScript export see: one ``nn.Module``
whose state dict holds every member (``networks.0.*``, ``networks.1.*``), so that ``models/model.pt`` is a plain
state dict of the whole predictor, as the model zoo expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ProbabilityEnsemble"]


class ProbabilityEnsemble(nn.Module):
    """Mean of the softmax (or sigmoid) probabilities of several segmentation networks.

    Args:
        networks: the members; each maps ``(B, C_in, *spatial)`` to logits ``(B, C, *spatial)`` of the same shape.
        sigmoid: apply a sigmoid to each member's logits (binary or multi-label heads) instead of a softmax over the
            channel axis.

    Raises:
        ValueError: no member.

    Output: probabilities ``(B, C, *spatial)``, the mean over members (not logits: postprocessing must not apply
    another activation).
    """

    def __init__(self, networks: Sequence[nn.Module], sigmoid: bool = False) -> None:
        super().__init__()
        if len(networks) == 0:
            raise ValueError("a ProbabilityEnsemble needs at least one network")
        self.networks = nn.ModuleList(networks)
        self.sigmoid = bool(sigmoid)

    def member_probabilities(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's probabilities for ``x``, in member order: a list of ``(B, C, *spatial)`` tensors."""
        probabilities: list[torch.Tensor] = []
        for network in self.networks:
            logits = network(x)
            probabilities.append(torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1))
        return probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial)`` images -> ``(B, C, *spatial)`` mean probabilities."""
        return torch.stack(self.member_probabilities(x), dim=0).mean(dim=0)
