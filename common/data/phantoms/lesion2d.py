"""A procedural 2D lesion phantom: colour images of tissue with irregular lesions and their exact masks.

It stands in for the 2D lesion data sets (Kvasir-SEG polyps, ISIC skin lesions, BUSI tumours) when the real data
is not there: written to disk in the real layout, it is read by the same loading code. Each case draws, from a
generator seeded by ``(seed, index)`` only:

- a tissue background in one of two styles: endoscopy-like (pink mucosa, circular aperture, specular highlights)
  or dermoscopy-like (skin tone, dark corners, hairs); a smooth low-frequency colour field, fine and mid-scale
  texture (filtered noise), and vignetting;
- one to ``max_lesions`` lesions, each an irregular star-shaped blob: radius
  ``r(phi) = r0 (1 + sum_k c_k cos(k phi + psi_k))`` for harmonics k = 2..5, stretched and rotated, with a soft
  boundary (a logistic blend over ``softness`` pixels), its own colour shift (some of low contrast), a darker or
  brighter core and its own texture; sizes from small to large (``radius_range``, log-uniform);
- distractors that are not lesions (highlights, hairs) and pixel noise.

The mask is the union of the lesions' supports ``{signed distance <= 0}``: exactly where each lesion's blend
weight is at least 1/2. Image sizes vary per case within ``size_range``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from common.data.phantoms.base import Phantom, ordered_range

__all__ = ["LesionPhantom2D"]

_ENDOSCOPY_BASE = np.array([0.78, 0.42, 0.38], dtype=np.float32)
_DERMOSCOPY_BASE = np.array([0.84, 0.66, 0.58], dtype=np.float32)
_DERMOSCOPY_LESION_DIRECTION = np.array([-0.75, -1.0, -1.1], dtype=np.float32)
_HARMONICS = np.arange(2, 6)
_FIELD_MODES = 4
_BLEND_MARGIN = 10.0


class LesionPhantom2D(Phantom):
    """Deterministic generator of 2D lesion cases: ``generate(index) -> (image (H, W, 3) uint8, mask (H, W) bool)``.

    Args:
        num_cases: number of cases (indices ``0 .. num_cases - 1``).
        seed: non-negative seed; case ``index`` depends only on ``(seed, index)``, not on generation order.
        size_range: ``((min_height, max_height), (min_width, max_width))`` in pixels, inclusive.
        max_lesions: at most this many lesions per case (at least one; fewer are more likely).
        radius_range: mean lesion radius as a fraction of the shorter image side, ``(min, max)``, drawn
            log-uniformly.
        contrast_range: relative colour change of a lesion against its background, ``(min, max)``.
        noise_range: standard deviation of the pixel noise on the [0, 1] intensity scale, ``(min, max)``.

    Raises:
        ValueError: a non-positive count or size, a negative seed, or a range whose bounds are out of order.
    """

    def __init__(
        self,
        num_cases: int = 100,
        seed: int = 0,
        size_range: tuple[tuple[int, int], tuple[int, int]] = ((224, 320), (256, 352)),
        max_lesions: int = 3,
        radius_range: tuple[float, float] = (0.06, 0.36),
        contrast_range: tuple[float, float] = (0.1, 0.5),
        noise_range: tuple[float, float] = (0.005, 0.035),
    ) -> None:
        super().__init__(num_cases, seed)
        if max_lesions < 1:
            raise ValueError(f"max_lesions must be at least 1, got {max_lesions}")
        (min_height, max_height), (min_width, max_width) = size_range
        if not (16 <= min_height <= max_height and 16 <= min_width <= max_width):
            raise ValueError(
                f"size_range must be ((min_h, max_h), (min_w, max_w)) with 16 <= min <= max, got {size_range}"
            )
        self.size_range = ((int(min_height), int(max_height)), (int(min_width), int(max_width)))
        self.max_lesions = int(max_lesions)
        self.radius_range = ordered_range("radius_range", radius_range, strict=True)
        self.contrast_range = ordered_range("contrast_range", contrast_range, strict=True)
        self.noise_range = ordered_range("noise_range", noise_range)

    def drawing_params(self) -> dict[str, Any]:
        names = ("size_range", "max_lesions", "radius_range", "contrast_range", "noise_range")
        return {name: getattr(self, name) for name in names}

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw case ``index``.

        Args:
            index: case index in ``[0, num_cases)``.

        Returns:
            ``image`` ``(H, W, 3)`` uint8 and ``mask`` ``(H, W)`` bool (True inside a lesion).

        Raises:
            IndexError: ``index`` out of range.
        """
        if not 0 <= index < self.num_cases:
            raise IndexError(f"case index {index} out of range for {self.num_cases} cases")
        rng = np.random.default_rng([self.seed, int(index)])
        (min_height, max_height), (min_width, max_width) = self.size_range
        height = int(rng.integers(min_height, max_height + 1))
        width = int(rng.integers(min_width, max_width + 1))
        rows = np.arange(height, dtype=np.float32)[:, None]
        cols = np.arange(width, dtype=np.float32)[None, :]
        endoscopy = bool(rng.random() < 0.5)

        image, radius2 = self._background(rng, rows, cols, endoscopy)
        mask = np.zeros((height, width), dtype=bool)
        num_lesions = 1 + int(rng.choice(self.max_lesions, p=self._lesion_count_weights()))
        for _ in range(num_lesions):
            mask |= self._add_lesion(rng, image, rows, cols, endoscopy)
        image = self._add_distractors(rng, image, rows, cols, endoscopy)
        image = self._apply_optics(rng, image, radius2, endoscopy)
        noise_std = rng.uniform(*self.noise_range)
        image += noise_std * rng.standard_normal((height, width, 1), dtype=np.float32)
        image += 0.5 * noise_std * rng.standard_normal((height, width, 3), dtype=np.float32)
        return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), mask

    def _lesion_count_weights(self) -> np.ndarray:
        weights = 0.45 ** np.arange(self.max_lesions)
        return weights / weights.sum()

    @staticmethod
    def _filtered_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
        """Gaussian-filtered white noise of unit standard deviation."""
        noise = ndimage.gaussian_filter(
            rng.standard_normal(shape, dtype=np.float32), sigma, mode="reflect", truncate=3.0
        )
        return noise / max(float(noise.std()), 1e-6)

    @staticmethod
    def _smooth_field(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` low-frequency colour field (mostly brightness): a random sum of the first cosine modes."""
        height, width = rows.shape[0], cols.shape[1]
        frequencies = np.arange(_FIELD_MODES, dtype=np.float32)
        row_modes = np.cos(math.pi * (rows + 0.5) / height * frequencies)  # (H, K)
        col_modes = np.cos(math.pi * (cols.T + 0.5) / width * frequencies)  # (W, K)
        decay = 1.0 / (1.0 + frequencies[:, None] + frequencies[None, :])
        coefficients = rng.normal(0.0, 1.0, (_FIELD_MODES, _FIELD_MODES, 3)).astype(np.float32)
        coefficients = (0.8 * coefficients[..., :1] + 0.2 * coefficients) * decay[..., None]
        coefficients[0, 0] = 0.0  # the mean colour is set separately
        per_row = np.tensordot(row_modes, coefficients, axes=(1, 0))  # (H, K, 3)
        return np.einsum("hlc,wl->hwc", per_row, col_modes).astype(np.float32)

    def _background(
        self, rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, endoscopy: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tissue colour field with texture; also returns the squared normalised radius from the optical centre."""
        height, width = rows.shape[0], cols.shape[1]
        base = (_ENDOSCOPY_BASE if endoscopy else _DERMOSCOPY_BASE) + rng.normal(0.0, 0.04, 3).astype(np.float32)
        field = self._smooth_field(rng, rows, cols)
        fine = self._filtered_noise(rng, (height, width), rng.uniform(0.7, 1.6))
        mid = self._filtered_noise(rng, (height, width), rng.uniform(3.0, 7.0))
        texture = rng.uniform(0.01, 0.04) * fine + rng.uniform(0.01, 0.04) * mid
        image = base * (1.0 + rng.uniform(0.04, 0.12) * field) * (1.0 + texture[..., None])
        centre_row = height / 2 * (1 + rng.uniform(-0.1, 0.1))
        centre_col = width / 2 * (1 + rng.uniform(-0.1, 0.1))
        radius2 = ((rows - centre_row) / (height / 2)) ** 2 + ((cols - centre_col) / (width / 2)) ** 2
        return image.astype(np.float32), radius2.astype(np.float32)

    def _add_lesion(
        self, rng: np.random.Generator, image: np.ndarray, rows: np.ndarray, cols: np.ndarray, endoscopy: bool
    ) -> np.ndarray:
        """Blend one lesion into ``image`` (in place); returns the lesion's support (its exact mask)."""
        height, width = image.shape[:2]
        low, high = self.radius_range
        mean_radius = math.exp(rng.uniform(math.log(low), math.log(high))) * min(height, width)
        centre_row = rng.uniform(0.15, 0.85) * height
        centre_col = rng.uniform(0.15, 0.85) * width
        aspect = rng.uniform(0.6, 1.0)
        angle = rng.uniform(0.0, math.pi)
        irregularity = rng.uniform(0.05, 0.3)
        amplitudes = rng.uniform(-1.0, 1.0, _HARMONICS.size) * irregularity / np.sqrt(_HARMONICS)
        phases = rng.uniform(0.0, 2 * math.pi, _HARMONICS.size)
        softness = rng.uniform(0.6, 2.5)
        contrast = rng.uniform(*self.contrast_range)
        if endoscopy:  # polyps: brighter or darker than the mucosa, with a slight change of hue
            direction = rng.choice([-1.0, 1.0]) + rng.normal(0.0, 0.25, 3)
        else:  # skin lesions: brown, darker than the skin
            direction = _DERMOSCOPY_LESION_DIRECTION + rng.normal(0.0, 0.2, 3)
        # unit mean brightness change, so that ``contrast`` alone sets how visible the lesion is
        direction = (direction / max(abs(float(direction.mean())), 0.5)).astype(np.float32)
        core_strength = rng.uniform(-0.5, 0.5) * contrast
        texture_strength = rng.uniform(0.02, 0.08)
        texture_sigma = rng.uniform(1.0, 4.0)

        # Work in the lesion's bounding box: rho >= the Euclidean distance to the centre, so outside the box the
        # signed distance exceeds _BLEND_MARGIN softness widths and the blend weight is below 1e-4.
        reach = mean_radius * (1.0 + float(np.abs(amplitudes).sum())) + _BLEND_MARGIN * softness
        top, bottom = max(0, int(centre_row - reach)), min(height, int(centre_row + reach) + 2)
        left, right = max(0, int(centre_col - reach)), min(width, int(centre_col + reach) + 2)
        d_row, d_col = rows[top:bottom] - centre_row, cols[:, left:right] - centre_col
        along = d_col * math.cos(angle) + d_row * math.sin(angle)
        across = (-d_col * math.sin(angle) + d_row * math.cos(angle)) / aspect
        rho = np.hypot(along, across)
        phi = np.arctan2(across, along)
        profile = np.ones_like(phi)
        for harmonic, amplitude, phase in zip(_HARMONICS.tolist(), amplitudes.tolist(), phases.tolist()):
            profile += amplitude * np.cos(harmonic * phi + phase)
        distance = rho - mean_radius * np.maximum(profile, 0.35)  # < 0 inside; about pixels along the long axis
        weight = 1.0 / (1.0 + np.exp(np.clip(distance / softness, -30.0, 30.0)))  # >= 1/2 exactly where distance <= 0

        depth = np.clip(-distance / max(mean_radius, 1.0), 0.0, 1.0)
        texture = self._filtered_noise(rng, distance.shape, texture_sigma)
        change = contrast * direction + (core_strength * depth + texture_strength * texture)[..., None]
        image[top:bottom, left:right] *= 1.0 + weight[..., None] * change
        support = np.zeros((height, width), dtype=bool)
        support[top:bottom, left:right] = distance <= 0
        return support

    def _add_distractors(
        self, rng: np.random.Generator, image: np.ndarray, rows: np.ndarray, cols: np.ndarray, endoscopy: bool
    ) -> np.ndarray:
        """Unlabeled look-alikes: specular highlights (endoscopy) or hairs (dermoscopy)."""
        height, width = image.shape[:2]
        if endoscopy:
            glare = np.zeros((height, width), dtype=np.float32)
            for _ in range(int(rng.integers(0, 7))):
                row, col = rng.uniform(0, height), rng.uniform(0, width)
                sigma, brightness = rng.uniform(1.0, 4.0), rng.uniform(0.3, 0.8)
                top, bottom = max(0, int(row - 4 * sigma)), min(height, int(row + 4 * sigma) + 2)
                left, right = max(0, int(col - 4 * sigma)), min(width, int(col + 4 * sigma) + 2)
                squared = (rows[top:bottom] - row) ** 2 + (cols[:, left:right] - col) ** 2
                glare[top:bottom, left:right] += brightness * np.exp(-squared / (2 * sigma**2))
            return image + np.minimum(glare, 1.0)[..., None]
        num_hairs = int(rng.integers(0, 5)) if rng.random() < 0.5 else 0
        if num_hairs == 0:
            return image
        strokes = np.zeros((height, width), dtype=np.float32)
        steps = np.linspace(0.0, 1.0, 4 * (height + width))[:, None]
        for _ in range(num_hairs):
            start, bend, end = (rng.uniform(0, 1, 2) * (height, width) for _ in range(3))
            points = (1 - steps) ** 2 * start + 2 * (1 - steps) * steps * bend + steps**2 * end  # quadratic Bezier
            inside = np.all((points >= 0) & (points < (height, width)), axis=1)
            indices = points[inside].astype(int)
            strokes[indices[:, 0], indices[:, 1]] = rng.uniform(0.5, 0.9)
        hairs = np.clip(ndimage.gaussian_filter(strokes, 0.6) * 2.5, 0.0, 0.9)
        return image * (1.0 - hairs[..., None])

    @staticmethod
    def _apply_optics(rng: np.random.Generator, image: np.ndarray, radius2: np.ndarray, endoscopy: bool) -> np.ndarray:
        """Vignetting, and the dark outside of a circular aperture (endoscope) or dark corners (dermoscope)."""
        vignette = 1.0 - rng.uniform(0.1, 0.4) * radius2
        if endoscopy or rng.random() < 0.5:
            aperture = rng.uniform(1.0, 1.3)
            edge = rng.uniform(0.01, 0.05)
            inside = 1.0 / (1.0 + np.exp(np.clip((np.sqrt(radius2) - aperture) / edge, -30.0, 30.0)))
            vignette = vignette * (0.04 + 0.96 * inside)
        return image * np.clip(vignette, 0.0, 1.0)[..., None]
