"""DMGSA's training step: masked input, supervised + reconstruction + separation terms, two discriminators.

Per iteration, on the batch's device (Zhang et al., MedIA 2025; see ``common.networks.dmgsa``):

1. **DMR**: each image of the batch is hidden under cubes covering ``engine.state.mask_ratio`` of it (written by
   ``common.handlers.DynamicMaskRatio``; the masking transform gets the ratio from here, so that data-loader workers
   and processes need not know it); the cube mask joins the output as ``mask``.
2. **MONR** targets from the unmasked image (``common.transforms.MultiOrderResponses``): 2 MONI + 6 MONG channels.
3. The training model (segmentation network with GMGS blocks + reconstruction head) runs on the masked input.
4. Loss terms: ``supervised`` (Dice + cross-entropy of the full prediction against the label), ``reconstruction``
   (smooth L1 of the predicted MONR against the targets on the hidden voxels, times ``reconstruction_weight``),
   ``separation`` (the GMGS foreground/background cosine term, times ``separation_weight``), and, from
   :class:`~common.engines.adversarial.MultiDiscriminatorTrainer`, one adversarial term per discriminator: D1 tells
   the predicted MONI (``moni_pred``) from the real ones (``moni``), D2 the MONG (``mong_pred`` / ``mong``).
   The paper states only ``min_G max_D`` and no official model code exists, so the discriminators follow the shared
   trainer's rule: each iteration they are updated first, on reconstructions of a separate pass of the model in eval
   mode without gradient (its own mask draw), real and fake apart; then they score the model's step frozen in eval
   mode.

Each component can be left out (``masking=None``, ``targets=None``, a network without GMGS blocks, no
discriminators): the ablations of the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.utils.enums import CommonKeys as Keys
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from common.engines.adversarial import DiscriminatorSpec, MultiDiscriminatorTrainer
from common.losses.reconstruction import MaskedSmoothL1Loss
from common.losses.separation import ForegroundBackgroundSeparationLoss
from common.transforms.cube_mask import RandCubeMask
from common.transforms.monr import MultiOrderResponses

__all__ = ["DMGSATrainer", "MASK_KEY", "mask_batch"]

MASK_KEY = "mask"
"""Output key of the ``(B, 1, *spatial)`` cube mask (1 = hidden voxel)."""


def mask_batch(masking: RandCubeMask, images: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide ``ratio`` of every image of a batch under cubes, each image with its own draw.

    Args:
        masking: the cube masking transform (its random state makes the draws reproducible).
        images: ``(B, C, *spatial)`` on any device.
        ratio: the fraction to hide.

    Returns:
        ``(masked images, mask)``: the masked batch and the ``(B, 1, *spatial)`` float mask, on the images' device.
    """
    masking.ratio = ratio
    masked, masks = [], []
    for image in images:
        masked.append(masking(image))
        masks.append(masking.mask(device=images.device))
    return torch.stack(masked), torch.stack(masks)


