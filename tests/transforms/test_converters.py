"""PIL converters for MONAI's PILReader."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.transforms import rgb_image, single_channel_mask


def lesion_mask(h: int = 20, w: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 3) ** 2


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P"])
def test_single_channel_mask_converter(mode: str) -> None:
    mask = lesion_mask()
    image = Image.fromarray(mask.astype(np.uint8) * 255).convert(mode)
    converted = single_channel_mask(image)
    assert converted.mode == "L"
    np.testing.assert_array_equal(np.asarray(converted) >= 128, mask)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16"])
def test_rgb_image_converter_gives_three_channels(mode: str) -> None:
    grey = (np.arange(20 * 30).reshape(20, 30) % 251).astype(np.uint8)
    image = Image.fromarray(grey).convert(mode) if mode != "I;16" else Image.fromarray(grey.astype(np.uint16))
    converted = rgb_image(image)
    assert converted.mode == "RGB"
    array = np.asarray(converted)
    assert array.shape == (20, 30, 3)
    if mode in ("L", "LA", "RGB", "RGBA"):  # lossless modes: grey repeated in every channel
        for c in range(3):
            np.testing.assert_array_equal(array[..., c], grey)


def test_rgb_image_keeps_an_rgb_image_as_is() -> None:
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    assert rgb_image(image) is image
