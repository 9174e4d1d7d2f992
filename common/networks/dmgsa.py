"""DMGSA's segmentation network: a 3D U-Net whose decoder stages are infused with global semantics (GMGS blocks).

Zhang et al., "Dynamical Multi-order Responses and Global Semantic-Infused Adversarial Learning: A Robust Airway
Segmentation Method", Medical Image Analysis 2025. No official model code exists; the paper's description is the
specification:

- :class:`GMGSBlock` (Generalized-Mean-pooling based Global Semantic-infused block): point-wise features ``V`` of a
  decoder stage plus a position embedding ``V_pe`` are pooled by generalized mean (GeM) pooling with a learnable
  power ``p`` (initialised to 3; the paper reports it converging to 2.83),
  ``g = (mean_x (V_x + V_pe,x)^p)^(1/p)``, mapped by a linear layer ``G = W g + b``, and infused back into the
  stage's features by channel-wise modulation ``F' = F * (1 + tanh(G))``. The point-wise features are also what the
  training-time foreground/background separation term (``common.losses.ForegroundBackgroundSeparationLoss``) pulls
  apart.
- :class:`DMGSANet`: the U-Net (MONAI's ``UnetBasicBlock`` / ``UnetUpBlock`` / ``UnetOutBlock``, strided
  convolutions down, transposed convolutions up) with one GMGS block after every decoder stage. ``forward`` returns
  the segmentation logits only: it is what inference, TorchScript export and MONAI Label use.
- :class:`DMGSATrainingModel`: the network plus the reconstruction head that predicts the multi-order normalized
  responses (MONR) from the last decoder stage; its ``forward`` returns everything the training step needs, so that
  ``DistributedDataParallel`` can wrap it. Its ``network`` is what ``models/model.pt`` stores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from monai.networks.blocks import UnetBasicBlock, UnetOutBlock, UnetUpBlock
from monai.networks.layers.factories import Conv

from common.networks.utils import check_spatial_dims

__all__ = ["DMGSANet", "DMGSATrainingModel", "GMGSBlock", "dmgsa_architecture", "generalized_mean"]


def generalized_mean(x: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GeM pooling over the spatial dimensions: ``(mean_x max(x, eps)^p)^(1/p)``.

    Args:
        x: ``(B, C, *spatial)``.
        p: the power (a scalar tensor); 1 is average pooling, large values approach max pooling.
        eps: the floor applied to ``x`` (GeM is defined for positive inputs).

    Returns:
        ``(B, C)``, computed in float32.
    """
    x = x.float().clamp(min=eps)
    return x.pow(p).flatten(2).mean(dim=2).pow(1.0 / p)


