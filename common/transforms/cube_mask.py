"""Cube masking for masked image modelling: a fraction of the volume hidden under non-overlapping cubes.

DMGSA's dynamic mask ratio (DMR) hides a fraction ``gamma`` of the input under cubes and reconstructs what is under
them; the binary mask is kept for the reconstruction loss. MONAI's ``RandCoarseDropout`` family draws its holes at
random positions, so they overlap and cover an unpredictable fraction of the image. :class:`RandCubeMask` is a
member of that family (a ``RandCoarseTransform``) whose holes are the cells of a regular grid of ``cube_size``
cubes: it hides ``round(ratio * number of cells)`` cells drawn without replacement, so the hidden fraction is the
ratio (exactly when the image size is a multiple of ``cube_size``).

The transforms work on torch tensors on any device (masking runs on the batch inside the training step, where the
engine reads the ratio from its state), and on numpy arrays. The ratio is a plain attribute set by the caller:
a transform never reads an engine's state.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.transforms.intensity.array import RandCoarseTransform
from monai.utils import TransformBackends, ensure_tuple_rep
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = ["RandCubeMask", "RandCubeMaskd", "RandCubeMaskD", "RandCubeMaskDict"]


class RandCubeMask(RandCoarseTransform):
    """Hide a fraction ``ratio`` of a channel-first image under grid-aligned cubes, filled with ``fill_value``.

    Example: a ``(1, 96, 96, 96)`` image with ``cube_size=16`` has a 6x6x6 grid of 216 cells; ``ratio=0.25`` hides 54
    of them, chosen uniformly at random without replacement: 25 % of the voxels. The cells hidden last are available
    as :meth:`mask` (1 on hidden voxels), to restrict a reconstruction loss to them.

    Args:
        cube_size: the cube edge in voxels (one value, or one per spatial dimension).
        ratio: the fraction of the cells to hide, in [0, 1].
        fill_value: the value written into hidden voxels.
        prob: probability of masking at all (1 = always).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, cube_size: Sequence[int] | int = 16, ratio: float = 0.0, fill_value: float = 0.0, prob: float = 1.0
    ) -> None:
        super().__init__(holes=1, spatial_size=cube_size, prob=prob)
        sizes = ensure_tuple_rep(cube_size, len(cube_size) if isinstance(cube_size, Sequence) else 1)
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f"cube_size must be positive, got {cube_size}")
        self.cube_size = cube_size
        self.ratio = ratio
        self.fill_value = float(fill_value)
        self._cells: np.ndarray | None = None  # bool grid of hidden cells, from the last randomize()
        self._spatial: tuple[int, ...] = ()

    @property
    def ratio(self) -> float:
        """The fraction of the cells hidden by the next call."""
        return self._ratio

    @ratio.setter
    def ratio(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ValueError(f"the mask ratio must be in [0, 1], got {value}")
        self._ratio = value

    def _grid(self, spatial: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        cube = ensure_tuple_rep(self.cube_size, len(spatial))
        return tuple(int(c) for c in cube), tuple(math.ceil(s / c) for s, c in zip(spatial, cube))

    def randomize(self, img_size: Sequence[int]) -> None:
        """Draw the hidden cells for an image of spatial size ``img_size`` (also sets ``hole_coords``)."""
        RandomizableTransform.randomize(self, None)
        self._spatial = tuple(int(s) for s in img_size)
        cube, grid = self._grid(self._spatial)
        num_cells = int(np.prod(grid))
        num_hidden = int(math.floor(self.ratio * num_cells + 0.5)) if self._do_transform else 0
        hidden = np.zeros(num_cells, dtype=bool)
        hidden[self.R.choice(num_cells, size=num_hidden, replace=False)] = True
        self._cells = hidden.reshape(grid)
        self.hole_coords = [
            (slice(None),) + tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(cell, cube, self._spatial))
            for cell in np.argwhere(self._cells)
        ]

    def mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The hidden voxels of the last draw: ``(1, *spatial)`` float32, 1 where hidden.

        Raises:
            RuntimeError: nothing was drawn yet.
        """
        if self._cells is None:
            raise RuntimeError("RandCubeMask.mask() called before the first draw")
        cube, _ = self._grid(self._spatial)
        cells = torch.as_tensor(self._cells, device=device)
        for axis, size in enumerate(cube):
            cells = cells.repeat_interleave(size, dim=axis)
        crop = tuple(slice(0, s) for s in self._spatial)
        return cells[crop].unsqueeze(0).to(torch.float32)

    def _transform_holes(self, img: np.ndarray) -> np.ndarray:
        """Fill the hidden cells of a numpy image (the family's numpy path)."""
        for hole in self.hole_coords:
            img[hole] = self.fill_value
        return img

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Mask ``img``.

        Args:
            img: ``(C, *spatial)`` image, torch (any device) or numpy.
            randomize: draw new cells (False reuses the last draw, e.g. for a second image of the same case).

        Returns:
            The masked image, of the input's type and device (a new tensor: the input is not modified).
        """
        if randomize:
            self.randomize(img.shape[1:])
        elif tuple(img.shape[1:]) != self._spatial:
            raise ValueError(f"image size {tuple(img.shape[1:])} differs from the last draw's {self._spatial}")
        tensor = convert_to_tensor(img, track_meta=False)
        keep = 1.0 - self.mask(device=tensor.device).to(tensor.dtype)
        masked = tensor * keep + self.fill_value * (1.0 - keep)
        output, *_ = convert_to_dst_type(masked, dst=img)
        return output


class RandCubeMaskd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandCubeMask`: the same cubes hide every key; the mask is stored too.

    Args:
        keys: keys of the images to mask (all of the same spatial size).
        mask_key: key under which the ``(1, *spatial)`` float32 mask (1 = hidden) is stored.
        cube_size: see :class:`RandCubeMask`.
        ratio: see :class:`RandCubeMask`.
        fill_value: see :class:`RandCubeMask`.
        prob: see :class:`RandCubeMask`.
        allow_missing_keys: do not raise if a key is missing.
    """

    backend = RandCubeMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "mask",
        cube_size: Sequence[int] | int = 16,
        ratio: float = 0.0,
        fill_value: float = 0.0,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.mask_key = mask_key
        self.masker = RandCubeMask(cube_size=cube_size, ratio=ratio, fill_value=fill_value, prob=prob)

    @property
    def ratio(self) -> float:
        """The fraction of the cells hidden by the next call."""
        return self.masker.ratio

    @ratio.setter
    def ratio(self, value: float) -> None:
        self.masker.ratio = value

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCubeMaskd:
        super().set_random_state(seed, state)
        self.masker.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Mask every key of ``data`` with one draw of cubes and add the mask under ``mask_key``.

        Args:
            data: a dict holding ``(C, *spatial)`` images under ``keys``.

        Returns:
            A shallow copy of ``data`` with the masked images and the mask (on the first key's device).
        """
        result = dict(data)
        first = True
        for key in self.key_iterator(result):
            result[key] = self.masker(result[key], randomize=first)
            if first:
                device = result[key].device if isinstance(result[key], torch.Tensor) else None
                result[self.mask_key] = self.masker.mask(device=device)
                first = False
        return result


RandCubeMaskD = RandCubeMaskDict = RandCubeMaskd
