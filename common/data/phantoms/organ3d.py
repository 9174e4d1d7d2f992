"""A procedural 3D MR-like organ phantom: a smooth irregular cavity with an appendage, and its exact mask.

It stands in for the left atrium LGE-MRI benchmark (and other single-organ MR volumes) when the real data is not
there: written to disk in the LA layout, it is read by the same loading code. Each case is drawn from a generator
seeded by ``(seed, index)`` only:

- a body: an ellipsoid (random semi-axes and orientation) whose radius is modulated by a smooth function of the
  direction (a sum of von Mises-Fisher bumps on the unit sphere), so every case has its own irregular shape;
- an appendage-like protrusion (the left atrial appendage): a tapering, bent tube (capsules along a quadratic Bezier
  curve) growing out of the body's surface, joined to it by a smooth union;
- the image: the organ brighter than the surrounding tissue, separated from it by a thin darker wall, with
  partial-volume edges; neighbouring structures of similar brightness that are not labelled (as the aorta and
  ventricles are beside the atrium); smooth tissue texture; a multiplicative bias field; Rician noise (the magnitude
  of a complex signal with Gaussian noise in both channels); a slight blur; finally z-score normalisation, as the
  public ``mri_norm2.h5`` volumes are.

The mask is exactly ``{signed distance <= 0}`` of the organ (body smoothly united with the appendage).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from common.data.phantoms.base import Phantom, ordered_range

__all__ = ["OrganPhantom3D"]

_BUMPS = 7
_FIELD_MODES = 4
_APPENDAGE_SAMPLES = 12


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _cosine_field(rng: np.random.Generator, shape: tuple[int, int, int], modes: int = _FIELD_MODES) -> np.ndarray:
    """A smooth random field of unit standard deviation: a random sum of the first separable cosine modes."""
    frequencies = np.arange(modes, dtype=np.float32)
    bases = [
        np.cos(math.pi * (np.arange(size, dtype=np.float32)[:, None] + 0.5) / size * frequencies) for size in shape
    ]
    decay = 1.0 / (1.0 + frequencies[:, None, None] + frequencies[None, :, None] + frequencies[None, None, :])
    coefficients = rng.standard_normal((modes, modes, modes)).astype(np.float32) * decay
    coefficients[0, 0, 0] = 0.0
    field = np.einsum("ijk,xi,yj,zk->xyz", coefficients, *bases, optimize=True)
    return (field / max(float(field.std()), 1e-6)).astype(np.float32)


def _smooth_min(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Smooth union of two signed distances (log-sum-exp over ``width`` voxels); never above ``min(a, b)``."""
    return np.minimum(a, b) - width * np.log1p(np.exp(-np.abs(a - b) / width))


