"""What every procedural phantom shares: a case count, a seed, a version, and the parameters that fix its output."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Phantom", "ordered_range"]


def ordered_range(
    name: str, pair: tuple[float, float], minimum: float = 0.0, strict: bool = False
) -> tuple[float, float]:
    """Check a ``(min, max)`` pair and return it as floats.

    Args:
        name: the argument's name, for the error.
        pair: ``(low, high)``.
        minimum: the smallest allowed ``low``.
        strict: ``low`` must be greater than ``minimum`` (not equal).

    Raises:
        ValueError: ``pair`` is not two numbers with ``minimum <= low <= high`` (``<`` when ``strict``).
    """
    if len(pair) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {pair}")
    low, high = float(pair[0]), float(pair[1])
    if not ((low > minimum if strict else low >= minimum) and low <= high):
        relation = "<" if strict else "<="
        raise ValueError(f"{name} must satisfy {minimum:g} {relation} min <= max, got {tuple(pair)}")
    return low, high


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Phantom:
    """Base of the deterministic phantom generators: ``generate(index) -> (image, label)``, case ``index`` depending
    only on ``(seed, index)``.

    Subclasses set :attr:`version`, implement :meth:`generate` and :meth:`drawing_params`.

    Args:
        num_cases: number of cases (indices ``0 .. num_cases - 1``).
        seed: non-negative seed.

    Raises:
        ValueError: a non-positive count or a negative seed.
    """

    version = 1
    """Bumped whenever the drawing changes, so that a phantom written by another version is not mistaken for this."""

    def __init__(self, num_cases: int, seed: int) -> None:
        if num_cases < 1:
            raise ValueError(f"num_cases must be at least 1, got {num_cases}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_cases = int(num_cases)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_cases

    def drawing_params(self) -> dict[str, Any]:
        """The subclass's own arguments that determine the output."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Everything that determines the output (JSON-serialisable), for the phantom's marker file."""
        common = {"generator": type(self).__name__, "version": self.version, "num_cases": self.num_cases}
        return {**common, "seed": self.seed, **{k: _jsonable(v) for k, v in self.drawing_params().items()}}

    def generate(self, index: int) -> tuple[Any, Any]:
        """Case ``index``: ``(image, label)``."""
        raise NotImplementedError
