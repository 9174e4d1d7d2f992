"""Binary masks from raw mask files: several channels (RGB files, stacked mask files) to one 0/1 foreground channel.

Lesion data sets store masks as 8-bit images whose foreground is "bright": Kvasir-SEG as lossy 3-channel JPEG
(values spread around 0 and 255), ISIC and BUSI as PNG with 0 and 255 (some BUSI masks RGB-mode), and BUSI adds
extra mask files for extra lesions. MONAI's ``LoadImage`` with ``PILReader`` loads a list of files as one
multi-channel image: files without channels are stacked along a new first axis, files with channels are
concatenated along their channel axis; so after ``EnsureChannelFirst`` a mask is ``(C, W, H)`` with one channel
per file or per colour channel, and the foreground is the union: ``max over channels >= threshold``.

Caveat: a list mixing a grey file and an RGB file cannot be stacked by ``PILReader`` (the arrays differ in rank),
and an alpha channel would count as foreground in the channel maximum. Loading the label key with
``PILReader(converter=common.transforms.single_channel_mask)`` reduces each file to one channel first (maximum
over colour channels, alpha dropped), which makes every mask file stackable.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = [
    "BinaryMask",
    "BinaryMaskd",
    "BinaryMaskD",
    "BinaryMaskDict",
    "DEFAULT_MASK_THRESHOLD",
]

DEFAULT_MASK_THRESHOLD = 128.0
"""Midpoint of the 8-bit range: JPEG artefacts around 0 and 255 fall on the right side of it."""


class BinaryMask(Transform):
    """Union of the channels of a raw mask: ``(C, *spatial)`` -> ``(1, *spatial)`` float32 in {0, 1}.

    A pixel is foreground when its largest value over channels is at least ``threshold``. Channels are the colour
    channels of an RGB mask file and/or the mask files MONAI's ``LoadImage`` stacked for a list of files (BUSI's
    extra masks). A ``MetaTensor`` keeps its metadata (affine, filename, ...); numpy arrays stay numpy.

    Args:
        threshold: raw value at or above which a pixel is foreground (128 for 8-bit masks stored as 0/255).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = DEFAULT_MASK_THRESHOLD) -> None:
        self.threshold = float(threshold)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Binarise ``img``.

        Args:
            img: ``(C, *spatial)`` raw mask values, channel first.

        Returns:
            ``(1, *spatial)`` float32, 1 on the foreground, of the input's type (``MetaTensor`` metadata kept).

        Raises:
            ValueError: ``img`` has fewer than two dimensions (no channel axis).
        """
        if img.ndim < 2:
            raise ValueError(f"expected a channel-first mask (C, *spatial), got shape {tuple(img.shape)}")
        tensor = convert_to_tensor(img, track_meta=True)
        if tensor.dtype == torch.bool:
            tensor = tensor.to(torch.uint8) * 255
        foreground = torch.amax(tensor, dim=0, keepdim=True) >= self.threshold
        output, *_ = convert_to_dst_type(foreground, dst=img, dtype=torch.float32)
        return output


class BinaryMaskd(MapTransform):
    """Dictionary version of :class:`BinaryMask`.

    Args:
        keys: keys of the masks to binarise.
        threshold: raw value at or above which a pixel is foreground.
        allow_missing_keys: do not raise if a key is missing.
    """

    backend = BinaryMask.backend

    def __init__(
        self, keys: KeysCollection, threshold: float = DEFAULT_MASK_THRESHOLD, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BinaryMask(threshold=threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Binarise each key's mask.

        Args:
            data: a dict holding ``(C, *spatial)`` masks under ``keys``.

        Returns:
            A shallow copy of ``data`` with ``(1, *spatial)`` float32 masks under ``keys``.
        """
        result = dict(data)
        for key in self.key_iterator(result):
            result[key] = self.converter(result[key])
        return result


BinaryMaskD = BinaryMaskDict = BinaryMaskd
