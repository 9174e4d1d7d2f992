"""DFCPS's training step: dual FixMatch cross pseudo supervision of two networks (Chen et al., ISBI 2024).

Two networks A and B with their own optimizers learn from a batch of labeled then unlabeled images, given as a weak
view ``x_w`` (``image``) and a strong view ``x_s`` (``image_strong``, the weak view plus photometric corruption,
aligned with it pixel for pixel; see :class:`common.transforms.RandStrongViewd`):

1. ``z_A = A(x_w)``, ``z_B = B(x_w)``; pseudo-labels ``y_A``, ``y_B`` of the detached weak predictions (argmax of the
   softmax, or ``p > 0.5`` for a sigmoid head) and their confidence masks ``m_A``, ``m_B`` (confidence >= ``tau``;
   pixels below are ignored, not set to background);
2. ``L_sup = CE(z_A[:n], y) + CE(z_B[:n], y)`` on the ``n`` labeled cases;
3. **CPS**: B's pseudo-label supervises A's weak prediction and A's supervises B's:
   ``L_cps = CE_{m_B}(z_A, y_B) + CE_{m_A}(z_B, y_A)``;
4. **FixMatch**: each network's own weak pseudo-label supervises its strong prediction:
   ``L_fm = CE_{m_A}(A(x_s), y_A) + CE_{m_B}(B(x_s), y_B)``;
5. ``loss = L_sup + w_cps L_cps + w_fm L_fm`` (``w_cps = 1.5``, ``w_fm = 1.0``: the official code), one backward pass,
   then both optimizers step. Pseudo-labels carry no gradient, so A's update depends only on the terms of A's
   predictions and B's on B's: the same as two separate backward passes.

``CE_m`` is :class:`common.losses.MaskedCrossEntropyLoss`: by default ``sum(m * l) / #valid pixels``, FixMatch's and
TorchSemiSeg's ``(mask * loss).mean()``, so the confident fraction scales the term (``reduction="confident"``, ours,
divides by the number of kept pixels instead, which multiplies the unsupervised weights by 1 / confident fraction).
As in the official code (built on TorchSemiSeg's CPS), the CPS and FixMatch terms cover every image of the batch,
labeled ones included (``consistency_on_labeled=False`` restricts them to the unlabeled part), and the weights are
constant: no ramp-up.

Padding: the official weak view (flip, random scale, random crop) pads images smaller than the crop and labels the
padded pixels 255 (``ignore_index``). Those pixels are no part of the image: the supervised loss ignores them, and
their pseudo-labels are ``ignore_index`` too, so they count in neither the numerator nor the denominator of the CPS
and FixMatch terms (as UniMatch's ``ignore_mask != 255``; TorchSemiSeg's and DFCPS's CPS take the argmax of every
pixel, padding included). The batch's ``valid`` images (``(B, C, *spatial)``, 0 on padding; both streams carry them, see
the bundle's transforms) say where the unlabeled images are padded; labeled pixels whose label is ``ignore_index`` are
invalid as well.

Where the official code differs (``exp.voc/voc8.res50v3+.CPS+DFCPS/train.py``): it draws the strong view with its own
geometry (flip, scale, crop), so its "FixMatch" term trains each strong prediction on that prediction's own argmax,
and its second network's strong unlabeled prediction comes from the first network (``step=1``). Here the views are
aligned and the pseudo-label is the weak view's, as FixMatch and the DFCPS paper describe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer

from common.engines.base import MethodTrainer
from common.losses.pseudo_label import IGNORE_INDEX, MaskedCrossEntropyLoss, PseudoLabels, pseudo_labels

__all__ = ["DFCPSTrainer"]


class DFCPSTrainer(MethodTrainer):
    """Semi-supervised trainer of two networks with cross pseudo supervision and FixMatch (DFCPS).

    MONAI's ``network`` and ``optimizer`` are network A and its optimizer; ``network_b`` and ``optimizer_b`` are the
    second pair. Handlers that read ``engine.network`` (none of the stock ones the bundles use) see A; validation and
    inference use the averaged probabilities of both (:class:`common.networks.ProbabilityEnsemble`), built in the
    config from the same two modules. Checkpoint both networks, both optimizers and both LR schedulers.

    Args:
        device: the device of the networks.
        max_epochs: epochs to train.
        train_data_loader: a :class:`common.data.LabeledUnlabeledLoader` whose batches carry ``strong_image_key``
            (``extra_keys=["image_strong"]``).
        network: network A (logits ``(B, C, *spatial)``; may be wrapped in ``DistributedDataParallel``).
        optimizer: A's optimizer.
        network_b: network B, of A's output shape, initialised differently.
        optimizer_b: B's optimizer.
        loss_function: the supervised loss of each network's labeled logits against the labels ``(n, 1, *spatial)``
            (default: :class:`common.losses.MaskedCrossEntropyLoss` without a mask, i.e. cross-entropy over the
            valid pixels); invalid pixels reach it labeled ``ignore_index``, which it must ignore.
        sigmoid: the networks have sigmoid heads (binary cross-entropy per channel, pseudo-labels ``p > 0.5``)
            instead of softmax heads.
        threshold: ``tau``: pseudo-labels less confident are ignored; 0 keeps every pixel (the official code).
        cps_weight: weight of the CPS term (1.5 in the official code).
        fixmatch_weight: weight of the FixMatch term (1.0 in the official code; 0 skips the strong forward passes,
            which is plain CPS).
        consistency_on_labeled: apply CPS and FixMatch to the labeled images too (the official code) or only to the
            unlabeled ones.
        reduction: normaliser of the CPS and FixMatch terms: ``"mean"`` (every valid pixel: FixMatch / TorchSemiSeg)
            or ``"confident"`` (the kept pixels; ours). See :class:`common.losses.MaskedCrossEntropyLoss`.
        ignore_index: the label of padded pixels (255 as in TorchSemiSeg), ignored by the default supervised loss and
            given to the pseudo-labels of invalid pixels.
        strong_image_key: batch key of the strong views.
        valid_key: batch key of the ``(B, C, *spatial)`` validity masks (0 on padding, in every channel); a batch
            without it is valid wherever its labels are not ``ignore_index``.
        kwargs: other arguments of :class:`common.engines.MethodTrainer` / MONAI's ``SupervisedTrainer``
            (``train_handlers``, ``amp``, ``epoch_length``, ``inferer``, ...).

    Raises:
        ValueError: no second network or optimizer, a negative weight, a threshold outside [0, 1], or an unknown
            reduction.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: nn.Module,
        optimizer: Optimizer,
        network_b: nn.Module,
        optimizer_b: Optimizer,
        loss_function: Callable | None = None,
        sigmoid: bool = False,
        threshold: float = 0.9,
        cps_weight: float = 1.5,
        fixmatch_weight: float = 1.0,
        consistency_on_labeled: bool = True,
        reduction: str = "mean",
        ignore_index: int = IGNORE_INDEX,
        strong_image_key: str = "image_strong",
        valid_key: str = "valid",
        **kwargs: Any,
    ) -> None:
        if network_b is None or optimizer_b is None:
            raise ValueError("DFCPS needs a second network and its optimizer (network_b, optimizer_b)")
        if network_b is network:
            raise ValueError("network_b must be another network than network A (CPS needs two initialisations)")
        if cps_weight < 0 or fixmatch_weight < 0:
            raise ValueError(f"loss weights must be non-negative, got cps {cps_weight}, fixmatch {fixmatch_weight}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"the confidence threshold tau must be in [0, 1], got {threshold}")
        criterion = MaskedCrossEntropyLoss(sigmoid=sigmoid, reduction=reduction, ignore_index=ignore_index)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function
            if loss_function is not None
            else MaskedCrossEntropyLoss(sigmoid=sigmoid, ignore_index=ignore_index),
            **kwargs,
        )
        self.network_b = network_b
        self.optimizer_b = optimizer_b
        self.pseudo_label_loss = criterion
        self.sigmoid = bool(sigmoid)
        self.threshold = float(threshold)
        self.cps_weight = float(cps_weight)
        self.fixmatch_weight = float(fixmatch_weight)
        self.consistency_on_labeled = bool(consistency_on_labeled)
        self.ignore_index = int(ignore_index)
        self.strong_image_key = strong_image_key
        self.valid_key = valid_key

    def pseudo_labels(self, logits: torch.Tensor, valid: torch.Tensor | None = None) -> PseudoLabels:
        """Detached pseudo-labels and confidence masks of ``logits`` with this trainer's head and ``tau``; invalid
        pixels (``valid`` 0) get ``ignore_index`` and mask 0."""
        return pseudo_labels(
            logits, sigmoid=self.sigmoid, threshold=self.threshold, valid=valid, ignore_index=self.ignore_index
        )

    def valid_mask(self, batchdata: dict[str, Any], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *spatial)`` float: 1 on image pixels, 0 on padding.

        The batch's ``valid_key`` images where present (all ones otherwise; any number of channels, e.g. the image's
        as :class:`common.data.LabeledUnlabeledLoader` requires: a pixel is valid where every channel is positive),
        and 0 where a labeled pixel's label is ``ignore_index`` (the first ``len(labels)`` cases are the labeled ones).

        Raises:
            ValueError: validity masks of another batch or spatial shape than the images.
        """
        shape = (images.shape[0], 1, *images.shape[2:])
        if self.valid_key in batchdata:
            valid = batchdata[self.valid_key].to(self.state.device, non_blocking=self.non_blocking).float()
            if valid.ndim != images.ndim or valid.shape[0] != shape[0] or tuple(valid.shape[2:]) != shape[2:]:
                raise ValueError(f"validity masks {tuple(valid.shape)} must be (B, C, *spatial) of images {shape}")
            valid = (valid.amin(dim=1, keepdim=True) > 0).float()
        else:
            valid = images.new_ones(shape, dtype=torch.float32)
        labeled = (labels != self.ignore_index).all(dim=1, keepdim=True).float()
        valid[: labels.shape[0]] = valid[: labels.shape[0]] * labeled
        return valid

    def _strong_images(self, batchdata: dict[str, Any], like: torch.Tensor) -> torch.Tensor:
        if self.strong_image_key not in batchdata:
            raise ValueError(
                f"the batch has no {self.strong_image_key!r} (strong views): add common.transforms.RandStrongViewd to "
                "both streams' transforms and pass extra_keys=['image_strong'] to LabeledUnlabeledLoader"
            )
        strong = batchdata[self.strong_image_key].to(
            self.state.device, non_blocking=self.non_blocking, **self.to_kwargs
        )
        if strong.shape != like.shape:
            raise ValueError(f"strong views {tuple(strong.shape)} must have the weak views' shape {tuple(like.shape)}")
        return strong

    def _iteration(self, engine: DFCPSTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        """DFCPS's training step (see the module docstring).

        Returns:
            MONAI's ``image``, ``label``, ``pred`` (A's weak logits) and ``loss``, plus ``loss_sup``, ``loss_cps`` and
            ``loss_fixmatch`` (both networks' terms summed, unweighted), the per-network terms (``loss_sup_a``,
            ``loss_sup_b``, ``loss_cps_a`` for A's prediction supervised by B, ``loss_cps_b``, ``loss_fixmatch_a``,
            ``loss_fixmatch_b``) and ``confident_fraction_a`` / ``_b`` (the share of A's / B's pseudo-labels kept,
            among the valid pixels).
        """
        images, labels, num_labeled = engine.split_batch(batchdata)
        use_strong = engine.fixmatch_weight > 0
        strong = engine._strong_images(batchdata, images) if use_strong else None
        start = 0 if engine.consistency_on_labeled else num_labeled
        valid = engine.valid_mask(batchdata, images, labels)
        # a pixel the view invalidated but the label did not (e.g. a rotated-in corner) is ignored as padding is
        labels = labels.masked_fill(valid[:num_labeled].expand_as(labels) <= 0, engine.ignore_index)
        engine.state.output = {Keys.IMAGE: images, Keys.LABEL: labels}
        network_a, network_b = engine.network, engine.network_b
        network_a.train()
        network_b.train()
        engine.zero_grad([engine.optimizer, engine.optimizer_b])
        criterion = engine.pseudo_label_loss
        zero = images.new_zeros(())
        with engine.autocast():
            weak_a = engine.inferer(images, network_a)
            weak_b = engine.inferer(images, network_b)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            terms = {
                "sup_a": engine.loss_function(weak_a[:num_labeled], labels),
                "sup_b": engine.loss_function(weak_b[:num_labeled], labels),
                "cps_a": zero,
                "cps_b": zero,
                "fixmatch_a": zero,
                "fixmatch_b": zero,
            }
            fraction_a = fraction_b = 0.0
            if start < images.shape[0]:
                pseudo_a = engine.pseudo_labels(weak_a[start:], valid[start:])
                pseudo_b = engine.pseudo_labels(weak_b[start:], valid[start:])
                channels = pseudo_a.mask.shape[1]  # sigmoid heads: one mask per channel
                num_valid = max(float(valid[start:].sum()) * channels, 1.0)
                fraction_a = float(pseudo_a.mask.sum()) / num_valid
                fraction_b = float(pseudo_b.mask.sum()) / num_valid
                terms["cps_a"] = criterion(weak_a[start:], pseudo_b.labels, pseudo_b.mask)
                terms["cps_b"] = criterion(weak_b[start:], pseudo_a.labels, pseudo_a.mask)
                if strong is not None:
                    strong_a = engine.inferer(strong[start:], network_a)
                    strong_b = engine.inferer(strong[start:], network_b)
                    terms["fixmatch_a"] = criterion(strong_a, pseudo_a.labels, pseudo_a.mask)
                    terms["fixmatch_b"] = criterion(strong_b, pseudo_b.labels, pseudo_b.mask)
            loss_sup = terms["sup_a"] + terms["sup_b"]
            loss_cps = terms["cps_a"] + terms["cps_b"]
            loss_fixmatch = terms["fixmatch_a"] + terms["fixmatch_b"]
            loss = loss_sup + engine.cps_weight * loss_cps + engine.fixmatch_weight * loss_fixmatch
        engine.state.output[Keys.PRED] = weak_a
        engine.state.output[Keys.LOSS] = loss
        engine.optimize(loss, [engine.optimizer, engine.optimizer_b])
        engine.state.output[Keys.PRED] = weak_a.detach()  # the graph is spent: keep only the values for handlers
        engine.state.output[Keys.LOSS] = loss.detach()
        engine.state.output.update(
            {f"loss_{name}": value.detach() for name, value in terms.items()}
            | {
                "loss_sup": loss_sup.detach(),
                "loss_cps": loss_cps.detach(),
                "loss_fixmatch": loss_fixmatch.detach(),
                "confident_fraction_a": fraction_a,
                "confident_fraction_b": fraction_b,
            }
        )
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
