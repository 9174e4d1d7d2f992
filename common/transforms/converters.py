"""``PILReader`` converters: what a 2D image or mask file becomes before MONAI turns it into an array.

A ``LoadImaged`` shares one reader between its keys, so bundles load images and masks with two ``LoadImaged``
transforms, ``PILReader(converter=rgb_image)`` and ``PILReader(converter=single_channel_mask)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["rgb_image", "single_channel_mask"]

_SINGLE_BAND_MODES = ("L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def rgb_image(image: Image.Image) -> Image.Image:
    """A ``PILReader`` converter for input images: always three colour channels.

    Data sets mix modes (BUSI stores grey ultrasound as ``L`` or ``RGB`` PNG, some ISIC images carry alpha), while
    the network takes 3 channels: grey is repeated, alpha and palettes are dropped or expanded.

    Args:
        image: a PIL image of any mode.

    Returns:
        the image itself when it is ``RGB``, else its ``RGB`` conversion.
    """
    return image if image.mode == "RGB" else image.convert("RGB")


def single_channel_mask(image: Image.Image) -> Image.Image:
    """A ``PILReader`` converter for mask files: one band, the maximum over colour channels, alpha dropped.

    Use as ``LoadImaged(keys="label", reader=PILReader(converter=single_channel_mask))`` (in a bundle config:
    ``{"_target_": "PILReader", "converter": "$common.transforms.single_channel_mask"}``), so that lists of mask
    files of different modes (BUSI's grey and RGB masks) stack, and an alpha channel never reads as foreground.

    Args:
        image: a PIL image of any mode.

    Returns:
        The image itself for single-band modes (``L``, ``I``, ``F``, 16-bit); an ``L`` image otherwise (bilevel
        ``1`` becomes 0/255, palette images are expanded through their palette first).
    """
    if image.mode in _SINGLE_BAND_MODES:
        return image
    if image.mode == "1":
        return image.convert("L")
    colour = np.asarray(image.convert("RGB"))  # drops alpha; expands palette, LA, CMYK, YCbCr, ...
    return Image.fromarray(colour.max(axis=2))