class DMGSATrainer(MultiDiscriminatorTrainer):
    """The DMGSA training step (see the module docstring) on MONAI's ``Trainer``.

    Args:
        device: the device to train on.
        max_epochs: the number of epochs.
        train_data_loader: yields dicts with ``image`` ``(B, 1, *spatial)`` and ``label`` ``(B, 1, *spatial)``.
        network: ``common.networks.DMGSATrainingModel`` (or its ``DistributedDataParallel`` wrapper): returns
            ``{"pred", "recon" (with a reconstruction head), "gmgs" (point-wise features)}``.
        optimizer: the network's optimizer.
        loss_function: the supervised loss ``(pred, label)``, e.g. MONAI's ``DiceCELoss(to_onehot_y=True,
            softmax=True)``.
        discriminators: D1 (MONI) and D2 (MONG) as :class:`DiscriminatorSpec` with inputs ``("moni", "moni_pred")``
            and ``("mong", "mong_pred")``; none: no adversarial learning.
        masking: the cube masking (None: no masking at all).
        targets: the MONR targets (None: no reconstruction branch; the network must then have no head either).
        reconstruction_loss: default :class:`MaskedSmoothL1Loss`.
        separation_loss: default :class:`ForegroundBackgroundSeparationLoss`.
        reconstruction_weight: weight of the reconstruction term.
        separation_weight: weight of the GMGS separation term (0 leaves it out).
        mask_ratio_key: the ``engine.state`` attribute holding the mask ratio (written by
            ``common.handlers.DynamicMaskRatio``; required when ``masking`` is given).
        kwargs: the other arguments of :class:`MultiDiscriminatorTrainer` / :class:`common.engines.MethodTrainer`
            (``epoch_length``, ``prepare_batch``, ``inferer``, ``train_handlers``, ``amp``, ...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        discriminators: Sequence[DiscriminatorSpec] = (),
        masking: RandCubeMask | None = None,
        targets: MultiOrderResponses | None = None,
        reconstruction_loss: Callable | None = None,
        separation_loss: Callable | None = None,
        reconstruction_weight: float = 1.0,
        separation_weight: float = 0.1,
        mask_ratio_key: str = "mask_ratio",
        **kwargs: Any,
    ) -> None:
        if discriminators and targets is None:
            raise ValueError("the discriminators compare reconstructed MONR with their targets: give targets too")
        if reconstruction_weight < 0 or separation_weight < 0:
            raise ValueError("loss weights must be non-negative")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            discriminators=discriminators,
            **kwargs,
        )
        self.masking = masking
        self.targets = targets
        self.reconstruction_loss = reconstruction_loss or MaskedSmoothL1Loss()
        self.separation_loss = separation_loss or ForegroundBackgroundSeparationLoss()
        self.reconstruction_weight = float(reconstruction_weight)
        self.separation_weight = float(separation_weight)
        self.mask_ratio_key = mask_ratio_key

    def segmenter_step(
        self, engine: DMGSATrainer, batchdata: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Mask, compute the MONR targets, run the model and weigh the loss terms.

        Returns:
            ``(outputs, terms)``: outputs ``image`` (the unmasked input), ``label``, ``pred``, ``mask``, and with a
            reconstruction branch ``moni``/``moni_pred``/``mong``/``mong_pred``; terms ``supervised`` and, where
            enabled, ``reconstruction`` and ``separation``.

        Raises:
            AttributeError: with masking, no handler wrote the mask ratio to ``engine.state``.
            ValueError: the network and the targets disagree on the reconstruction branch.
        """
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        image, label = batch[0], batch[1]
        if engine.masking is not None:
            # no silent fallback to 0: that would switch masking and the reconstruction term off without a word
            ratio = engine.state_value(
                engine.mask_ratio_key,
                handler=f'common.handlers.DynamicMaskRatio(state_name="{engine.mask_ratio_key}", ...)',
                hint=" (fixed_ratio=... for a constant ratio), or give masking=None for no masking",
            )
            masked, mask = mask_batch(engine.masking, image, float(ratio))
        else:
            masked, mask = image, torch.zeros_like(image[:, :1])
        model_out = engine.inferer(masked, engine.network)
        pred = model_out["pred"]
        outputs: dict[str, Any] = {Keys.IMAGE: image, Keys.LABEL: label, Keys.PRED: pred, MASK_KEY: mask}
        terms = {"supervised": engine.loss_function(pred, label).mean()}

        if ("recon" in model_out) != (engine.targets is not None):
            raise ValueError(
                "the network's reconstruction head and the trainer's MONR targets must be both present or both absent"
            )
        if engine.targets is not None:
            target = engine.targets(image)
            recon = model_out["recon"]
            if recon.shape != target.shape:
                raise ValueError(
                    f"reconstruction {tuple(recon.shape)} does not match the targets {tuple(target.shape)}"
                )
            terms["reconstruction"] = engine.reconstruction_weight * engine.reconstruction_loss(recon, target, mask)
            orders = len(engine.targets.orders)
            outputs.update(
                moni=target[:, :orders],
                moni_pred=recon[:, :orders],
                mong=target[:, orders:],
                mong_pred=recon[:, orders:],
            )
        features = model_out.get("gmgs") or []
        if features and engine.separation_weight > 0:
            terms["separation"] = engine.separation_weight * engine.separation_loss(features, label)
        return outputs, terms
