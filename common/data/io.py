"""Reading and writing the image files of the data sets, with the conventions the input checks rely on.

2D formats (JPEG, PNG, BMP, TIFF) are read with Pillow, NIfTI (``.nii``, ``.nii.gz``) with nibabel, HDF5 (``.h5``,
``.hdf5``, the volumes of the LA semi-supervised benchmark) with h5py. Arrays come back as the file stores them, the
way MONAI's readers see them before their axis conventions: ``(H, W)`` or ``(H, W, C)`` for 2D files (no conversion of
the image mode, so a palette PNG gives its indices, as ``PILReader`` does), the NIfTI data array ``(X, Y, Z[, ...])``
with its scaling applied, and one named dataset of an HDF5 file (``"image"`` or ``"label"``: one file holds both).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from monai.utils import optional_import
from PIL import Image, ImageFile

nib, _ = optional_import("nibabel")
h5py, has_h5py = optional_import("h5py")

__all__ = [
    "H5_SUFFIXES",
    "IMAGE_2D_SUFFIXES",
    "NIFTI_SUFFIXES",
    "is_h5",
    "is_nifti",
    "read_array",
    "spatial_shape",
    "strict_image_loading",
    "write_h5",
    "write_jpeg",
    "write_png",
]

IMAGE_2D_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""File suffixes read with Pillow (lower case)."""

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
"""File suffixes read with nibabel (lower case)."""


