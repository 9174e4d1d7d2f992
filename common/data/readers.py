"""MONAI image readers for formats MONAI does not read itself: HDF5 volumes (the LA semi-supervised benchmark).

The public semi-supervised LA files (``<case>/mri_norm2.h5``) hold the MR volume and its mask as two datasets,
``image`` (float32, z-score normalised) and ``label`` (uint8), and no geometry. :class:`H5Reader` reads one dataset,
so that ``LoadImaged(keys="image", reader=H5Reader("image"))`` and
``LoadImaged(keys="label", reader=H5Reader("label"))`` load a case from the same file. It gives the volume the affine
of the voxel spacing it is told (the LA volumes are 0.625 mm isotropic), so that distances in millimetres and saved
NIfTI predictions carry the right geometry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from common.data.io import H5_SUFFIXES, read_array

__all__ = ["H5Reader"]


class H5Reader(ImageReader):
    """Read one dataset of HDF5 files as an image, with an affine built from a given voxel spacing.

    Args:
        dataset: name of the dataset to read (``"image"`` or ``"label"`` in the LA layout).
        spacing: voxel size in millimetres along each array axis (one number for isotropic voxels); the files carry
            none, so the reader is told (LA: 0.625). The affine is ``diag(spacing, 1)``.
        channel_dim: axis of the array that holds channels, or None when the array has none (a 3D volume).

    Raises:
        ValueError: a non-positive spacing.
    """

    def __init__(
        self, dataset: str = "image", spacing: float | Sequence[float] = 1.0, channel_dim: int | None = None
    ) -> None:
        super().__init__()
        spacing_values = [float(value) for value in ensure_tuple(spacing)]
        if not spacing_values or any(value <= 0 for value in spacing_values):
            raise ValueError(f"spacing must be positive, got {spacing}")
        self.dataset = dataset
        self.spacing = spacing_values
        self.channel_dim = channel_dim

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file name ends with ``.h5`` or ``.hdf5`` (any case)."""
        return all(str(name).lower().endswith(H5_SUFFIXES) for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        """Read ``dataset`` of one file, or of several files (stacked as channels by :meth:`get_data`).

        Args:
            data: an HDF5 file name or a list of them.
            kwargs: unused (kept for MONAI's ``ImageReader`` interface).

        Returns:
            The array, or a list of arrays for several files.

        Raises:
            ValueError: a file is not an HDF5 file (MONAI's ``LoadImage`` then tries its other readers).
            OSError: a file cannot be read or has no ``dataset`` (the message names the file).
        """
        if not self.verify_suffix(data):
            raise ValueError(f"{data}: not an HDF5 file (.h5, .hdf5)")
        arrays = []
        for name in ensure_tuple(data):
            try:
                arrays.append(read_array(name, h5_dataset=self.dataset))
            except OSError as error:
                raise OSError(f"{name}: {error}") from error
        return arrays if len(arrays) > 1 else arrays[0]

    def _affine(self, spatial_ndim: int) -> np.ndarray:
        spacing = self.spacing * spatial_ndim if len(self.spacing) == 1 else self.spacing
        if len(spacing) != spatial_ndim:
            raise ValueError(f"spacing {self.spacing} does not fit a volume with {spatial_ndim} spatial axes")
        return np.diag([*spacing, 1.0]).astype(np.float64)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """The array(s) read by :meth:`read` and their metadata (affine from ``spacing``, spatial shape).

        Args:
            img: an array or a list of arrays from :meth:`read`.

        Returns:
            ``(array, meta)``: the array (several files stacked on a new first axis) and MONAI's metadata keys
            ``affine``, ``original_affine``, ``spatial_shape``, ``original_channel_dim`` and ``space`` (RAS).
        """
        arrays: list[np.ndarray] = []
        meta: dict = {}
        for array in ensure_tuple(img) if isinstance(img, list | tuple) else (img,):
            shape = np.asarray(array.shape)
            if self.channel_dim is not None:
                shape = np.delete(shape, self.channel_dim)
            affine = self._affine(len(shape))
            header = {
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: shape,
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if self.channel_dim is None else self.channel_dim,
            }
            arrays.append(array)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta
