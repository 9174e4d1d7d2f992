"""Dictionary and array transforms shared by the bundles (mask binarisation, PIL converters, ...)."""

from __future__ import annotations

from common.transforms.converters import rgb_image, single_channel_mask
from common.transforms.masks import DEFAULT_MASK_THRESHOLD, BinaryMask, BinaryMaskD, BinaryMaskd, BinaryMaskDict

__all__ = [
    "DEFAULT_MASK_THRESHOLD",
    "BinaryMask",
    "BinaryMaskD",
    "BinaryMaskDict",
    "BinaryMaskd",
    "rgb_image",
    "single_channel_mask",
]
