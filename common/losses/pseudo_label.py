"""Hard pseudo-labels with a confidence mask, and the cross-entropy that ignores the masked pixels.

Self-training methods (FixMatch, CPS, DFCPS) turn a network's prediction into a hard pseudo-label and train a
prediction on it, optionally only where the prediction was confident:

- softmax heads (``C >= 2`` channels): label ``argmax_c p_c``, confidence ``max_c p_c``;
- sigmoid heads (any number of independent channels): label ``p > 0.5`` per channel, confidence ``max(p, 1 - p)``.

A pixel (or, for sigmoid heads, a pixel of one channel) whose confidence is below the threshold ``tau`` is *ignored*:
it contributes nothing to the loss and receives no gradient, it is not turned into background. With ``tau = 0`` every
pixel is kept (CPS's and DFCPS's official code).

:class:`MaskedCrossEntropyLoss` averages the per-pixel cross-entropy (softmax) or binary cross-entropy (sigmoid, per
channel) ``l`` masked by the confidence mask ``m``. Pixels whose target is ``ignore_index`` (255: the padding of a
random crop) are *invalid*: outside the numerator and the denominator, for any mask. Two normalisers of the masked sum
over the valid elements ``v``:

- ``reduction="mean"`` (default; FixMatch, TorchSemiSeg and UniMatch): ``sum(v * m * l) / max(sum(v), 1)``, i.e.
  ``(mask * loss).mean()`` over the valid pixels: the term shrinks with the confident fraction;
- ``reduction="confident"`` (ours, an option): ``sum(v * m * l) / max(sum(v * m), 1)``, the mean over the kept pixels,
  which grows the weight of the term by ``1 / confident fraction``.

Without a mask both are the mean over the valid elements, as PyTorch's ``cross_entropy(ignore_index=...)``; when every
element is masked or invalid the loss is exactly 0 with zero gradient (PyTorch's ``ignore_index`` would give NaN).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IGNORE_INDEX", "MaskedCrossEntropyLoss", "PseudoLabels", "pseudo_labels"]

IGNORE_INDEX = 255  # the label of padded pixels (TorchSemiSeg's random_crop_pad_to_shape pads the label with 255)
_REDUCTIONS = ("mean", "confident")


class PseudoLabels(NamedTuple):
    """Output of :func:`pseudo_labels`, all detached from the graph.

    Attributes:
        labels: softmax: class indices ``(B, 1, *spatial)`` (long); sigmoid: ``(B, C, *spatial)`` of 0/1 (float);
            ``ignore_index`` where the pixel is invalid (padding).
        mask: 1 where the confidence reaches the threshold and the pixel is valid, else 0; the shape of ``labels``
            (float).
        confidence: the confidence of each label, the shape of ``labels`` (float).
    """

    labels: torch.Tensor
    mask: torch.Tensor
    confidence: torch.Tensor


def pseudo_labels(
    logits: torch.Tensor,
    sigmoid: bool = False,
    threshold: float = 0.0,
    valid: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> PseudoLabels:
    """Hard pseudo-labels of a prediction and the mask of those at least ``threshold`` confident.

    Args:
        logits: ``(B, C, *spatial)`` logits (any graph is cut: pseudo-labels carry no gradient).
        sigmoid: sigmoid head (per-channel labels ``p > 0.5``) instead of a softmax head (``argmax``).
        threshold: ``tau`` in [0, 1]: labels whose confidence is below it are masked out.
        valid: None (every pixel), or ``(B, 1, *spatial)`` with 0 at the pixels that are not part of the image (the
            padding of a random crop): their label becomes ``ignore_index`` and their mask 0, so that a loss with
            that ``ignore_index`` leaves them out of its numerator and denominator.
        ignore_index: the label of invalid pixels.

    Returns:
        :class:`PseudoLabels`.

    Raises:
        ValueError: ``threshold`` outside [0, 1], a softmax head with fewer than two channels, or a ``valid`` mask of
            another batch or spatial shape.
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
        if valid is not None:
            valid = valid.detach().to(device=logits.device)
            if valid.ndim == logits.ndim - 1:
                valid = valid.unsqueeze(1)
            if valid.shape[0] != logits.shape[0] or valid.shape[1] != 1 or valid.shape[2:] != logits.shape[2:]:
                raise ValueError(
                    f"the valid mask must be (B, 1, *spatial) of logits {tuple(logits.shape)}, got {tuple(valid.shape)}"
                )
            invalid = (valid <= 0).expand_as(labels)
            labels = labels.masked_fill(invalid, ignore_index)
            mask = mask.masked_fill(invalid, 0.0)
    return PseudoLabels(labels, mask, confidence)


