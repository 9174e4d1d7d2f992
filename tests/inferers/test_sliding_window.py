"""Tests of common.inferers.sliding_window: strides as the LA benchmark moves its window, averaged probabilities."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval
from torch import nn

from common.inferers import MCUncertaintyEstimator, ProbabilitySlidingWindowInferer, stride_to_overlap


def benchmark_starts(size: int, roi: int, stride: int) -> list[int]:
    """Window starts of the LA benchmark's test_single_case: ``min(i * stride, size - roi)`` for
    ``i <= ceil((size - roi) / stride)``."""
    return [min(stride * i, size - roi) for i in range(math.ceil((size - roi) / stride) + 1)]


@pytest.mark.parametrize("image_size", [(130, 151, 88), (112, 200, 81), (187, 112, 96)])
def test_stride_18_4_gives_the_benchmark_windows(image_size: tuple[int, int, int]) -> None:
    roi, stride = (112, 112, 80), (18, 18, 4)
    overlap = stride_to_overlap(roi, stride)
    assert 1 - 18 / 112 > overlap[0] > 1 - 19 / 112
    interval = _get_scan_interval(image_size, roi, 3, overlap)
    expected_interval = tuple(r if r == s else st for r, s, st in zip(roi, image_size, stride))
    assert interval == expected_interval
    slices = dense_patch_slices(image_size, roi, interval)
    starts = [sorted({s[axis].start for s in slices}) for axis in range(3)]
    for axis in range(3):
        assert starts[axis] == benchmark_starts(image_size[axis], roi[axis], stride[axis])


def test_naive_overlap_would_miss_the_stride() -> None:
    """Why stride_to_overlap exists: 1 - 16/112 as overlap moves the window by 15 voxels, not 16."""
    assert _get_scan_interval((200, 200, 200), (112, 112, 80), 3, [1 - 16 / 112] * 3)[0] == 15
    assert _get_scan_interval((200, 200, 200), (112, 112, 80), 3, stride_to_overlap((112, 112, 80), 16))[0] == 16
    for roi in (80, 96, 112, 128):  # every stride lands exactly
        intervals = [_get_scan_interval((400,), (roi,), 1, stride_to_overlap((roi,), s))[0] for s in range(1, roi + 1)]
        assert intervals == list(range(1, roi + 1))


class Logits(nn.Module):
    """Logits proportional to the input: window probabilities depend on position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, -x], dim=1) * 3.0


def test_probabilities_are_averaged_over_windows() -> None:
    torch.manual_seed(0)
    image = torch.randn(1, 1, 10, 9, 8)
    inferer = ProbabilitySlidingWindowInferer(roi_size=(4, 4, 4), stride=(3, 2, 4), sw_batch_size=3)
    output = inferer(image, Logits())
    # the network is position-independent, so every window agrees: the average is the softmax itself
    torch.testing.assert_close(output, torch.softmax(Logits()(image), dim=1))
    torch.testing.assert_close(output.sum(dim=1), torch.ones(1, 10, 9, 8))


def test_averaging_probabilities_differs_from_averaging_logits() -> None:
    class PositionDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            scale = 10.0 if self.calls % 2 else 0.1
            return torch.cat([x, -x], dim=1) * scale

    image = torch.ones(1, 1, 6, 4, 4)
    output = ProbabilitySlidingWindowInferer(roi_size=(4, 4, 4), stride=(2, 4, 4), sw_batch_size=1)(
        image, PositionDependent()
    )
    # voxels x = 2, 3 are in both windows: mean of softmax(20) and softmax(0.2), not softmax of the mean logit
    both = (torch.sigmoid(torch.tensor(20.0)) + torch.sigmoid(torch.tensor(0.2))) / 2
    torch.testing.assert_close(output[0, 0, 2:4], torch.full((2, 4, 4), float(both)))
    assert not torch.allclose(output[0, 0, 2:4], torch.sigmoid(torch.tensor(10.1)).expand(2, 4, 4))


def test_uncertainty_channel_is_appended() -> None:
    image = torch.randn(1, 1, 8, 8, 8)
    inferer = ProbabilitySlidingWindowInferer(
        roi_size=(4, 4, 4), stride=4, uncertainty=MCUncertaintyEstimator(num_passes=2, noise_std=0.0)
    )
    output = inferer(image, Logits())
    assert output.shape == (1, 3, 8, 8, 8)
    probabilities = torch.softmax(Logits()(image), dim=1)
    entropy = -(probabilities * torch.log(probabilities + 1e-6)).sum(1)
    torch.testing.assert_close(output[:, 2], entropy, atol=1e-5, rtol=1e-5)


def test_bad_strides() -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        stride_to_overlap((16, 16), (0, 4))
    with pytest.raises(ValueError, match="between 1 and"):
        stride_to_overlap((16, 16), 17)
    with pytest.raises(ValueError, match="per axis"):
        ProbabilitySlidingWindowInferer(roi_size=16, stride=4)
