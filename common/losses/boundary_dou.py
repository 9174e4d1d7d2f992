"""Boundary Difference over Union (Boundary DoU) loss for 2D and 3D segmentation."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch
import torch.nn.functional as F
from monai.networks import one_hot
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["BoundaryDoULoss"]


class BoundaryDoULoss(_Loss):
    """
    Compute the Boundary Difference over Union loss between a prediction and a (one-hot) ground truth.
    The data `input` (BNHW[D] where N is the number of classes) is compared with the ground truth `target`
    (BNHW[D], one-hot, or B1HW[D] label indices with ``to_onehot_y=True``).

    Axis N of `input` holds one score per class: probabilities, or logits together with ``sigmoid=True``,
    ``softmax=True`` or ``other_act``. Axis N of `target` holds the binary mask of each class.

    For each class c, with prediction p and ground truth g of that class, and with all sums taken over the
    batch and the spatial axes together (one value per class for the whole batch, as the official code does):

    - the boundary of g is counted with a cross-shaped kernel (the 4-neighbourhood in 2D, the 6-neighbourhood in
      3D) and zero padding: a foreground voxel is *interior* when the kernel sum over it is full (5 in 2D, 7 in
      3D), otherwise it is a *boundary* voxel, so an object touching the image border has boundary there;
      ``C`` is the number of boundary voxels and ``S`` the number of foreground voxels (foreground is
      ``g != 0``, which for a binary target is the official ``Y = conv(g) * g`` with full-sum voxels cleared);
    - ``alpha = 2 * (1 - (C + smooth) / (S + smooth)) - 1`` (that is ``1 - 2C/S`` up to ``smooth``), then
      ``alpha = min(alpha, alpha_cap)``; alpha comes from the target only and carries no gradient. Thin or small
      objects (all boundary) get ``alpha = -1``, where the loss is a squared-denominator Dice loss; large compact
      objects get alpha close to 1, where the loss weighs the boundary region more;
    - ``L_c = (sum p^2 + sum g^2 - 2 sum pg + smooth) / (sum p^2 + sum g^2 - (1 + alpha) sum pg + smooth)``.

    The loss is the mean of ``L_c`` over the classes (see ``reduction``). A class absent from the whole batch
    (``S = 0``) gives ``alpha = -1`` and ``L_c = (sum p^2 + smooth) / (sum p^2 + smooth) = 1`` with zero gradient,
    as in the official code: false positives of an absent class are not penalised by its own term.

    The original paper:

        Sun, F. et al. (2023) Boundary Difference Over Union Loss For Medical Image Segmentation. MICCAI 2023.
        https://github.com/sunfan-bvb/BoundaryDoULoss

    To reproduce the official loss from logits and label indices, use ``softmax=True, to_onehot_y=True``
    with the other defaults.
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        smooth: float = 1e-5,
        alpha_cap: float | None = 0.8,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        """
        Args:
            include_background: if False, channel index 0 (background category) is excluded from the calculation.
                The official loss includes it (the default).
            to_onehot_y: whether to convert the ``target`` from label indices (B1HW[D], or BHW[D]) into the one-hot
                format, using the number of classes inferred from `input` (``input.shape[1]``). Defaults to False.
            sigmoid: if True, apply a sigmoid function to the prediction.
            softmax: if True, apply a softmax function to the prediction (over axis N; needs N >= 2).
            other_act: callable function to execute other activation layers, Defaults to ``None``. for example:
                ``other_act = torch.tanh``.
            smooth: a small positive constant added to the numerator and the denominator of ``L_c`` and to ``C``
                and ``S`` in alpha. Defaults to 1e-5, as in the official code.
            alpha_cap: upper bound of alpha; ``None`` leaves alpha uncapped. Defaults to 0.8, the value the authors
                recommend. Must lie in [-1, 1].
            reduction: {``"none"``, ``"mean"``, ``"sum"``}
                Specifies the reduction over the classes. The loss is batch-global: each class gets one value
                computed from sums over the batch and the spatial axes, so there is no per-item value to reduce.
                Defaults to ``"mean"``, the official loss.

                - ``"none"``: no reduction will be applied; the output is the per-class vector of shape ``(N,)``
                  (``(N - 1,)`` with ``include_background=False``).
                - ``"mean"``: the mean of the per-class values (a scalar).
                - ``"sum"``: the sum of the per-class values (a scalar).

        Raises:
            TypeError: When ``other_act`` is not an ``Optional[Callable]``, or ``smooth`` or ``alpha_cap`` is not a
                real number.
            ValueError: When more than 1 of [``sigmoid=True``, ``softmax=True``, ``other_act is not None``].
                Incompatible values.
            ValueError: When ``smooth`` is not positive or ``alpha_cap`` lies outside [-1, 1].
            ValueError: When ``reduction`` is not one of ["mean", "sum", "none"].

        """
        try:
            reduction = LossReduction(reduction).value
        except ValueError as e:
            raise ValueError(f'reduction must be one of "none", "mean", "sum", got {reduction!r}.') from e
        super().__init__(reduction=reduction)
        if other_act is not None and not callable(other_act):
            raise TypeError(f"other_act must be None or callable but is {type(other_act).__name__}.")
        if int(sigmoid) + int(softmax) + int(other_act is not None) > 1:
            raise ValueError("Incompatible values: more than 1 of [sigmoid=True, softmax=True, other_act is not None].")
        if isinstance(smooth, bool) or not isinstance(smooth, Real):
            raise TypeError(f"smooth must be a real number but is {type(smooth).__name__}.")
        if not smooth > 0:
            raise ValueError(f"smooth must be positive (it keeps the loss of an absent class finite), got {smooth}.")
        if alpha_cap is not None:
            if isinstance(alpha_cap, bool) or not isinstance(alpha_cap, Real):
                raise TypeError(f"alpha_cap must be None or a real number but is {type(alpha_cap).__name__}.")
            if not -1.0 <= alpha_cap <= 1.0:
                raise ValueError(f"alpha_cap must lie in [-1, 1] (alpha itself does), got {alpha_cap}.")
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.smooth = float(smooth)
        self.alpha_cap = None if alpha_cap is None else float(alpha_cap)

    @staticmethod
    def boundary_statistics(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Count the boundary voxels ``C`` and the foreground voxels ``S`` of each class over the whole batch.

        A foreground voxel (``target != 0``) is interior when all its neighbours in the cross-shaped kernel (4 in
        2D, 6 in 3D) are foreground; voxels outside the image count as background (zero padding).

        Args:
            target: one-hot ground truth of shape BNHW[D].

        Returns:
            ``(C, S)``: two int64 tensors of shape ``(N,)``.

        Raises:
            ValueError: When ``target`` is not 4D or 5D.
        """
        if target.ndim not in (4, 5):
            raise ValueError(f"target must be BNHW or BNHWD (4D or 5D), got shape {tuple(target.shape)}.")
        spatial_shape = tuple(target.shape[2:])
        spatial_dims = len(spatial_shape)
        mask = target != 0
        # float64 only when the caller works in float64; the counts (at most 2 * spatial_dims + 1) are exact in
        # any float type, including the half types autocast may pick for the convolution.
        dtype = torch.float64 if target.dtype == torch.float64 else torch.float32
        kernel = torch.zeros((3,) * spatial_dims, device=target.device, dtype=dtype)
        kernel[(1,) * spatial_dims] = 1
        for axis in range(spatial_dims):
            for offset in (0, 2):
                index = [1] * spatial_dims
                index[axis] = offset
                kernel[tuple(index)] = 1
        full_sum = 2 * spatial_dims + 1
        conv = F.conv2d if spatial_dims == 2 else F.conv3d
        # one convolution for all items and classes: (B * N, 1, spatial...)
        neighbours = conv(mask.reshape(-1, 1, *spatial_shape).to(dtype), kernel[None, None], padding=1)
        boundary = mask & (neighbours.reshape(mask.shape) != full_sum)
        reduce_dims = [0, *range(2, target.ndim)]
        return boundary.sum(dim=reduce_dims), mask.sum(dim=reduce_dims)

    def adaptive_alpha(self, target: torch.Tensor) -> torch.Tensor:
        """
        Compute the per-class alpha ``min(2 * (1 - (C + smooth) / (S + smooth)) - 1, alpha_cap)`` of a one-hot target.

        Args:
            target: one-hot ground truth of shape BNHW[D].

        Returns:
            alpha of shape ``(N,)``, float64 for a float64 target and float32 otherwise, without gradient.
        """
        dtype = torch.float64 if target.dtype == torch.float64 else torch.float32
        with torch.no_grad():
            boundary_count, size = self.boundary_statistics(target)
            alpha = 1 - (boundary_count.to(dtype) + self.smooth) / (size.to(dtype) + self.smooth)
            alpha = 2 * alpha - 1
            if self.alpha_cap is not None:
                alpha = alpha.clamp(max=self.alpha_cap)
        return alpha

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: the shape should be BNHW[D], where N is the number of classes.
            target: the shape should be BNHW[D] (one-hot), or B1HW[D] / BHW[D] label indices with
                ``to_onehot_y=True``.

        Returns:
            a scalar for ``reduction="mean"`` or ``"sum"``; the per-class vector of shape ``(N,)`` for ``"none"``.
            float32, or float64 for a float64 input (half-precision inputs are summed in float32).

        Raises:
            TypeError: When ``input`` or ``target`` is not a tensor.
            ValueError: When ``input`` is not 4D or 5D, or has one channel while ``softmax``, ``to_onehot_y`` or
                ``include_background=False`` needs several.
            ValueError: When ``target`` does not match ``input`` in shape (after one-hot conversion), or holds
                labels outside ``[0, N)`` with ``to_onehot_y=True``.

        Example:
            >>> import torch
            >>> from common.losses import BoundaryDoULoss
            >>> logits = torch.randn(2, 3, 32, 32)
            >>> labels = torch.randint(0, 3, (2, 1, 32, 32))
            >>> loss = BoundaryDoULoss(softmax=True, to_onehot_y=True)(logits, labels)
            >>> loss.shape
            torch.Size([])
        """
        if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise TypeError(
                f"input and target must be torch.Tensor, got {type(input).__name__} and {type(target).__name__}."
            )
        if input.ndim not in (4, 5):
            raise ValueError(f"input must be BNHW or BNHWD (4D or 5D), got shape {tuple(input.shape)}.")
        n_pred_ch = input.shape[1]
        if n_pred_ch == 1:
            if self.softmax:
                raise ValueError("softmax=True needs at least 2 channels in input; use sigmoid=True for one channel.")
            if self.to_onehot_y:
                raise ValueError(
                    "to_onehot_y=True needs at least 2 channels in input (background and foreground); "
                    "give a single-channel binary target as it is, with to_onehot_y=False."
                )
            if not self.include_background:
                raise ValueError("include_background=False with a single-channel input leaves no class to compute.")

        if self.to_onehot_y:
            if target.ndim == input.ndim - 1:
                target = target.unsqueeze(1)
            if target.ndim != input.ndim or target.shape[1] != 1:
                raise ValueError(
                    f"with to_onehot_y=True target must hold label indices of shape B1HW[D] or BHW[D], "
                    f"got {tuple(target.shape)} for input {tuple(input.shape)}."
                )
            if target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
                raise ValueError(
                    f"target batch/spatial shape {tuple(target.shape)} does not match input {tuple(input.shape)}."
                )
            invalid = (target < 0) | (target >= n_pred_ch)
            if target.is_floating_point():
                invalid |= target != torch.round(target)
            if bool(invalid.any()):
                raise ValueError(f"with to_onehot_y=True target labels must be integers in [0, {n_pred_ch}).")
            target = one_hot(target, num_classes=n_pred_ch)
        elif target.shape != input.shape:
            is_labels = target.ndim == input.ndim and target.shape[1] == 1
            hint = " (label indices? set to_onehot_y=True)" if is_labels else ""
            raise ValueError(
                f"ground truth has different shape ({tuple(target.shape)}) from input ({tuple(input.shape)}){hint}."
            )

        if self.sigmoid:
            input = torch.sigmoid(input)
        if self.softmax:
            input = torch.softmax(input, 1)
        if self.other_act is not None:
            input = self.other_act(input)

        if not self.include_background:
            input = input[:, 1:]
            target = target[:, 1:]

        # sums over whole batches overflow or lose precision in half types: work in float32 (float64 if given)
        dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
        pred = input.to(dtype)
        target = target.to(device=pred.device, dtype=dtype)
        alpha = self.adaptive_alpha(target)

        reduce_dims = [0, *range(2, pred.ndim)]
        intersection = torch.sum(pred * target, dim=reduce_dims)
        pred_sq = torch.sum(pred * pred, dim=reduce_dims)
        target_sq = torch.sum(target * target, dim=reduce_dims)
        numerator = pred_sq + target_sq - 2 * intersection + self.smooth
        denominator = pred_sq + target_sq - (1 + alpha) * intersection + self.smooth
        f: torch.Tensor = numerator / denominator

        if self.reduction == LossReduction.MEAN.value:
            f = torch.mean(f)
        elif self.reduction == LossReduction.SUM.value:
            f = torch.sum(f)
        return f
