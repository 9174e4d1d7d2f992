from __future__ import annotations

import json

import numpy as np
import pytest

from common.data.phantoms import AirwayPhantom3D, LesionPhantom2D, OrganPhantom3D, Phantom, ordered_range


class Dots(Phantom):
    version = 3

    def __init__(self, num_cases: int = 2, seed: int = 0, sizes: tuple[int, int] = (4, 5)) -> None:
        super().__init__(num_cases, seed)
        self.sizes = sizes

    def drawing_params(self) -> dict:
        return {"sizes": self.sizes, "scale": np.float32(0.5), "nested": ((1, 2), (3, 4))}


def test_params_put_the_shared_keys_first_and_are_json() -> None:
    params = Dots(num_cases=3, seed=7).params()
    assert params == {
        "generator": "Dots",
        "version": 3,
        "num_cases": 3,
        "seed": 7,
        "sizes": [4, 5],
        "scale": 0.5,
        "nested": [[1, 2], [3, 4]],
    }
    assert json.loads(json.dumps(params)) == params
    assert len(Dots(num_cases=3)) == 3


@pytest.mark.parametrize("num_cases, seed, message", [(0, 0, "num_cases must be at least 1"), (1, -1, "seed")])
def test_count_and_seed_are_checked(num_cases: int, seed: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dots(num_cases=num_cases, seed=seed)


def test_ordered_range() -> None:
    assert ordered_range("r", (1, 2)) == (1.0, 2.0)
    assert ordered_range("r", (0, 0)) == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"r must satisfy 0 < min <= max, got \(0, 1\)"):
        ordered_range("r", (0, 1), strict=True)
    with pytest.raises(ValueError, match="noise must satisfy 0 <= min <= max"):
        ordered_range("noise", (0.3, 0.2))
    with pytest.raises(ValueError, match="pair"):
        ordered_range("r", (1, 2, 3))


@pytest.mark.parametrize("generator", [LesionPhantom2D, OrganPhantom3D, AirwayPhantom3D])
def test_every_phantom_is_a_phantom_with_its_own_arguments_in_params(generator: type) -> None:
    phantom = generator(num_cases=2, seed=1)
    params = phantom.params()
    assert isinstance(phantom, Phantom)
    assert params["generator"] == generator.__name__ and params["num_cases"] == 2 and params["seed"] == 1
    assert len(params) > 5  # the drawing's own arguments follow