H5_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")
"""File suffixes read with h5py (lower case)."""


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``, any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_h5(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an HDF5 file (``.h5`` or ``.hdf5``, any case)."""
    return str(path).lower().endswith(H5_SUFFIXES)


def _read_h5(path: Path, dataset: str) -> np.ndarray:
    if not has_h5py:  # pragma: no cover - h5py is a dependency of the project
        raise OSError(f"{path}: reading HDF5 files needs h5py, which is not installed")
    try:
        with h5py.File(path, "r") as stream:
            if dataset not in stream:
                raise OSError(
                    f"no dataset {dataset!r} in the HDF5 file (it holds: {', '.join(sorted(stream)) or 'none'})"
                )
            return np.asarray(stream[dataset][()])
    except OSError:
        raise
    except Exception as error:  # h5py raises KeyError, RuntimeError, ... on damaged files
        raise OSError(f"{type(error).__name__}: {error}") from error


@contextlib.contextmanager
def strict_image_loading() -> Iterator[None]:
    """Make Pillow raise on truncated files inside the block, whatever a caller set globally.

    Pillow only notices a truncated JPEG or PNG when the pixels are decoded, and not at all when
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is True (it then fills the missing part with grey). This module never
    sets that flag; the context manager guards against a library that did, and restores its value on exit.
    """
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def read_array(path: str | os.PathLike, h5_dataset: str = "image") -> np.ndarray:
    """Read an image file fully into an array, decoding every pixel so that truncated files fail here.

    Args:
        path: a 2D image file (see ``IMAGE_2D_SUFFIXES``), a NIfTI file or an HDF5 file.
        h5_dataset: the dataset to read from an HDF5 file (``"image"`` or ``"label"`` in the LA layout, where one
            file holds both); unused for other formats.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` for 2D files, in the file's own data type and mode; the NIfTI data array
        ``(X, Y, Z[, ...])`` for NIfTI files (scaled by the header's slope and intercept when it has them); the
        dataset's array, as stored, for HDF5 files.

    Raises:
        ValueError: the suffix is not one of the supported formats.
        OSError: the file cannot be opened or decoded (missing, empty, truncated, not an image, or an HDF5 file
            without the dataset).
    """
    path = Path(path)
    if is_h5(path):
        return _read_h5(path, h5_dataset)
    if is_nifti(path):
        if nib is None:  # pragma: no cover - nibabel is a dependency of the project
            raise OSError(f"{path}: reading NIfTI files needs nibabel, which is not installed")
        try:
            return np.asanyarray(nib.load(str(path)).dataobj)
        except Exception as error:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
            raise OSError(f"{type(error).__name__}: {error}") from error
    if path.suffix.lower() not in IMAGE_2D_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported file format {path.suffix!r}, expected one of "
            f"{', '.join(IMAGE_2D_SUFFIXES + NIFTI_SUFFIXES + H5_SUFFIXES)}"
        )
    with strict_image_loading():
        try:
            with Image.open(path) as image:
                image.load()
                return np.asarray(image)
        except OSError:
            raise
        except Exception as error:  # e.g. SyntaxError or ValueError from a broken PNG chunk
            raise OSError(f"{type(error).__name__}: {error}") from error


def spatial_shape(path: str | os.PathLike, array: np.ndarray) -> tuple[int, ...]:
    """The spatial part of an array returned by :func:`read_array` for ``path``.

    Args:
        path: the file the array was read from (its format says which axes are spatial).
        array: the array read from it.

    Returns:
        ``(H, W)`` for 2D files, ``(X, Y, Z)`` (or fewer axes for a 2D volume) for NIfTI and HDF5 files.
    """
    spatial_ndim = 3 if is_nifti(path) or is_h5(path) else 2
    return tuple(int(size) for size in array.shape[:spatial_ndim])


def _prepare_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def write_png(path: str | os.PathLike, array: np.ndarray, *, compress_level: int = 1) -> None:
    """Write a ``(H, W)`` or ``(H, W, 3)`` uint8 array as a lossless PNG (mode ``L`` or ``RGB``).

    Args:
        path: the file to write; its parent folders are created.
        array: uint8 pixel values.
        compress_level: zlib level 0-9; the pixels are the same at every level, 1 writes noisy images fastest.

    Raises:
        ValueError: the array is not uint8 ``(H, W)`` or ``(H, W, 3)``.
    """
    _check_uint8_image(array)
    path = Path(path)
    _prepare_parent(path)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=compress_level)


def write_jpeg(path: str | os.PathLike, array: np.ndarray, *, quality: int = 90, subsampling: int = 0) -> None:
    """Write a ``(H, W)`` or ``(H, W, 3)`` uint8 array as a baseline JPEG.

    Args:
        path: the file to write; its parent folders are created.
        array: uint8 pixel values.
        quality: Pillow's JPEG quality, 1-100 (100 = quantisation step 1, the smallest error JPEG can give).
        subsampling: Pillow's chroma subsampling: 0 = 4:4:4 (none), 1 = 4:2:2, 2 = 4:2:0.

    Raises:
        ValueError: the array is not uint8 ``(H, W)`` or ``(H, W, 3)``.
    """
    _check_uint8_image(array)
    path = Path(path)
    _prepare_parent(path)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="JPEG", quality=quality, subsampling=subsampling)


def _check_uint8_image(array: np.ndarray) -> None:
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) array, got {array.dtype} {array.shape}")


def write_h5(
    path: str | os.PathLike,
    datasets: dict[str, np.ndarray],
    *,
    compression_level: int = 1,
    compress: Sequence[str] | None = None,
) -> None:
    """Write named arrays as datasets of one HDF5 file (the LA layout's ``mri_norm2.h5``).

    Args:
        path: the file to write; its parent folders are created.
        datasets: dataset name -> array, e.g. ``{"image": float32 (X, Y, Z), "label": uint8 (X, Y, Z)}``.
        compression_level: gzip level 0-9 of the compressed datasets (the values are the same at every level).
        compress: names of the datasets to gzip (None: all). Noisy float volumes shrink by about 10 % and take
            several times longer to write; masks shrink by orders of magnitude.

    Raises:
        ValueError: no dataset given.
    """
    if not datasets:
        raise ValueError(f"{path}: no dataset to write")
    path = Path(path)
    _prepare_parent(path)
    with h5py.File(path, "w") as stream:
        for name, array in datasets.items():
            options = (
                {}
                if compress is not None and name not in compress
                else {"compression": "gzip", "compression_opts": compression_level}
            )
            stream.create_dataset(name, data=np.ascontiguousarray(array), **options)
