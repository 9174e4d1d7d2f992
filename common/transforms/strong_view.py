"""Strong views for FixMatch-style training: photometric corruption of an image that keeps its geometry.

FixMatch trains a prediction on a strongly perturbed view with the pseudo-label of a weakly perturbed view of the same
image. For segmentation the two views must be aligned pixel for pixel, so the strong view is the weak view plus
photometric corruption only: the geometric (weak) augmentation is applied once to the image and its label, then
:class:`RandStrongViewd` copies the image to a second key and corrupts the copy:

1. colour jitter (probability ``jitter_prob``): brightness, contrast, saturation and hue in a random order, each
   factor drawn uniformly (torchvision's ``ColorJitter`` conventions: brightness ``b`` in ``[1 - b, 1 + b]``, ...,
   hue shift ``h`` in ``[-h, h]`` of a full turn, applied as a rotation of the chroma in YIQ space);
2. Gaussian blur (``blur_prob``), isotropic, sigma drawn from ``blur_sigma`` pixels;
3. additive Gaussian noise (``noise_prob``), standard deviation ``noise_std`` times the value range;
4. cutout (``cutout_prob``): one box of ``cutout_area`` of the image (aspect ratio in ``cutout_ratio`` for 2D images)
   filled with the image's per-channel mean (``cutout_fill`` for a constant).

Values stay in ``value_range`` (the 0-255 of an RGB photograph before normalisation). Saturation and hue need three
channels and are skipped for other images. Every random draw comes from the transform's own generator, so
``set_random_state`` makes the views reproducible (MONAI's ``Randomizable``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import GaussianSmooth, MapTransform, Randomizable, Transform
from monai.utils import TransformBackends, ensure_tuple
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = ["RandStrongView", "RandStrongViewd", "RandStrongViewD", "RandStrongViewDict"]

_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def _range(name: str, value: Sequence[float], low: float = 0.0) -> tuple[float, float]:
    pair = tuple(float(v) for v in ensure_tuple(value))
    if len(pair) != 2 or not low <= pair[0] <= pair[1]:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {value}")
    return pair  # type: ignore[return-value]


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class RandStrongView(Randomizable, Transform):
    """Photometric corruption of a channel-first image: colour jitter, blur, noise and cutout, no geometric change.

    Args:
        value_range: ``(low, high)`` of the intensities (``(0, 255)`` for RGB photographs); results are clipped to it.
        jitter_prob: probability of the colour jitter.
        brightness: brightness factor drawn from ``[max(0, 1 - brightness), 1 + brightness]``.
        contrast: contrast factor drawn likewise (a blend with the mean grey level).
        saturation: saturation factor drawn likewise (a blend with the grey image; three-channel images only).
        hue: hue shift drawn from ``[-hue, hue]`` of a full turn, at most 0.5 (three-channel images only).
        blur_prob: probability of the Gaussian blur.
        blur_sigma: ``(min, max)`` of the blur's standard deviation, pixels.
        noise_prob: probability of the additive Gaussian noise.
        noise_std: its standard deviation, as a fraction of ``high - low``.
        cutout_prob: probability of the cutout.
        cutout_area: ``(min, max)`` fraction of the image the box covers.
        cutout_ratio: ``(min, max)`` aspect ratio (height / width) of the box in 2D, drawn log-uniformly.
        cutout_fill: the box's value; None for the image's per-channel mean.

    Raises:
        ValueError: a probability outside [0, 1] or a range out of order.

    Input and output: ``(C, *spatial)``, a numpy array or a tensor (the output has the input's type, float32).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        value_range: Sequence[float] = (0.0, 255.0),
        jitter_prob: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        blur_prob: float = 0.5,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        noise_prob: float = 0.5,
        noise_std: float = 0.1,
        cutout_prob: float = 0.5,
        cutout_area: Sequence[float] = (0.02, 0.33),
        cutout_ratio: Sequence[float] = (0.3, 3.3),
        cutout_fill: float | None = None,
    ) -> None:
        low, high = (float(v) for v in value_range)
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        for name, factor in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if factor < 0:
                raise ValueError(f"{name} must be non-negative, got {factor}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {noise_std}")
        self.value_range = (low, high)
        self.jitter_prob = _probability("jitter_prob", jitter_prob)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)
        self.blur_prob = _probability("blur_prob", blur_prob)
        self.blur_sigma = _range("blur_sigma", blur_sigma)
        self.noise_prob = _probability("noise_prob", noise_prob)
        self.noise_std = float(noise_std)
        self.cutout_prob = _probability("cutout_prob", cutout_prob)
        self.cutout_area = _range("cutout_area", cutout_area)
        if self.cutout_area[1] > 1.0:
            raise ValueError(f"cutout_area must be fractions in [0, 1], got {cutout_area}")
        self.cutout_ratio = _range("cutout_ratio", cutout_ratio, low=1e-6)
        self.cutout_fill = None if cutout_fill is None else float(cutout_fill)
        self.params: dict[str, Any] = {}

    def randomize(self, img_shape: Sequence[int]) -> None:
        """Draw every parameter of the next view for an image of shape ``(C, *spatial)`` into :attr:`params`."""
        spatial = [int(s) for s in img_shape[1:]]
        params: dict[str, Any] = {}
        if self.R.rand() < self.jitter_prob:
            factors = {
                name: float(self.R.uniform(max(0.0, 1.0 - amount), 1.0 + amount))
                for name, amount in (
                    ("brightness", self.brightness),
                    ("contrast", self.contrast),
                    ("saturation", self.saturation),
                )
            }
            factors["hue"] = float(self.R.uniform(-self.hue, self.hue))
            params["jitter"] = [(_JITTER_OPS[i], factors[_JITTER_OPS[i]]) for i in self.R.permutation(4)]
        if self.R.rand() < self.blur_prob:
            params["blur_sigma"] = float(self.R.uniform(*self.blur_sigma))
        if self.R.rand() < self.noise_prob:
            params["noise_seed"] = int(self.R.randint(0, 2**31 - 1))
        if self.R.rand() < self.cutout_prob and spatial:
            area = float(self.R.uniform(*self.cutout_area))
            if len(spatial) == 2:
                ratio = math.exp(self.R.uniform(math.log(self.cutout_ratio[0]), math.log(self.cutout_ratio[1])))
                fractions = [math.sqrt(area * ratio), math.sqrt(area / ratio)]
            else:
                fractions = [area ** (1.0 / len(spatial))] * len(spatial)
            box = [max(1, min(size, round(f * size))) for f, size in zip(fractions, spatial)]
            start = [int(self.R.randint(0, size - side + 1)) for size, side in zip(spatial, box)]
            params["cutout"] = tuple(slice(s, s + b) for s, b in zip(start, box))
        self.params = params

    @staticmethod
    def _grey(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 3:
            return x.mean(dim=0, keepdim=True)
        weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, *([1] * (x.ndim - 1)))
        return (x * weights).sum(dim=0, keepdim=True)

    def _jitter(self, x: torch.Tensor, name: str, factor: float) -> torch.Tensor:
        """One colour operation on ``x`` in [0, 1]."""
        if name == "brightness":
            x = x * factor
        elif name == "contrast":
            x = factor * x + (1.0 - factor) * self._grey(x).mean()
        elif x.shape[0] != 3:
            return x  # saturation and hue are defined for colour images only
        elif name == "saturation":
            x = factor * x + (1.0 - factor) * self._grey(x)
        else:  # hue: rotate the chroma (I, Q) of YIQ by 2 pi factor
            to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=x.dtype, device=x.device)
            angle = 2.0 * math.pi * factor
            cos, sin = math.cos(angle), math.sin(angle)
            rotation = torch.tensor(
                [[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]], dtype=x.dtype, device=x.device
            )
            matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
            x = torch.einsum("ij,j...->i...", matrix, x)
        return x.clamp(0.0, 1.0)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Return the strong view of ``img`` ``(C, *spatial)`` (the input is not modified).

        Args:
            img: channel-first image with values in ``value_range``.
            randomize: draw new parameters (False reuses the last draw, e.g. for a second key).
        """
        if randomize:
            self.randomize(img.shape)
        low, high = self.value_range
        x = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        x = ((x - low) / (high - low)).clamp(0.0, 1.0)
        for name, factor in self.params.get("jitter", ()):
            x = self._jitter(x, name, factor)
        if "blur_sigma" in self.params:
            x = convert_to_tensor(GaussianSmooth(sigma=self.params["blur_sigma"])(x), track_meta=False)
        if "noise_seed" in self.params:
            generator = torch.Generator(device="cpu").manual_seed(self.params["noise_seed"])
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = (x + self.noise_std * noise).clamp(0.0, 1.0)
        if "cutout" in self.params:
            box = (slice(None), *self.params["cutout"])
            fill = (self.cutout_fill - low) / (high - low) if self.cutout_fill is not None else None
            x = x.clone()
            if fill is None:
                x[box] = x.reshape(x.shape[0], -1).mean(dim=1).view(-1, *([1] * (x.ndim - 1)))
            else:
                x[box] = fill
        out = x * (high - low) + low
        return convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]


class RandStrongViewd(Randomizable, MapTransform):
    """Dictionary version of :class:`RandStrongView`: write the strong view of ``keys`` to new keys.

    The source keys are left as they are (the weak view); the strong view of ``key`` goes to the matching entry of
    ``strong_keys`` (default ``f"{key}_strong"``). All keys of one call share one random draw. Apply it after the
    geometric augmentation and before intensity normalisation, so that the two views are aligned and the colour
    operations see the image's natural range.

    Args:
        keys: keys of the images to corrupt (e.g. ``"image"``).
        strong_keys: where to write the strong views (default: each key plus ``"_strong"``).
        allow_missing_keys: skip absent keys instead of raising.
        kwargs: the arguments of :class:`RandStrongView`.

    Raises:
        ValueError: ``strong_keys`` of another length than ``keys``, or a strong key that is also a source key.
    """

    backend = RandStrongView.backend

    def __init__(
        self,
        keys: KeysCollection,
        strong_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        targets = tuple(f"{key}_strong" for key in self.keys) if strong_keys is None else ensure_tuple(strong_keys)
        if len(targets) != len(self.keys):
            raise ValueError(f"strong_keys {targets} must match keys {self.keys} one to one")
        if set(targets) & set(self.keys):
            raise ValueError(f"strong_keys {targets} must differ from keys {self.keys}: the weak view is kept")
        self.strong_keys = targets
        self.view = RandStrongView(**kwargs)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandStrongViewd:
        super().set_random_state(seed, state)
        self.view.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the parameters of the next view for an image of shape ``data``."""
        self.view.randomize(data)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        first = True
        for key, strong_key in self.key_iterator(d, self.strong_keys):
            if first:
                self.randomize(d[key].shape)
                first = False
            d[strong_key] = self.view(d[key], randomize=False)
        return d


RandStrongViewD = RandStrongViewDict = RandStrongViewd
