"""Dictionary and array transforms shared by the bundles (mask binarisation, PIL converters, ...)."""

from __future__ import annotations

from common.transforms.converters import rgb_image, single_channel_mask
from common.transforms.cube_mask import RandCubeMask, RandCubeMaskD, RandCubeMaskd, RandCubeMaskDict
from common.transforms.intensity import (
    MODALITIES,
    MODALITY_MODES,
    NORMALIZATION_MODES,
    ModalityNormalize,
    ModalityNormalizeD,
    ModalityNormalized,
    ModalityNormalizeDict,
    resolve_normalization,
)
from common.transforms.masks import DEFAULT_MASK_THRESHOLD, BinaryMask, BinaryMaskD, BinaryMaskd, BinaryMaskDict
from common.transforms.monr import MultiOrderResponses, multi_order_images, sobel_gradients
from common.transforms.sdf import (
    SignedDistanceMap,
    SignedDistanceMapD,
    SignedDistanceMapd,
    SignedDistanceMapDict,
    signed_distance_map,
)
from common.transforms.strong_view import RandStrongView, RandStrongViewD, RandStrongViewd, RandStrongViewDict

__all__ = [
    "DEFAULT_MASK_THRESHOLD",
    "BinaryMask",
    "BinaryMaskD",
    "BinaryMaskDict",
    "BinaryMaskd",
    "rgb_image",
    "single_channel_mask",
    "SignedDistanceMap",
    "SignedDistanceMapD",
    "SignedDistanceMapDict",
    "SignedDistanceMapd",
    "signed_distance_map",
    "MultiOrderResponses",
    "RandCubeMask",
    "RandCubeMaskD",
    "RandCubeMaskDict",
    "RandCubeMaskd",
    "multi_order_images",
    "sobel_gradients",
]
__all__ += ["RandStrongView", "RandStrongViewD", "RandStrongViewDict", "RandStrongViewd"]
__all__ += [
    "MODALITIES",
    "MODALITY_MODES",
    "NORMALIZATION_MODES",
    "ModalityNormalize",
    "ModalityNormalizeD",
    "ModalityNormalizeDict",
    "ModalityNormalized",
    "resolve_normalization",
]
