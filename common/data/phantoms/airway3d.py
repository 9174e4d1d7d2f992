"""A procedural chest CT phantom with an airway tree: CT intensities in Hounsfield units and the exact lumen label.

It stands in for the airway data sets (ATM'22, BAS, EXACT'09) when the real data is not there: written to disk in
the ATM'22 layout (NIfTI, HU), it is read by the same loading code. Each case is drawn from a generator seeded by
``(seed, index)`` only:

- a body (soft tissue, about +40 HU) in air (-1000 HU) holding two lungs of parenchyma near -850 HU with a smooth
  low-frequency texture, a few low-attenuation blobs (about -950 HU, emphysema-like) that look like thin lumen, and
  pulmonary vessels (soft tissue) running beside the bronchi;
- an airway tree: a trachea that descends through the mediastinum and bifurcates at the carina into two main
  bronchi aimed well inside each lung, then every branch splits in two, recursively. Child radii follow Murray's
  law ``r_parent^3 = r_1^3 + r_2^3`` with a random asymmetry (a symmetric split shrinks radii by
  ``2^(-1/3) ~ 0.794``, the Murray factor); branching angles and the rotation of each branching plane are random;
  lengths are a few diameters. Branches stop when their radius would drop below ``min_radius`` voxels, so the
  terminal branches have radii of 1-2 voxels; a branch whose two children cannot both be grown (one would leave the
  lung or run into another branch) stays terminal;
- the lumen (air, -1000 HU) surrounded by a brighter wall (about -100 HU, thickness ``max(0.6, 0.2 r)`` voxels);
  partial-volume rendering (the fraction of each voxel inside the lumen and wall, approximated from the signed
  distance), a Gaussian point-spread blur and noise.

The label is exact: a voxel is airway when its centre lies inside a branch's lumen (a capsule of the branch's
radius around its centre line). The number of branches (trachea included) is known: ``branch_count(index)``;
parsing the label's skeleton into segments between junctions finds the same branches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from scipy import ndimage

from common.data.phantoms.base import Phantom, ordered_range

__all__ = ["AirwayBranch", "AirwayPhantom3D"]

AIR_HU = -1000.0
LUNG_HU = -850.0
TISSUE_HU = 40.0
WALL_HU = -100.0
LOW_ATTENUATION_HU = -950.0
_LENGTH_PER_RADIUS = (4.0, 7.0)  # branch length / lumen radius: about 2 to 3.5 diameters, as in human airways
_PLACEMENT_TRIES = 4
_MIN_VISIBLE_LENGTH = 8.0  # voxels of a branch outside its parent's lumen, at least


@dataclass(frozen=True)
class AirwayBranch:
    """One branch of the airway tree: a straight tube between two points (voxel coordinates)."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    radius: float
    generation: int
    parent: int
    """Index of the parent branch in the tree list, -1 for the trachea."""


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _perpendicular(direction: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to ``direction``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    return _unit(np.cross(direction, helper))


def _segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of ``points`` (..., 3) to the segment ``start``-``end``."""
    axis = end - start
    length2 = max(float(axis @ axis), 1e-12)
    t = np.clip(((points - start) @ axis) / length2, 0.0, 1.0)
    closest = start + t[..., None] * axis
    return np.linalg.norm(points - closest, axis=-1)


class AirwayPhantom3D(Phantom):
    """Deterministic generator of airway CT cases: ``generate(index) -> (image (X, Y, Z) HU, label (X, Y, Z) bool)``.

    Args:
        num_cases: number of cases (indices ``0 .. num_cases - 1``).
        seed: non-negative seed; case ``index`` depends only on ``(seed, index)``.
        shape: volume size ``(X, Y, Z)`` in voxels (X: right-left, Y: anterior-posterior, Z: inferior-superior).
        spacing: voxel size in millimetres, written to the NIfTI affine.
        trachea_radius: trachea lumen radius in voxels, ``(min, max)``.
        min_radius: a branch whose radius would fall below this (voxels) is not grown; terminal radii lie between
            ``min_radius`` and about ``1.6 min_radius``.
        max_generations: the deepest generation grown (the trachea is generation 0).
        noise_std: standard deviation of the image noise in HU, ``(min, max)``.
        blur_sigma: standard deviation of the Gaussian point-spread blur in voxels.

    Raises:
        ValueError: a non-positive count, size or radius, a negative seed, or a range whose bounds are out of order.
    """

    def __init__(
        self,
        num_cases: int = 10,
        seed: int = 0,
        shape: tuple[int, int, int] = (112, 112, 128),
        spacing: tuple[float, float, float] = (1.75, 1.75, 1.75),
        trachea_radius: tuple[float, float] = (4.0, 5.0),
        min_radius: float = 1.0,
        max_generations: int = 9,
        noise_std: tuple[float, float] = (15.0, 30.0),
        blur_sigma: float = 0.6,
    ) -> None:
        super().__init__(num_cases, seed)
        if len(shape) != 3 or min(shape) < 32:
            raise ValueError(f"shape must be three sizes of at least 32 voxels, got {shape}")
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive sizes in mm, got {spacing}")
        self.trachea_radius = ordered_range("trachea_radius", trachea_radius)
        self.noise_std = ordered_range("noise_std", noise_std)
        if not 0 < min_radius < trachea_radius[0]:
            raise ValueError(f"min_radius must be in (0, trachea_radius min), got {min_radius}")
        if max_generations < 1:
            raise ValueError(f"max_generations must be at least 1, got {max_generations}")
        if blur_sigma < 0:
            raise ValueError(f"blur_sigma must be non-negative, got {blur_sigma}")
        self.shape = tuple(int(s) for s in shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.min_radius = float(min_radius)
        self.max_generations = int(max_generations)
        self.blur_sigma = float(blur_sigma)

    def drawing_params(self) -> dict[str, Any]:
        names = ("shape", "spacing", "trachea_radius", "min_radius", "max_generations", "noise_std", "blur_sigma")
        return {name: getattr(self, name) for name in names}

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_cases:
            raise IndexError(f"case index {index} out of range for {self.num_cases} cases")

    def affine(self) -> np.ndarray:
        """The ``4 x 4`` voxel-to-world (RAS, mm) matrix of every case: the spacing on the diagonal, centred."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = -0.5 * np.asarray(self.spacing) * (np.asarray(self.shape) - 1)
        return affine

    # ------------------------------------------------------------------------------------------------ geometry
    def _lungs(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """Two lung ellipsoids ``(centre, semi-axes)`` in voxels, left and right of the mediastinum."""
        size = np.asarray(self.shape, dtype=float)
        lungs = []
        for side in (-1.0, 1.0):
            centre = size * np.array([0.5 + side * rng.uniform(0.23, 0.25), rng.uniform(0.48, 0.52), 0.45])
            axes = size * np.array([rng.uniform(0.2, 0.22), rng.uniform(0.36, 0.4), rng.uniform(0.4, 0.43)])
            lungs.append((centre, axes))
        return lungs

    @staticmethod
    def _in_lungs(point: np.ndarray, lungs: list[tuple[np.ndarray, np.ndarray]], margin: float = 0.0) -> bool:
        """Whether ``point`` lies inside a lung, at least ``margin`` (as a fraction of the semi-axes) from its edge."""
        return any(float(np.sum(((point - c) / a) ** 2)) <= (1.0 - margin) ** 2 for c, a in lungs)

    def _grow(self, rng: np.random.Generator, lungs: list[tuple[np.ndarray, np.ndarray]]) -> list[AirwayBranch]:
        """Grow the tree breadth-first from the trachea."""
        size = np.asarray(self.shape, dtype=float)
        trachea_radius = rng.uniform(*self.trachea_radius)
        carina = np.array([size[0] * rng.uniform(0.48, 0.52), size[1] * rng.uniform(0.47, 0.53), size[2] * 0.66])
        top = carina + np.array([rng.uniform(-2, 2), rng.uniform(-2, 2), size[2]])  # leaves through the top face
        tree = [AirwayBranch(tuple(top), tuple(carina), trachea_radius, 0, -1)]
        # (branch index, direction, normal of the previous branching plane)
        queue = [(0, np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0]))]
        while queue:
            parent_index, direction, previous_normal = queue.pop(0)
            parent = tree[parent_index]
            if parent.generation >= self.max_generations:
                continue
            # r_small / r_large: the right main bronchus is the wider one, later splits vary more
            asymmetry = rng.uniform(0.75, 0.95) if parent.generation == 0 else rng.uniform(0.6, 1.0)
            large = (1.0 / (1.0 + asymmetry**3)) ** (1.0 / 3.0)  # Murray: large^3 + small^3 = 1
            radii = (parent.radius * large, parent.radius * large * asymmetry)
            if min(radii) < self.min_radius:
                continue  # a branch splits in two or not at all, so that every junction of the skeleton is real
            start = np.asarray(parent.end)
            if parent.generation == 0:
                plane_normal = np.array([0.0, 1.0, 0.0])  # the main bronchi leave the carina in the coronal plane
                children = self._main_bronchi(rng, start, radii, lungs)
            else:  # each branching plane is turned by about 90 degrees from the previous one
                turn = math.pi / 2 + rng.uniform(-0.5, 0.5)
                base = _unit(previous_normal - (previous_normal @ direction) * direction)
                plane_normal = _unit(math.cos(turn) * base + math.sin(turn) * np.cross(direction, base))
                in_plane = _unit(np.cross(plane_normal, direction))
                # the larger child deviates less from the parent's direction
                angles = (rng.uniform(0.25, 0.55), -rng.uniform(0.5, 0.9))
                if rng.random() < 0.5:
                    angles = (-angles[0], -angles[1])
                children = []
                for radius, angle in zip(radii, angles):
                    for _ in range(_PLACEMENT_TRIES):  # a few jittered directions and lengths before giving up
                        jitter = rng.normal(0.0, 0.15, 2)
                        child_direction = _unit(
                            math.cos(angle + jitter[0]) * direction
                            + math.sin(angle + jitter[0]) * in_plane
                            + jitter[1] * plane_normal
                        )
                        # long enough to leave its parent's lumen and show a skeleton segment of several voxels
                        length = max(radius * rng.uniform(*_LENGTH_PER_RADIUS), parent.radius + _MIN_VISIBLE_LENGTH)
                        end = start + length * child_direction
                        branch = AirwayBranch(
                            tuple(start), tuple(end), float(radius), parent.generation + 1, parent_index
                        )
                        if self._can_place(branch, tree + [c for c, _ in children], lungs):
                            children.append((branch, child_direction))
                            break
            if len(children) < 2:
                continue
            for branch, child_direction in children:
                tree.append(branch)
                queue.append((len(tree) - 1, child_direction, plane_normal))
        return tree

    @staticmethod
    def _main_bronchi(
        rng: np.random.Generator,
        carina: np.ndarray,
        radii: tuple[float, float],
        lungs: list[tuple[np.ndarray, np.ndarray]],
    ) -> list[tuple[AirwayBranch, np.ndarray]]:
        """The two main bronchi, each aimed at a point well inside its lung (so that both always exist); the wider one
        goes to the patient's right (lower x in RAS)."""
        children = []
        for radius, (lung_centre, _) in zip(radii, lungs):
            for fraction in np.linspace(0.3, 0.9, 13):  # the first point along the way that is well inside the lung
                end = carina + fraction * (lung_centre - carina) + rng.normal(0.0, 1.0, 3)
                if AirwayPhantom3D._in_lungs(end, lungs, margin=0.1) and np.linalg.norm(end - carina) > 3 * radius:
                    break
            children.append((AirwayBranch(tuple(carina), tuple(end), float(radius), 1, 0), _unit(end - carina)))
        return children

    def _can_place(
        self, branch: AirwayBranch, tree: list[AirwayBranch], lungs: list[tuple[np.ndarray, np.ndarray]]
    ) -> bool:
        """A new branch must end inside a lung and keep clear of every branch but its parent and siblings."""
        start, end, radius = np.asarray(branch.start), np.asarray(branch.end), branch.radius
        if not self._in_lungs(end, lungs, margin=0.04):
            return False
        if not all(radius + 1 <= e < s - radius - 1 for e, s in zip(end, self.shape)):
            return False
        # the branch's far part (beyond its parent's junction) must not touch other branches
        probe = np.stack([start + t * (end - start) for t in (0.5, 0.75, 1.0)])
        for index, other in enumerate(tree):
            if index == branch.parent or other.parent == branch.parent:
                continue
            clearance = radius + other.radius + self._wall(radius) + self._wall(other.radius) + 1.5
            if float(_segment_distance(probe, np.asarray(other.start), np.asarray(other.end)).min()) < clearance:
                return False
        return True

    @staticmethod
    def _wall(radius: float) -> float:
        """Airway wall thickness in voxels for a lumen radius in voxels."""
        return max(0.6, 0.2 * radius)

    def tree(self, index: int) -> list[AirwayBranch]:
        """The airway tree of case ``index`` (cheap: no rendering).

        Args:
            index: case index in ``[0, num_cases)``.

        Returns:
            The branches, trachea first, parents before children.

        Raises:
            IndexError: ``index`` out of range.
        """
        self._check_index(index)
        rng = np.random.default_rng([self.seed, int(index)])
        return self._grow(rng, self._lungs(rng))

    def branch_count(self, index: int) -> int:
        """Number of branches of case ``index``, trachea included."""
        return len(self.tree(index))

    # ----------------------------------------------------------------------------------------------- rendering
    @staticmethod
    def _box(start: np.ndarray, end: np.ndarray, reach: float, shape: tuple[int, ...]) -> tuple[slice, ...]:
        low = np.floor(np.minimum(start, end) - reach).astype(int)
        high = np.ceil(np.maximum(start, end) + reach).astype(int) + 1
        return tuple(slice(max(0, lo), min(s, hi)) for lo, hi, s in zip(low, high, shape))

    @staticmethod
    def _box_points(box: tuple[slice, ...]) -> np.ndarray:
        """``(*box size, 3)`` voxel coordinates of a box."""
        axes = [np.arange(b.start, b.stop, dtype=np.float32) for b in box]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def _tube_distances(
        self, tubes: list[tuple[np.ndarray, np.ndarray, float, float]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Signed distances (voxels) to the union of tubes: to their lumen surface and to their outer surface.

        Args:
            tubes: ``(start, end, inner radius, outer radius)`` per tube, in voxel coordinates.

        Returns:
            ``(inner, outer)``: ``min over tubes of (distance to centre line - radius)``, clipped to +3 far away.
        """
        inner = np.full(self.shape, 3.0, dtype=np.float32)
        outer = np.full(self.shape, 3.0, dtype=np.float32)
        for start, end, radius, outer_radius in tubes:
            box = self._box(start, end, outer_radius + 3.0, self.shape)
            distance = _segment_distance(self._box_points(box), start, end)
            np.minimum(inner[box], distance - radius, out=inner[box])
            np.minimum(outer[box], distance - outer_radius, out=outer[box])
        return inner, outer

    def label(self, index: int) -> np.ndarray:
        """The exact airway label of case ``index`` without drawing the image (cheap, also at CT sizes).

        Returns:
            ``(X, Y, Z)`` bool, True where the voxel centre lies within a branch's radius of its centre line: the
            label :meth:`generate` returns.
        """
        label = np.zeros(self.shape, dtype=bool)
        for branch in self.tree(index):
            start, end = np.asarray(branch.start), np.asarray(branch.end)
            box = self._box(start, end, branch.radius + 1.0, self.shape)
            label[box] |= _segment_distance(self._box_points(box), start, end) < branch.radius
        return label

    @staticmethod
    def _coverage(signed_distance: np.ndarray) -> np.ndarray:
        """Approximate fraction of each voxel inside a surface from the signed distance of its centre."""
        return np.clip(0.5 - signed_distance, 0.0, 1.0)

    def _smooth_noise(self, rng: np.random.Generator, factor: int, sigma: float) -> np.ndarray:
        """Unit-variance noise with structures of about ``factor * sigma`` voxels, made at low resolution."""
        low = [max(4, math.ceil(s / factor)) for s in self.shape]
        field = ndimage.gaussian_filter(rng.standard_normal(low).astype(np.float32), sigma, mode="reflect")
        upsampled = torch.nn.functional.interpolate(
            torch.from_numpy(field)[None, None], size=self.shape, mode="trilinear", align_corners=False
        )
        field = upsampled[0, 0].numpy()
        return (field - field.mean()) / max(float(field.std()), 1e-6)

    def generate(self, index: int) -> tuple[MetaTensor, np.ndarray]:
        """Draw case ``index``.

        Args:
            index: case index in ``[0, num_cases)``.

        Returns:
            ``image``: ``(X, Y, Z)`` float32 ``MetaTensor`` in HU whose ``affine`` holds the spacing; ``label``:
            ``(X, Y, Z)`` bool, True where the voxel centre lies in an airway lumen.

        Raises:
            IndexError: ``index`` out of range.
        """
        self._check_index(index)
        rng = np.random.default_rng([self.seed, int(index)])
        lungs = self._lungs(rng)
        tree = self._grow(rng, lungs)
        coordinates = np.ogrid[tuple(slice(0, s) for s in self.shape)]
        size = np.asarray(self.shape, dtype=np.float32)

        # body (an elliptic cylinder) and lungs (two ellipsoids)
        body_axes = size[:2] * np.array([0.48, 0.46])
        body = sum(((coordinates[a] - 0.5 * size[a]) / body_axes[a]) ** 2 for a in range(2)) <= 1.0
        lung = np.zeros(self.shape, dtype=bool)
        for lung_centre, axes in lungs:
            lung |= sum(((coordinates[a] - lung_centre[a]) / axes[a]) ** 2 for a in range(3)) <= 1.0
        lung &= body
        parenchyma = LUNG_HU + rng.uniform(15.0, 30.0) * self._smooth_noise(rng, 4, 1.5)
        tissue = TISSUE_HU + 10.0 * self._smooth_noise(rng, 8, 1.0)
        image = np.where(lung, parenchyma, np.where(body, tissue, AIR_HU)).astype(np.float32)
        # smooth the lung boundary a little (pleura), then the structures inside
        image = ndimage.gaussian_filter(image, 1.0)

        # low-attenuation blobs inside the lungs: dark spots that a detector of thin lumen must not take for airway
        lung_voxels = np.argwhere(lung)
        blobs = []
        for _ in range(int(rng.integers(20, 40))):
            point = lung_voxels[rng.integers(len(lung_voxels))].astype(np.float32)
            blobs.append((point, point, float(rng.uniform(1.0, 2.5)), float(rng.uniform(1.0, 2.5))))
        blob_inside, _ = self._tube_distances(blobs)
        image += (LOW_ATTENUATION_HU - image) * self._coverage(blob_inside) * lung

        # vessels beside each bronchus (bronchovascular bundles), then the airway wall and lumen
        vessels = []
        for branch in tree[1:]:
            start, end = np.asarray(branch.start), np.asarray(branch.end)
            axis = _unit(end - start)
            first = _perpendicular(axis)
            turn = rng.uniform(0.0, 2.0 * math.pi)
            offset = math.cos(turn) * first + math.sin(turn) * np.cross(axis, first)
            radius = branch.radius * rng.uniform(0.9, 1.2)
            shift = (branch.radius + self._wall(branch.radius) + radius + 0.8) * offset
            vessels.append((start + shift, end + shift, radius, radius))
        vessel_inside, _ = self._tube_distances(vessels)
        image += (TISSUE_HU - image) * self._coverage(vessel_inside) * lung

        tubes = [(np.asarray(b.start), np.asarray(b.end), b.radius, b.radius + self._wall(b.radius)) for b in tree]
        lumen, wall = self._tube_distances(tubes)
        wall_fraction = self._coverage(wall)
        lumen_fraction = self._coverage(lumen)
        image = image * (1.0 - wall_fraction) + WALL_HU * (wall_fraction - lumen_fraction) + AIR_HU * lumen_fraction

        if self.blur_sigma > 0:
            image = ndimage.gaussian_filter(image, self.blur_sigma)
        noise_std = rng.uniform(*self.noise_std)
        image += noise_std * rng.standard_normal(self.shape, dtype=np.float32)
        image = np.clip(image, -1024.0, 3071.0)
        label = lumen < 0.0
        meta = {"spacing": np.asarray(self.spacing), "branch_count": len(tree)}
        return MetaTensor(torch.from_numpy(image.astype(np.float32)), affine=self.affine(), meta=meta), label