class GMGSBlock(nn.Module):
    """Global semantic infusion of one decoder stage (see the module docstring).

    Args:
        spatial_dims: 2 or 3.
        channels: the stage's feature channels ``C``.
        p_init: the initial GeM power.
        p_min: the power is clamped at this floor in the forward pass (GeM below 1 stops being a mean of powers).
        eps: GeM's input floor.

    Shapes:
        ``forward(x)``: ``x`` ``(B, C, *spatial)`` -> ``(infused features (B, C, *spatial), point-wise features
        (B, C, *spatial))``.
    """

    def __init__(
        self, spatial_dims: int, channels: int, p_init: float = 3.0, p_min: float = 1.0, eps: float = 1e-6
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if p_init < p_min:
            raise ValueError(f"p_init must be at least p_min={p_min}, got {p_init}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.spatial_dims = spatial_dims
        self.point = conv(channels, channels, kernel_size=1)
        self.position = conv(spatial_dims, channels, kernel_size=1)
        self.p = nn.Parameter(torch.tensor(float(p_init)))
        self.p_min = float(p_min)
        self.eps = float(eps)
        self.linear = nn.Linear(channels, channels)

    def position_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised voxel coordinates in [-1, 1]: ``(1, spatial_dims, *spatial)`` of ``x``'s dtype and device."""
        axes: list[torch.Tensor] = []
        for size in x.shape[2:]:
            axes.append(torch.linspace(-1.0, 1.0, size, device=x.device, dtype=x.dtype))
        grids = torch.meshgrid(axes, indexing="ij")
        return torch.stack(grids, dim=0).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.point(x)
        embedded = features + self.position(self.position_grid(x))
        pooled = generalized_mean(embedded, self.p.clamp(min=self.p_min), self.eps)
        semantics = self.linear(pooled.to(self.linear.weight.dtype))
        gate = 1.0 + torch.tanh(semantics)
        shape = [gate.shape[0], gate.shape[1]] + [1] * self.spatial_dims
        return x * gate.reshape(shape).to(x.dtype), features


class DMGSANet(nn.Module):
    """3D (or 2D) U-Net with GMGS blocks on its decoder stages.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for CT).
        out_channels: output channels (2: background, airway).
        channels: feature channels per level, shallowest first; ``len(channels) - 1`` down-samplings by 2, so
            input sizes must be multiples of ``2^(len(channels) - 1)``.
        use_gmgs: add the GMGS blocks (False: the plain U-Net, the "no GMGS" ablation).
        gem_p: the GeM power's initial value.
        norm: normalisation layer (MONAI name).
        act: activation layer (MONAI name and arguments).
        dropout: dropout probability in the convolution blocks.

    Shapes:
        ``forward(x)``: ``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        use_gmgs: bool = True,
        gem_p: float = 3.0,
        norm: str | tuple = "instance",
        act: str | tuple = ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"channels must list at least two levels, got {channels}")
        self.spatial_dims = spatial_dims
        self.channels = tuple(int(c) for c in channels)
        self.use_gmgs = use_gmgs
        self.encoder = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(self.channels):
            self.encoder.append(
                UnetBasicBlock(spatial_dims, previous, width, 3, 1 if level == 0 else 2, norm, act, dropout)
            )
            previous = width
        self.decoder = nn.ModuleList()
        self.gmgs = nn.ModuleList()
        for level in range(len(self.channels) - 1, 0, -1):
            self.decoder.append(
                UnetUpBlock(spatial_dims, self.channels[level], self.channels[level - 1], 3, 1, 2, norm, act, dropout)
            )
            if use_gmgs:
                self.gmgs.append(GMGSBlock(spatial_dims, self.channels[level - 1], p_init=gem_p))
        self.head = UnetOutBlock(spatial_dims, self.channels[0], out_channels)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The logits, the last decoder stage's features and the GMGS point-wise features of every stage.

        Args:
            x: ``(B, in_channels, *spatial)``.

        Returns:
            ``(logits (B, out_channels, *spatial), features (B, channels[0], *spatial), [point-wise features of
            each GMGS block, deepest first])``; the list is empty without GMGS.
        """
        skips: list[torch.Tensor] = []
        out = x
        for block in self.encoder:
            out = block(out)
            skips.append(out)
        pointwise: list[torch.Tensor] = []
        for index, up in enumerate(self.decoder):
            out = up(out, skips[len(skips) - 2 - index])
            if self.use_gmgs:
                for position, gmgs in enumerate(self.gmgs):  # TorchScript indexes a ModuleList by a literal only
                    if position == index:
                        out, features = gmgs(out)
                        pointwise.append(features)
        return self.head(out), out, pointwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self.forward_features(x)
        return logits


class DMGSATrainingModel(nn.Module):
    """What DMGSA trains: the segmentation network and the MONR reconstruction head on its last decoder stage.

    Args:
        network: the :class:`DMGSANet` (its state dict is the bundle's ``models/model.pt``).
        recon_channels: channels of the MONR prediction (2 MONI + 6 MONG in 3D); 0 for no reconstruction branch
            (the "no MONR" ablation).
        hidden_channels: width of the head's hidden convolution (default: the network's first level).

    Shapes:
        ``forward(x)`` returns ``{"pred": logits (B, out_channels, *spatial), "recon": (B, recon_channels, *spatial)
        (only with a reconstruction branch), "gmgs": [point-wise features per GMGS block]}``.
    """

    def __init__(self, network: DMGSANet, recon_channels: int = 8, hidden_channels: int | None = None) -> None:
        super().__init__()
        if recon_channels < 0:
            raise ValueError(f"recon_channels must be >= 0, got {recon_channels}")
        self.network = network
        self.recon_channels = recon_channels
        self.recon_head: nn.Module | None = None
        if recon_channels:
            width = network.channels[0]
            hidden = hidden_channels or width
            self.recon_head = nn.Sequential(
                UnetBasicBlock(network.spatial_dims, width, hidden, 3, 1, "instance"),
                UnetOutBlock(network.spatial_dims, hidden, recon_channels),
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        logits, features, pointwise = self.network.forward_features(x)
        outputs: dict[str, torch.Tensor | list[torch.Tensor]] = {"pred": logits, "gmgs": pointwise}
        if self.recon_head is not None:
            outputs["recon"] = self.recon_head(features)
        return outputs


def dmgsa_architecture(
    checkpoint: str | os.PathLike,
    in_channels: int = 1,
    out_channels: int = 2,
    channels: Sequence[int] = (32, 64, 128, 256, 512),
    use_gmgs: bool = True,
) -> dict[str, Any]:
    """The :class:`DMGSANet` arguments a saved state dict was made with, or the given defaults when it does not exist.

    An inference config that reads them loads whatever variant training saved (the paper's widths, the quick
    configuration's narrow ones, the "no GMGS" ablation) without being told.

    Args:
        checkpoint: a ``DMGSANet`` state dict file (the bundle's ``models/model.pt``).
        in_channels: default input channels.
        out_channels: default output channels.
        channels: default widths per level.
        use_gmgs: default GMGS switch.

    Returns:
        ``{"in_channels", "out_channels", "channels", "use_gmgs"}``.

    Raises:
        ValueError: the file exists but holds no DMGSANet state dict.
    """
    defaults = {
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "channels": [int(c) for c in channels],
        "use_gmgs": bool(use_gmgs),
    }
    path = Path(checkpoint)
    if not path.is_file():
        return defaults
    state = torch.load(path, map_location="cpu", weights_only=True)
    widths = []
    while f"encoder.{len(widths)}.conv1.conv.weight" in state:
        widths.append(int(state[f"encoder.{len(widths)}.conv1.conv.weight"].shape[0]))
    if not widths or "head.conv.conv.weight" not in state:
        raise ValueError(f"{path} does not hold a DMGSANet state dict (no encoder.0 / head weights)")
    return {
        "in_channels": int(state["encoder.0.conv1.conv.weight"].shape[1]),
        "out_channels": int(state["head.conv.conv.weight"].shape[0]),
        "channels": widths,
        "use_gmgs": any(key.startswith("gmgs.") for key in state),
    }
