"""Signed distance maps of segmentation masks, the geometric task of dual-task networks (DTC, UG-MCL).

For each channel's mask ``G`` the map is, with Euclidean distances in voxels::

    sdf(x) = -d(x, background) / max_inside d     for x inside G (off its boundary)
              0                                    for x on the inner boundary of G
             +d(x, G) / max_outside d              for x outside G

so it is negative inside, positive outside, zero on the boundary and lies in [-1, 1]; an empty channel maps to 0
everywhere and a channel that fills the whole image to -1. The boundary is the inner one: mask voxels with a
face-adjacent background voxel (as ``skimage.segmentation.find_boundaries(mode="inner")`` finds it). Distances come
from MONAI's ``distance_transform_edt`` (scipy, or cuCIM on GPU tensors). The soft inverse
``sigmoid(-k sdf)`` with a large ``k`` (UG-MCL: 1500) gives back the mask: see
:func:`common.losses.sdf_to_probability`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.transforms.utils import distance_transform_edt
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage

__all__ = [
    "SignedDistanceMap",
    "SignedDistanceMapd",
    "SignedDistanceMapD",
    "SignedDistanceMapDict",
    "signed_distance_map",
]


def _channel_sdf(mask: np.ndarray) -> np.ndarray:
    """The normalised signed distance map of one boolean mask (any number of spatial axes)."""
    result = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return result
    if mask.all():
        result[:] = -1.0
        return result
    # MONAI's transform takes a channel axis: (1, *spatial)
    inside = np.asarray(distance_transform_edt(mask[None]), dtype=np.float32)[0]  # to the nearest background voxel
    outside = np.asarray(distance_transform_edt(~mask[None]), dtype=np.float32)[0]  # to the nearest mask voxel
    result = outside / outside.max() - inside / inside.max()
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    boundary = mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=1)
    result[boundary] = 0.0
    return result.astype(np.float32)


def signed_distance_map(mask: NdarrayOrTensor, num_classes: int | None = None) -> NdarrayOrTensor:
    """Signed distance map of each channel of a channel-first mask, normalised to [-1, 1].

    Args:
        mask: ``(C, *spatial)`` binary masks (non-zero = inside), or with ``num_classes`` a ``(1, *spatial)`` label map.
        num_classes: one-hot the label map into this many channels first (channel ``c`` = ``label == c``), so that
            the result has one map per class, as the SDF head of a dual-task network predicts.

    Returns:
        ``(C, *spatial)`` (or ``(num_classes, *spatial)``) float32 maps, of the input's type and device.

    Raises:
        ValueError: ``num_classes`` with a multi-channel input, or an input without a spatial axis.
    """
    array = convert_to_numpy(mask)
    if array.ndim < 2:
        raise ValueError(f"expected a channel-first mask (C, *spatial), got shape {array.shape}")
    if num_classes is not None:
        if array.shape[0] != 1:
            raise ValueError(f"num_classes needs a (1, *spatial) label map, got {array.shape[0]} channels")
        channels = [array[0] == value for value in range(num_classes)]
    else:
        channels = [array[c] != 0 for c in range(array.shape[0])]
    result = np.stack([_channel_sdf(channel) for channel in channels]).astype(np.float32)
    return convert_to_dst_type(result, mask, dtype=torch.float32 if isinstance(mask, torch.Tensor) else np.float32)[0]


class SignedDistanceMap(Transform):
    """Array transform: the normalised signed distance map of each mask channel (see :func:`signed_distance_map`).

    Args:
        num_classes: one-hot a ``(1, *spatial)`` label map into this many channels first (None: the input's channels
            are the masks).
    """

    def __init__(self, num_classes: int | None = None) -> None:
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map ``(C, *spatial)`` masks to ``(C, *spatial)`` float32 signed distance maps."""
        return signed_distance_map(mask, self.num_classes)


class SignedDistanceMapd(MapTransform):
    """Dictionary transform: write the signed distance map of ``data[key]`` to ``data[f"{key}_{output_postfix}"]``.

    Args:
        keys: keys of the masks (e.g. ``"label"``).
        num_classes: see :class:`SignedDistanceMap`.
        output_postfix: the output key is ``f"{key}_{output_postfix}"`` (the mask itself is kept).
        allow_missing_keys: skip absent keys (e.g. unlabeled cases).
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int | None = None,
        output_postfix: str = "sdf",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SignedDistanceMap(num_classes)
        self.output_postfix = output_postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.output_postfix}"] = self.transform(d[key])
        return d


SignedDistanceMapD = SignedDistanceMapDict = SignedDistanceMapd
