"""Intensity normalisation by the data's modality: an HU window for CT, a per-volume scaling for MRI, /255 for RGB.

A layout declares the modality of its files (``Layout.modality``: ``"CT"`` in Hounsfield units, ``"MRI"`` in
arbitrary scanner units, ``"RGB"`` in 8-bit values). A bundle names one normalisation ``mode`` (its config key
``intensity_normalization``), ``"auto"`` by default, which picks the mode of the layout's modality:

- ``"ct_window"``: clip to the HU window ``[low, high]`` and scale it to ``[0, 1]`` (the window is a property of
  the anatomy: ASE-Net's liver ``[-200, 250]``, DMGSA's lung ``[-1200, 600]``);
- ``"mri_zscore"``: z-score over the nonzero voxels (the background of skull-stripped or cropped MRI stays 0), after
  an optional clip at an upper percentile (UG-MCL's BraTS pipeline clips at 99.9 first);
- ``"mri_percentile"``: per-volume percentiles ``[lower, upper]`` (default 0.5 and 99.5) scaled to ``[0, 1]`` and
  clipped, for networks that expect inputs in ``[0, 1]``;
- ``"rgb"``: ``[0, 255]`` to ``[0, 1]``;
- ``"none"``: unchanged (files that are already normalised, where a bundle says so explicitly).

MRI has no absolute intensity scale, so a fixed window on MRI is a bug: a volume in ``[0, 1.2]`` through the HU window
``[-200, 250]`` becomes ``[0.4442, 0.4471]``, a constant. MONAI's ``ScaleIntensityRange``,
``ScaleIntensityRangePercentiles``, ``ClipIntensityPercentiles`` and ``NormalizeIntensity`` do the arithmetic.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import (
    ClipIntensityPercentiles,
    MapTransform,
    NormalizeIntensity,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Transform,
)

__all__ = [
    "MODALITIES",
    "MODALITY_MODES",
    "NORMALIZATION_MODES",
    "ModalityNormalize",
    "ModalityNormalized",
    "ModalityNormalizeD",
    "ModalityNormalizeDict",
    "resolve_normalization",
]

MODALITIES = ("CT", "MRI", "RGB")
"""Modalities a layout may declare: CT in Hounsfield units, MRI in scanner units, RGB (or grey) 8-bit images."""

NORMALIZATION_MODES = ("ct_window", "mri_zscore", "mri_percentile", "rgb", "none")
"""Concrete normalisation modes (``"auto"`` resolves to one of them)."""

MODALITY_MODES = {"CT": "ct_window", "MRI": "mri_zscore", "RGB": "rgb"}
"""What ``"auto"`` picks for each modality (a bundle may pick ``"mri_percentile"`` for MRI with ``mri_mode``)."""


def resolve_normalization(mode: str, modality: str | None = None, mri_mode: str = "mri_zscore") -> str:
    """The concrete normalisation mode for ``mode``, resolving ``"auto"`` from the data's modality.

    Args:
        mode: ``"auto"`` or one of :data:`NORMALIZATION_MODES`.
        modality: the layout's modality (one of :data:`MODALITIES`); required when ``mode`` is ``"auto"``.
        mri_mode: the mode ``"auto"`` picks for MRI (``"mri_zscore"`` or ``"mri_percentile"``).

    Returns:
        One of :data:`NORMALIZATION_MODES`.

    Raises:
        ValueError: an unknown mode or modality, ``"auto"`` without a modality, or an ``mri_mode`` that is not an MRI
            mode.
    """
    if mri_mode not in ("mri_zscore", "mri_percentile"):
        raise ValueError(f"mri_mode must be 'mri_zscore' or 'mri_percentile', got {mri_mode!r}")
    if mode != "auto":
        if mode not in NORMALIZATION_MODES:
            raise ValueError(
                f"unknown intensity normalisation {mode!r}; expected 'auto' or one of {NORMALIZATION_MODES}"
            )
        return mode
    if modality is None:
        raise ValueError("intensity normalisation 'auto' needs the data's modality (the layout's 'modality')")
    modality = str(modality).upper()
    if modality not in MODALITY_MODES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return mri_mode if modality == "MRI" else MODALITY_MODES[modality]


class ModalityNormalize(Transform):
    """Normalise a ``(C, *spatial)`` image by its modality (see the module docstring for the modes).

    The statistics of ``"mri_zscore"`` and ``"mri_percentile"`` are computed per channel over the whole volume (over
    its nonzero voxels for the z-score); ``"ct_window"`` and ``"rgb"`` are fixed affine maps with clipping, so the
    output lies in ``[0, 1]``.

    Args:
        mode: ``"auto"`` (pick from ``modality``) or one of :data:`NORMALIZATION_MODES`.
        modality: the data's modality (one of :data:`MODALITIES`), used by ``"auto"``.
        window: the HU window ``(low, high)`` of ``"ct_window"``, mapped to ``[0, 1]``.
        percentiles: the ``(lower, upper)`` percentiles (0-100) of ``"mri_percentile"``, mapped to ``[0, 1]``.
        zscore_clip_percentile: for ``"mri_zscore"``, clip at this upper percentile (0-100) of the volume before the
            z-score, or None for no clip.
        mri_mode: what ``"auto"`` picks for MRI.
        window_key: the config key holding ``window``, named in :meth:`describe` (and so in error messages).

    Raises:
        ValueError: an unknown mode or modality, a window with ``low >= high``, percentiles outside
            ``0 <= lower < upper <= 100``.
    """

    def __init__(
        self,
        mode: str = "auto",
        modality: str | None = None,
        window: Sequence[float] = (-200.0, 250.0),
        percentiles: Sequence[float] = (0.5, 99.5),
        zscore_clip_percentile: float | None = None,
        mri_mode: str = "mri_zscore",
        window_key: str = "hu_window",
    ) -> None:
        self.requested_mode = mode
        self.modality = None if modality is None else str(modality).upper()
        self.mode = resolve_normalization(mode, self.modality, mri_mode)
        low, high = (float(value) for value in window)
        if not low < high:
            raise ValueError(f"the HU window must have low < high, got {list(window)}")
        lower, upper = (float(value) for value in percentiles)
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {list(percentiles)}")
        self.window = (low, high)
        self.percentiles = (lower, upper)
        self.zscore_clip_percentile = None if zscore_clip_percentile is None else float(zscore_clip_percentile)
        self.window_key = window_key
        self.steps: list[Transform] = []
        if self.mode == "ct_window":
            self.steps = [ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
        elif self.mode == "rgb":
            self.steps = [ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True)]
        elif self.mode == "mri_percentile":
            self.steps = [
                ScaleIntensityRangePercentiles(
                    lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
                )
            ]
        elif self.mode == "mri_zscore":
            if self.zscore_clip_percentile is not None:
                self.steps.append(ClipIntensityPercentiles(lower=None, upper=self.zscore_clip_percentile))
            self.steps.append(NormalizeIntensity(nonzero=True, channel_wise=True))

    def describe(self) -> str:
        """One line naming the mode, its parameters and the config keys that change them (for messages and logs)."""
        origin = f"'auto' from modality {self.modality}" if self.requested_mode == "auto" else "set explicitly"
        if self.mode == "ct_window":
            low, high = (f"{value:g}" for value in self.window)
            detail = f"HU window [{low}, {high}] -> [0, 1] (key '{self.window_key}')"
        elif self.mode == "mri_percentile":
            lower, upper = (f"{value:g}" for value in self.percentiles)
            detail = f"percentiles [{lower}, {upper}] of each volume -> [0, 1] (key 'mri_percentiles')"
        elif self.mode == "mri_zscore":
            clip = (
                "" if self.zscore_clip_percentile is None else f"clip at percentile {self.zscore_clip_percentile:g}, "
            )
            detail = f"{clip}z-score over the nonzero voxels"
        elif self.mode == "rgb":
            detail = "[0, 255] -> [0, 1]"
        else:
            detail = "unchanged"
        return f"intensity_normalization '{self.mode}' ({origin}): {detail}"

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Normalise ``img``.

        Args:
            img: ``(C, *spatial)`` raw intensities (HU for CT, scanner units for MRI, 0-255 for RGB).

        Returns:
            The normalised image, of the input's type (``MetaTensor`` metadata kept); float32 unless ``"none"``.
        """
        if self.mode == "mri_zscore":
            # MONAI's NormalizeIntensity writes into its input's memory with nonzero=True: keep the caller's array
            img = img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        for step in self.steps:
            img = step(img)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class ModalityNormalized(MapTransform):
    """Dictionary version of :class:`ModalityNormalize`.

    Args:
        keys: keys of the images to normalise (not the labels).
        mode, modality, window, percentiles, zscore_clip_percentile, mri_mode, window_key: see
            :class:`ModalityNormalize`.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "auto",
        modality: str | None = None,
        window: Sequence[float] = (-200.0, 250.0),
        percentiles: Sequence[float] = (0.5, 99.5),
        zscore_clip_percentile: float | None = None,
        mri_mode: str = "mri_zscore",
        window_key: str = "hu_window",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = ModalityNormalize(
            mode=mode,
            modality=modality,
            window=window,
            percentiles=percentiles,
            zscore_clip_percentile=zscore_clip_percentile,
            mri_mode=mri_mode,
            window_key=window_key,
        )

    @property
    def mode(self) -> str:
        """The resolved normalisation mode."""
        return self.normalizer.mode

    def describe(self) -> str:
        """See :meth:`ModalityNormalize.describe`."""
        return self.normalizer.describe()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Normalise each key's image.

        Args:
            data: a dict holding ``(C, *spatial)`` images under ``keys``.

        Returns:
            A shallow copy of ``data`` with the normalised images under ``keys``.
        """
        result = dict(data)
        for key in self.key_iterator(result):
            result[key] = self.normalizer(result[key])
        return result


ModalityNormalizeD = ModalityNormalizeDict = ModalityNormalized