class OrganPhantom3D(Phantom):
    """Deterministic generator of 3D organ cases: ``generate(index) -> (image (X, Y, Z) float32, mask (X, Y, Z) bool)``.

    Args:
        num_cases: number of cases (indices ``0 .. num_cases - 1``).
        seed: non-negative seed; case ``index`` depends only on ``(seed, index)``, not on generation order.
        size_range: ``((min_x, max_x), (min_y, max_y), (min_z, max_z))`` volume size in voxels, inclusive.
        radius_range: the body's mean radius as a fraction of the shorter in-plane side (X or Y), ``(min, max)``;
            its Z semi-axis is also kept within 0.4 of the Z size.
        appendage_length_range: the appendage's length as a multiple of the body's mean radius, ``(min, max)``.
        contrast_range: organ brightness above the surrounding tissue, relative to the tissue, ``(min, max)``.
        noise_range: Rician noise level relative to the tissue signal, ``(min, max)``.
        bias_range: strength of the multiplicative bias field ``exp(b * field)``, ``(min, max)``.
        appendage: grow the appendage (False draws the same case without it: the same body, image and noise).

    Raises:
        ValueError: a non-positive count, a negative seed, sizes below 16 voxels or ranges out of order.
    """

    def __init__(
        self,
        num_cases: int = 100,
        seed: int = 0,
        size_range: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = ((112, 144), (112, 144), (80, 96)),
        radius_range: tuple[float, float] = (0.24, 0.3),
        appendage_length_range: tuple[float, float] = (0.6, 1.0),
        contrast_range: tuple[float, float] = (0.35, 0.7),
        noise_range: tuple[float, float] = (0.05, 0.12),
        bias_range: tuple[float, float] = (0.1, 0.3),
        appendage: bool = True,
    ) -> None:
        super().__init__(num_cases, seed)
        if len(size_range) != 3 or any(not 16 <= low <= high for low, high in size_range):
            raise ValueError(f"size_range must be three (min, max) pairs with 16 <= min <= max, got {size_range}")
        self.size_range = tuple((int(low), int(high)) for low, high in size_range)
        self.radius_range = ordered_range("radius_range", radius_range, strict=True)
        if self.radius_range[1] > 0.4:
            raise ValueError(f"radius_range must lie in (0, 0.4], got {radius_range}")
        self.appendage_length_range = ordered_range("appendage_length_range", appendage_length_range)
        self.contrast_range = ordered_range("contrast_range", contrast_range)
        self.noise_range = ordered_range("noise_range", noise_range)
        self.bias_range = ordered_range("bias_range", bias_range)
        self.appendage = bool(appendage)

    def drawing_params(self) -> dict[str, Any]:
        names = ("size_range", "radius_range", "appendage_length_range", "contrast_range", "noise_range", "bias_range")
        return {**{name: getattr(self, name) for name in names}, "appendage": self.appendage}

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw case ``index``.

        Args:
            index: case index in ``[0, num_cases)``.

        Returns:
            ``image`` ``(X, Y, Z)`` float32 (zero mean, unit standard deviation) and ``mask`` ``(X, Y, Z)`` bool.

        Raises:
            IndexError: ``index`` out of range.
        """
        if not 0 <= index < self.num_cases:
            raise IndexError(f"case index {index} out of range for {self.num_cases} cases")
        rng = np.random.default_rng([self.seed, int(index)])
        shape = tuple(int(rng.integers(low, high + 1)) for low, high in self.size_range)
        grid = [
            np.arange(size, dtype=np.float32).reshape([-1 if axis == i else 1 for axis in range(3)])
            for i, size in enumerate(shape)
        ]

        mean_radius = rng.uniform(*self.radius_range) * min(shape[:2])
        centre = np.array(shape, dtype=np.float64) / 2 * (1 + rng.uniform(-0.08, 0.08, 3))
        distance, body = self._organ(rng, grid, shape, centre, mean_radius)
        mask = distance <= 0

        tissue = 1.0 + 0.06 * _cosine_field(rng, shape) + 0.03 * self._fine_texture(rng, shape)
        contrast = rng.uniform(*self.contrast_range)
        softness = rng.uniform(0.4, 0.9)
        inside = 1.0 / (1.0 + np.exp(np.clip(distance / softness, -30.0, 30.0)))
        wall_width = rng.uniform(1.0, 2.2)
        wall = np.exp(-0.5 * ((distance - wall_width) / (0.5 * wall_width)) ** 2)
        signal = tissue * (1.0 + contrast * inside - rng.uniform(0.25, 0.45) * wall)
        signal = self._add_neighbours(rng, signal, grid, shape, centre, mean_radius, body, contrast)
        signal *= np.exp(rng.uniform(*self.bias_range) * _cosine_field(rng, shape, modes=3))
        sigma = rng.uniform(*self.noise_range)
        real = signal + sigma * rng.standard_normal(shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
        image = ndimage.gaussian_filter(np.sqrt(real * real + imaginary * imaginary), rng.uniform(0.4, 0.7))
        image = (image - image.mean()) / max(float(image.std()), 1e-6)
        return image.astype(np.float32), mask

    @staticmethod
    def _fine_texture(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
        """Fine tissue texture of unit standard deviation: Gaussian-filtered white noise (correlation ~1 voxel)."""
        texture = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 1.0, truncate=2.5)
        return texture / max(float(texture.std()), 1e-6)

    def _organ(
        self,
        rng: np.random.Generator,
        grid: list[np.ndarray],
        shape: tuple[int, int, int],
        centre: np.ndarray,
        mean_radius: float,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Signed distance (about voxels, < 0 inside) of the body smoothly united with the appendage.

        Returns:
            The distance volume and the body's parameters ``(rotation, semi-axes, bump directions, bump weights)``.
        """
        rotation = _rotation(rng)
        semi_axes = mean_radius * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.65, 0.9)])
        semi_axes = np.minimum(semi_axes, 0.36 * min(shape))
        directions = _unit_vectors(rng, _BUMPS)
        amplitudes = rng.uniform(-0.18, 0.18, _BUMPS)
        concentrations = rng.uniform(2.0, 6.0, _BUMPS)
        # local coordinates in units of the semi-axes: u = R^T (p - c) / a
        offsets = [grid[axis] - np.float32(centre[axis]) for axis in range(3)]
        local = [
            sum(np.float32(rotation[axis, k]) * offsets[axis] for axis in range(3)) / np.float32(semi_axes[k])
            for k in range(3)
        ]
        rho = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2) + np.float32(1e-6)
        radius = np.ones_like(rho)
        for direction, amplitude, concentration in zip(directions, amplitudes, concentrations):
            cosine = sum(np.float32(direction[k]) * local[k] for k in range(3)) / rho
            radius += np.float32(amplitude) * np.exp(np.float32(concentration) * (cosine - 1.0))
        radius = np.maximum(radius, 0.5)
        body = (rho - radius) * np.float32(mean_radius)

        # the appendage grows from the surface along a random direction, bends, and tapers
        along = directions[int(rng.integers(_BUMPS))] if rng.random() < 0.5 else _unit_vectors(rng, 1)[0]
        surface_local = along * float(self._radius_at(along, directions, amplitudes, concentrations))
        start = centre + rotation @ (surface_local * semi_axes * 0.85)
        outward = rotation @ (along * semi_axes)
        outward /= np.linalg.norm(outward)
        bend = _unit_vectors(rng, 1)[0]
        bend -= outward * float(bend @ outward)
        length = rng.uniform(*self.appendage_length_range) * mean_radius
        control = start + outward * 0.55 * length + bend * rng.uniform(0.15, 0.45) * length
        end = start + outward * 0.8 * length + bend * rng.uniform(0.3, 0.7) * length
        base_radius = rng.uniform(0.3, 0.42) * mean_radius
        tip_radius = rng.uniform(0.12, 0.2) * mean_radius
        # the whole organ stays inside the volume, as in the benchmark's crops around the atrium
        inner = np.array(shape, dtype=np.float64)
        control = np.clip(control, base_radius + 2, inner - base_radius - 3)
        end = np.clip(end, tip_radius + 2, inner - tip_radius - 3)
        steps = np.linspace(0.0, 1.0, _APPENDAGE_SAMPLES)[:, None]
        points = (1 - steps) ** 2 * start + 2 * (1 - steps) * steps * control + steps**2 * end
        radii = base_radius + (tip_radius - base_radius) * steps[:, 0] ** 0.8
        reach = base_radius + 3.0
        low = np.maximum(np.floor(points.min(axis=0) - reach), 0).astype(int)
        high = np.minimum(np.ceil(points.max(axis=0) + reach) + 1, shape).astype(int)
        distance = body.copy()
        if self.appendage and np.all(high > low):
            box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
            sub = [grid[axis][tuple(box[axis] if k == axis else slice(None) for k in range(3))] for axis in range(3)]
            tube = np.full(tuple(int(b - a) for a, b in zip(low, high)), np.inf, dtype=np.float32)
            for point, tube_radius in zip(points, radii):
                squared = sum((sub[axis] - np.float32(point[axis])) ** 2 for axis in range(3))
                tube = np.minimum(tube, np.sqrt(squared) - np.float32(tube_radius))
            distance[box] = _smooth_min(body[box], tube, width=0.15 * mean_radius)
        return distance.astype(np.float32), (rotation, semi_axes, directions, amplitudes)

    @staticmethod
    def _radius_at(
        direction: np.ndarray, directions: np.ndarray, amplitudes: np.ndarray, concentrations: np.ndarray
    ) -> float:
        cosine = directions @ direction
        return max(0.5, 1.0 + float(np.sum(amplitudes * np.exp(concentrations * (cosine - 1.0)))))

    @staticmethod
    def _add_neighbours(
        rng: np.random.Generator,
        signal: np.ndarray,
        grid: list[np.ndarray],
        shape: tuple[int, int, int],
        centre: np.ndarray,
        mean_radius: float,
        body: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        contrast: float,
    ) -> np.ndarray:
        """Unlabelled look-alikes: two or three ellipsoids of similar brightness next to the organ."""
        rotation, semi_axes, _, _ = body
        for direction in _unit_vectors(rng, int(rng.integers(2, 4))):
            size = mean_radius * rng.uniform(0.35, 0.7)
            axes = size * np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.8, 2.0)])
            reach_body = float(np.linalg.norm(rotation @ (direction * semi_axes)))
            position = centre + direction * (reach_body + size * rng.uniform(1.15, 1.6))
            local_rotation = _rotation(rng)
            reach = float(axes.max()) + 2
            low = np.maximum(np.floor(position - reach), 0).astype(int)
            high = np.minimum(np.ceil(position + reach) + 1, shape).astype(int)
            if np.any(high <= low):
                continue
            box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
            offsets = [
                grid[axis][tuple(box[axis] if k == axis else slice(None) for k in range(3))]
                - np.float32(position[axis])
                for axis in range(3)
            ]
            rho2 = sum(
                (sum(np.float32(local_rotation[axis, k]) * offsets[axis] for axis in range(3)) / np.float32(axes[k]))
                ** 2
                for k in range(3)
            )
            weight = 1.0 / (1.0 + np.exp(np.clip((np.sqrt(rho2) - 1.0) * np.float32(size) / 0.7, -30.0, 30.0)))
            brightness = contrast * rng.uniform(0.7, 1.2)
            signal[box] *= 1.0 + np.float32(brightness) * weight
        return signal
