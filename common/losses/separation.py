"""Foreground/background feature separation: the training-time term of DMGSA's GMGS blocks.

Airway features cluster together, far (in cosine terms) from background features. With the ground truth, each GMGS
block's point-wise features ``V`` (``(B, C, *s)`` at the stage's resolution ``s``) are averaged over the foreground
and over the background, weighted by the label's coverage of each feature voxel (``w``: the truth down-sampled by
area averaging, so a thin airway still weighs at coarse stages):

``f = sum_x w_x V_x / sum_x w_x``, ``b = sum_x (1 - w_x) V_x / sum_x (1 - w_x)``, ``L = cos(f, b)``

averaged over the samples that hold both foreground and background, then over the stages. Minimising ``L`` pushes
the two mean features apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["ForegroundBackgroundSeparationLoss"]


class ForegroundBackgroundSeparationLoss(_Loss):
    """Mean cosine similarity between the foreground and background mean features of each stage.

    Args:
        min_weight: a sample counts at a stage when its foreground and background weights both exceed this (in voxels
            of that stage).
        eps: cosine similarity's norm floor.

    Inputs: ``features``, a sequence of ``(B, C_i, *s_i)`` maps; ``label`` ``(B, 1, *spatial)`` binary truth or
    ``(B, 2, *spatial)`` one-hot (channel 1 = foreground), at the full resolution. Returns a scalar in [-1, 1]
    (0, with a gradient of 0, when no sample has both classes).
    """

    def __init__(self, min_weight: float = 1e-3, eps: float = 1e-8) -> None:
        super().__init__()
        self.min_weight = float(min_weight)
        self.eps = float(eps)

    def forward(self, features: Sequence[torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        if not features:
            raise ValueError("no features to separate")
        foreground = (label[:, 1:2] if label.shape[1] > 1 else label[:, :1]).float()
        total = features[0].float().sum() * 0.0  # keeps the graph connected when no sample counts
        count = 0
        for feature in features:
            feature = feature.float()
            if feature.shape[0] != foreground.shape[0]:
                raise ValueError(f"features {tuple(feature.shape)} and label {tuple(label.shape)} differ in batch")
            weight = F.interpolate(foreground, size=feature.shape[2:], mode="area")  # coverage in [0, 1]
            fg_weight = weight.flatten(1).sum(1)
            bg_weight = (1.0 - weight).flatten(1).sum(1)
            valid = (fg_weight > self.min_weight) & (bg_weight > self.min_weight)
            if not bool(valid.any()):
                continue
            flat = feature.flatten(2)  # (B, C, N)
            w = weight.flatten(2)  # (B, 1, N)
            fg_mean = (flat * w).sum(2) / fg_weight.clamp(min=self.eps)[:, None]
            bg_mean = (flat * (1.0 - w)).sum(2) / bg_weight.clamp(min=self.eps)[:, None]
            similarity = F.cosine_similarity(fg_mean, bg_mean, dim=1, eps=self.eps)
            total = total + similarity[valid].mean()
            count += 1
        return total / max(count, 1)
