"""MONAI Label's bundle inference task, for the bundles of label-efficient-bundles.

:class:`LabelEfficientInferTask` is MONAI Label's ``BundleInferTask`` with the geometry of 2D labels fixed, as
MONAI Label's own 2D apps (endoscopy, pathology) do: the label's channel axis is dropped after MONAI Label's
``Restored``, so that a 2D image gets a ``W x H`` label (not a ``1 x W x H`` slab that no viewer overlays, and that
JPEG and PNG writers refuse), and a 2D request without an extension gets a PNG (a label in the image's JPEG format
would be lossy) of 8-bit label indices. A 3D request without an extension for an HDF5 volume (the LA layout) gets
a NIfTI label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.transforms import SqueezeDimd
from monailabel.tasks.infer.bundle import BundleInferTask

__all__ = ["LabelEfficientInferTask"]

DEFAULT_2D_EXTENSION = ".png"
"""Label file of a 2D request that names no ``result_extension``."""
DEFAULT_3D_EXTENSION = ".nii.gz"
"""Label file of a 3D request that names none, for images in a format no label writer has (:data:`NO_LABEL_FORMATS`)."""
NO_LABEL_FORMATS = (".h5", ".hdf5")
"""Image formats that MONAI Label cannot write a label in: the HDF5 volumes of the LA benchmark."""


class LabelEfficientInferTask(BundleInferTask):
    """MONAI Label's ``BundleInferTask`` whose 2D labels have the image's geometry.

    Args:
        path: the bundle folder.
        conf: the app's ``--conf`` options.
        kwargs: other arguments of ``BundleInferTask``.
    """

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        post = list(super().post_transforms(data))
        if self.dimension == 2:
            post.append(SqueezeDimd(keys=self.output_label_key, dim=0))
        return post

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        requested = extension is not None or bool(data.get("result_extension"))
        if self.dimension == 2:
            extension = extension if requested else DEFAULT_2D_EXTENSION
            if dtype is None and not data.get("result_dtype"):
                dtype = "uint8"  # PNG and JPEG writers take 8-bit images; labels are indices 0..n
        elif not requested and str(data.get("image_path", "")).lower().endswith(NO_LABEL_FORMATS):
            extension = DEFAULT_3D_EXTENSION  # MONAI Label would write the label in the image's format
        return super().writer(data, extension=extension, dtype=dtype)
