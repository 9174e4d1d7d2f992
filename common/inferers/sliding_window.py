"""Sliding-window inference as the 3D semi-supervised benchmarks do it: strides, averaged probabilities, uncertainty.

The LA benchmark code tests with a 112x112x80 window moved by a stride of 18 voxels in x and y and 4 in z, averaging
the windows' softmax probabilities. MONAI's ``SlidingWindowInferer`` takes an ``overlap`` fraction per axis and moves
the window by ``int(roi * (1 - overlap))``; :func:`stride_to_overlap` gives the overlap whose interval is exactly the
stride (the naive ``1 - stride/roi`` misses it for some strides: ``112 * (1 - (1 - 16/112))`` is 15.999... in floating
point, a 15-voxel step). Window
positions are then the benchmark's: ``min(i * stride, size - roi)`` for ``i = 0 .. ceil((size - roi) / stride)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer
from monai.utils import ensure_tuple_rep

from common.inferers.uncertainty import MCUncertaintyEstimator

__all__ = ["ProbabilitySlidingWindowInferer", "stride_to_overlap"]


def stride_to_overlap(roi_size: Sequence[int], stride: Sequence[int] | int) -> list[float]:
    """The per-axis overlap for which MONAI's sliding window moves by exactly ``stride`` voxels.

    MONAI's interval is ``int(roi * (1 - overlap))``; ``overlap = 1 - (stride + 0.5) / roi`` puts
    ``roi * (1 - overlap)`` half a voxel above the stride, so the truncation lands on it whatever the rounding.

    Args:
        roi_size: the window size per axis.
        stride: the step per axis (one number for every axis), ``1 <= stride <= roi``.

    Returns:
        One overlap fraction per axis, in ``[0, 1)``.

    Raises:
        ValueError: a stride outside ``[1, roi]``.
    """
    strides = ensure_tuple_rep(stride, len(roi_size))
    overlaps = []
    for roi, step in zip(roi_size, strides):
        if not 1 <= step <= roi:
            raise ValueError(f"stride {step} must be between 1 and the window size {roi}")
        overlaps.append(max(0.0, 1.0 - (step + 0.5) / roi))
    return overlaps


class ProbabilitySlidingWindowInferer(SlidingWindowInferer):
    """MONAI's ``SlidingWindowInferer`` that averages softmax probabilities and can add an uncertainty channel.

    Each window's network output is turned into probabilities (softmax over channels) before the windows are blended,
    as the LA benchmark's ``test_single_case`` does; the result is a probability map ``(B, C, *spatial)``. With an
    ``uncertainty`` estimator, every window also gets its Monte-Carlo predictive entropy, appended as a last channel:
    ``(B, C + 1, *spatial)``.

    Args:
        roi_size: the window size.
        stride: the step between windows per axis (one number for every axis); overrides ``overlap`` (see
            :func:`stride_to_overlap`).
        overlap: MONAI's overlap fraction(s), used when ``stride`` is None.
        softmax: average probabilities (True) or raw network outputs (False).
        uncertainty: an :class:`MCUncertaintyEstimator` to append the entropy channel, or None.
        kwargs: other arguments of ``SlidingWindowInferer`` (``sw_batch_size``, ``mode``, ``padding_mode``, ...).
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        stride: Sequence[int] | int | None = None,
        overlap: Sequence[float] | float = 0.25,
        softmax: bool = True,
        uncertainty: MCUncertaintyEstimator | None = None,
        **kwargs: Any,
    ) -> None:
        if stride is not None:
            if isinstance(roi_size, int):
                raise ValueError("give roi_size per axis when a stride is given")
            overlap = stride_to_overlap(roi_size, stride)
        super().__init__(roi_size=roi_size, overlap=overlap, **kwargs)
        self.stride = stride
        self.softmax = softmax
        self.uncertainty = uncertainty

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the windows of ``inputs`` through ``network`` and blend them.

        Args:
            inputs: ``(B, C_in, *spatial)``.
            network: the segmentation network (first element taken when it returns a tuple).

        Returns:
            ``(B, C, *spatial)`` probabilities (or outputs), plus the entropy channel when ``uncertainty`` is set.
        """

        def window(patch: torch.Tensor, *window_args: Any, **window_kwargs: Any) -> torch.Tensor:
            output = network(patch, *window_args, **window_kwargs)
            output = output[0] if isinstance(output, tuple | list) else output
            if self.softmax:
                output = torch.softmax(output.float(), dim=1)
            if self.uncertainty is not None:
                output = torch.cat([output, self.uncertainty(network, patch).entropy.to(output)], dim=1)
            return output

        return super().__call__(inputs, window, *args, **kwargs)
