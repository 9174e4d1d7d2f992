"""Monte-Carlo uncertainty of a segmentation network: T noisy passes with dropout active, predictive entropy.

UA-MT and UG-MCL estimate the teacher's uncertainty from ``T`` stochastic forward passes, each on the input plus
clipped Gaussian noise ``clamp(N(0, sigma^2), -c, c)`` and with dropout active: the mean softmax ``p`` of the passes
gives the voxel-wise entropy ``U = -sum_c p_c log(p_c + 1e-6)`` (in nats, at most ``ln C``). Training masks the
consistency loss where ``U`` is below a threshold; at inference the entropy map can be saved beside the prediction
(MONAI Label can show it to an annotator).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["MCUncertainty", "MCUncertaintyEstimator", "add_input_noise", "mc_dropout", "predictive_entropy"]


def predictive_entropy(probabilities: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``-sum_c p_c log(p_c + eps)`` over the channel axis.

    Args:
        probabilities: ``(B, C, *spatial)`` class probabilities.
        eps: inside the logarithm (1e-6 as in UA-MT / UG-MCL).

    Returns:
        ``(B, 1, *spatial)`` entropy in nats.
    """
    return -torch.sum(probabilities * torch.log(probabilities + eps), dim=1, keepdim=True)


def add_input_noise(images: torch.Tensor, std: float = 0.1, clip: float = 0.2) -> torch.Tensor:
    """``images + clamp(N(0, std^2), -clip, clip)``, the teacher's input perturbation of UA-MT / UG-MCL."""
    return images + torch.clamp(torch.randn_like(images) * std, -clip, clip)


@contextlib.contextmanager
def mc_dropout(network: nn.Module) -> Iterator[nn.Module]:
    """Put only the dropout layers of ``network`` in training mode inside the block (Monte-Carlo dropout).

    Batch normalisation and the rest keep their mode; every module's mode is restored on exit.
    """
    dropouts = [module for module in network.modules() if isinstance(module, nn.modules.dropout._DropoutNd)]
    modes = [module.training for module in dropouts]
    try:
        for module in dropouts:
            module.train()
        yield network
    finally:
        for module, mode in zip(dropouts, modes):
            module.train(mode)


class MCUncertainty(NamedTuple):
    """Output of :class:`MCUncertaintyEstimator`: mean probabilities ``(B, C, ...)`` and entropy ``(B, 1, ...)``."""

    probabilities: torch.Tensor
    entropy: torch.Tensor


def _segmentation(output: torch.Tensor | tuple | list) -> torch.Tensor:
    """The segmentation logits of a network output (a dual-task network returns ``(logits, sdf)`` in training)."""
    return output[0] if isinstance(output, tuple | list) else output


class MCUncertaintyEstimator:
    """Predictive entropy of ``num_passes`` noisy, dropout-active passes of a network (no gradient).

    Passes are run ``passes_per_batch`` at a time on a repeated batch (UG-MCL's code runs its T = 8 passes as 4
    forwards of the batch repeated twice), which trades memory for speed without changing the estimate.

    Args:
        num_passes: ``T`` (8).
        noise_std: ``sigma`` of the input noise (0.1).
        noise_clip: ``c``, the noise is clamped to ``[-c, c]`` (0.2).
        passes_per_batch: passes computed in one forward call; must divide ``num_passes``.
        eps: the entropy's logarithm offset (1e-6).
        force_dropout: activate dropout layers even when the network is in eval mode (inference); in training the
            teacher is already in training mode.

    Raises:
        ValueError: non-positive counts, ``passes_per_batch`` not dividing ``num_passes``, or negative noise.
    """

    def __init__(
        self,
        num_passes: int = 8,
        noise_std: float = 0.1,
        noise_clip: float = 0.2,
        passes_per_batch: int = 2,
        eps: float = 1e-6,
        force_dropout: bool = True,
    ) -> None:
        if num_passes < 1 or passes_per_batch < 1 or num_passes % passes_per_batch:
            raise ValueError(
                f"num_passes ({num_passes}) must be a positive multiple of passes_per_batch ({passes_per_batch})"
            )
        if noise_std < 0 or noise_clip < 0:
            raise ValueError(f"noise_std and noise_clip must be non-negative, got {noise_std}, {noise_clip}")
        self.num_passes = int(num_passes)
        self.noise_std = float(noise_std)
        self.noise_clip = float(noise_clip)
        self.passes_per_batch = int(passes_per_batch)
        self.eps = float(eps)
        self.force_dropout = force_dropout

    @torch.no_grad()
    def __call__(
        self, network: nn.Module | Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
    ) -> MCUncertainty:
        """Estimate the uncertainty of ``network`` on ``images``.

        Args:
            network: a segmentation network (its output, or the first element of a tuple output, is the logits).
            images: ``(B, C_in, *spatial)``.

        Returns:
            :class:`MCUncertainty` with the mean softmax ``(B, C, *spatial)`` and the entropy ``(B, 1, *spatial)``.
        """
        context = (
            mc_dropout(network) if self.force_dropout and isinstance(network, nn.Module) else contextlib.nullcontext()
        )
        batch = images.shape[0]
        repeated = images.repeat(self.passes_per_batch, *([1] * (images.ndim - 1)))
        total: torch.Tensor | None = None
        with context:
            for _ in range(self.num_passes // self.passes_per_batch):
                noisy = add_input_noise(repeated, self.noise_std, self.noise_clip)
                probabilities = torch.softmax(_segmentation(network(noisy)).float(), dim=1)
                summed = probabilities.reshape(self.passes_per_batch, batch, *probabilities.shape[1:]).sum(dim=0)
                total = summed if total is None else total + summed
        mean = total / self.num_passes  # type: ignore[operator]
        return MCUncertainty(mean, predictive_entropy(mean, self.eps))