class MaskedCrossEntropyLoss(nn.Module):
    """Cross-entropy of logits against hard labels, masked by a confidence mask, without the ignored (padded) pixels.

    Args:
        sigmoid: binary cross-entropy per channel on sigmoid logits (targets ``(B, C, *spatial)`` of 0/1) instead of
            the softmax cross-entropy over the channel axis (targets: class indices ``(B, 1, *spatial)``).
        reduction: the normaliser of the masked sum (see the module docstring): ``"mean"`` (the number of valid
            elements: FixMatch's and TorchSemiSeg's ``(mask * loss).mean()``) or ``"confident"`` (the number of
            valid elements the mask keeps; ours).
        ignore_index: a target value marking invalid elements (no loss, not counted), e.g. 255 for the padding of a
            random crop; None: every target is a class.

    ``forward(input, target, mask=None)``:

    - ``input``: logits ``(B, C, *spatial)``;
    - ``target``: softmax: class indices ``(B, 1, *spatial)`` or ``(B, *spatial)`` (any dtype holding integers, e.g.
      a label map or :func:`pseudo_labels`); sigmoid: ``(B, C, *spatial)`` of 0/1; ``ignore_index`` anywhere;
    - ``mask``: None (every element), or weights in [0, 1] of the target's shape (1 keeps an element, 0 ignores it);

    returns a scalar (``sum(v * m * l) / max(sum(v), 1)`` for ``"mean"``), where ``l`` is the per-element
    cross-entropy (computed in float32 under mixed precision) and ``v`` is 1 where the target is not ``ignore_index``.

    Raises:
        ValueError: an unknown ``reduction``.
    """

    def __init__(
        self,
        sigmoid: bool = False,
        reduction: Literal["mean", "confident"] = "mean",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.sigmoid = bool(sigmoid)
        self.reduction = reduction
        self.ignore_index = None if ignore_index is None else int(ignore_index)

    def _check_target(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.sigmoid:
            if target.shape != logits.shape:
                raise ValueError(
                    f"sigmoid targets must have the logits' shape {tuple(logits.shape)}, got {target.shape}"
                )
            return target
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        if target.shape[1] != 1 or target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"softmax targets must be class indices (B, 1, *spatial) matching logits {tuple(logits.shape)}, got "
                f"{tuple(target.shape)}"
            )
        return target

    def valid(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """1 where the target is a class, 0 where it is ``ignore_index``: the shape of :meth:`elementwise`'s output."""
        target = self._check_target(input, target)
        if self.ignore_index is None:
            return torch.ones(target.shape, dtype=torch.float32, device=target.device)
        return (target != self.ignore_index).float()

    def elementwise(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-element cross-entropy: ``(B, 1, *spatial)`` (softmax) or ``(B, C, *spatial)`` (sigmoid); 0 where the
        target is ``ignore_index``.

        Raises:
            ValueError: shapes that do not fit.
        """
        logits = input.float()
        target = self._check_target(logits, target)
        if self.ignore_index is not None:
            # a valid placeholder class for the ignored elements; their loss is zeroed below
            ignored = target == self.ignore_index
            target = target.masked_fill(ignored, 0)
        if self.sigmoid:
            losses = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        else:
            losses = F.cross_entropy(logits, target[:, 0].long(), reduction="none").unsqueeze(1)
        if self.ignore_index is not None:
            losses = losses.masked_fill(ignored, 0.0)
        return losses

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The masked cross-entropy with this loss's normaliser (see the class docstring)."""
        losses = self.elementwise(input, target)
        valid = self.valid(input, target)
        if mask is None:
            mask = torch.ones_like(losses)
        else:
            mask = mask.to(losses.dtype)
            if mask.ndim == losses.ndim - 1:
                mask = mask.unsqueeze(1)
            if mask.shape != losses.shape:
                raise ValueError(f"the mask {tuple(mask.shape)} must have the target's shape {tuple(losses.shape)}")
        kept = mask * valid
        denominator = valid.sum() if self.reduction == "mean" else kept.sum()
        return (losses * kept).sum() / denominator.clamp(min=1.0)
