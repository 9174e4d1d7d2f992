"""Hard pseudo-labels with a confidence mask, and the cross-entropy that ignores the masked pixels.

Self-training methods (FixMatch, CPS, DFCPS) turn a network's prediction into a hard pseudo-label and train a
prediction on it, optionally only where the prediction was confident:

- softmax heads (``C >= 2`` channels): label ``argmax_c p_c``, confidence ``max_c p_c``;
- sigmoid heads (any number of independent channels): label ``p > 0.5`` per channel, confidence ``max(p, 1 - p)``.

A pixel (or, for sigmoid heads, a pixel of one channel) whose confidence is below the threshold ``tau`` is *ignored*:
it contributes nothing to the loss and receives no gradient, it is not turned into background. With ``tau = 0`` every
pixel is kept (CPS's and DFCPS's official code).

:class:`MaskedCrossEntropyLoss` averages the per-pixel cross-entropy (softmax) or binary cross-entropy (sigmoid, per
channel) over the kept elements: ``sum(mask * l) / max(sum(mask), 1)``. Without a mask this is the plain mean, as
PyTorch's ``cross_entropy``; when every element is masked the loss is exactly 0 with zero gradient (PyTorch's
``ignore_index`` would give NaN).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskedCrossEntropyLoss", "PseudoLabels", "pseudo_labels"]


class PseudoLabels(NamedTuple):
    """Output of :func:`pseudo_labels`, all detached from the graph.

    Attributes:
        labels: softmax: class indices ``(B, 1, *spatial)`` (long); sigmoid: ``(B, C, *spatial)`` of 0/1 (float).
        mask: 1 where the confidence reaches the threshold, else 0; the shape of ``labels`` (float).
        confidence: the confidence of each label, the shape of ``labels`` (float).
    """

    labels: torch.Tensor
    mask: torch.Tensor
    confidence: torch.Tensor


def pseudo_labels(logits: torch.Tensor, sigmoid: bool = False, threshold: float = 0.0) -> PseudoLabels:
    """Hard pseudo-labels of a prediction and the mask of those at least ``threshold`` confident.

    Args:
        logits: ``(B, C, *spatial)`` logits (any graph is cut: pseudo-labels carry no gradient).
        sigmoid: sigmoid head (per-channel labels ``p > 0.5``) instead of a softmax head (``argmax``).
        threshold: ``tau`` in [0, 1]: labels whose confidence is below it are masked out.

    Returns:
        :class:`PseudoLabels`.

    Raises:
        ValueError: ``threshold`` outside [0, 1], or a softmax head with fewer than two channels.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the confidence threshold must be in [0, 1], got {threshold}")
    with torch.no_grad():
        logits = logits.detach().float()
        if sigmoid:
            probabilities = torch.sigmoid(logits)
            labels = (probabilities > 0.5).float()
            confidence = torch.maximum(probabilities, 1.0 - probabilities)
        else:
            if logits.shape[1] < 2:
                raise ValueError(
                    f"a softmax head needs at least two channels, got {logits.shape[1]} (use sigmoid=True)"
                )
            confidence, labels = torch.softmax(logits, dim=1).max(dim=1, keepdim=True)
        mask = (confidence >= threshold).float()
    return PseudoLabels(labels, mask, confidence)


class MaskedCrossEntropyLoss(nn.Module):
    """Cross-entropy of logits against hard labels, averaged over the elements a mask keeps.

    Args:
        sigmoid: binary cross-entropy per channel on sigmoid logits (targets ``(B, C, *spatial)`` of 0/1) instead of
            the softmax cross-entropy over the channel axis (targets: class indices ``(B, 1, *spatial)``).

    ``forward(input, target, mask=None)``:

    - ``input``: logits ``(B, C, *spatial)``;
    - ``target``: softmax: class indices ``(B, 1, *spatial)`` or ``(B, *spatial)`` (any dtype holding integers, e.g.
      a label map or :func:`pseudo_labels`); sigmoid: ``(B, C, *spatial)`` of 0/1;
    - ``mask``: None (every element), or weights in [0, 1] of the target's shape (1 keeps an element, 0 ignores it);

    returns ``sum(mask * l) / max(sum(mask), 1)``, a scalar, where ``l`` is the per-element cross-entropy (computed in
    float32 under mixed precision).
    """

    def __init__(self, sigmoid: bool = False) -> None:
        super().__init__()
        self.sigmoid = bool(sigmoid)

    def elementwise(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-element cross-entropy: ``(B, 1, *spatial)`` (softmax) or ``(B, C, *spatial)`` (sigmoid).

        Raises:
            ValueError: shapes that do not fit.
        """
        logits = input.float()
        if self.sigmoid:
            if target.shape != logits.shape:
                raise ValueError(
                    f"sigmoid targets must have the logits' shape {tuple(logits.shape)}, got {target.shape}"
                )
            return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        if target.shape[1] != 1 or target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"softmax targets must be class indices (B, 1, *spatial) matching logits {tuple(logits.shape)}, got "
                f"{tuple(target.shape)}"
            )
        return F.cross_entropy(logits, target[:, 0].long(), reduction="none").unsqueeze(1)

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The masked mean cross-entropy (see the class docstring)."""
        losses = self.elementwise(input, target)
        if mask is None:
            return losses.mean()
        mask = mask.to(losses.dtype)
        if mask.ndim == losses.ndim - 1:
            mask = mask.unsqueeze(1)
        if mask.shape != losses.shape:
            raise ValueError(f"the mask {tuple(mask.shape)} must have the target's shape {tuple(losses.shape)}")
        return (losses * mask).sum() / mask.sum().clamp(min=1.0)
