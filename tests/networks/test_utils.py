"""Tests of common.networks.utils: the shared argument checks and their messages."""

from __future__ import annotations

import pytest

from common.networks.utils import check_probabilities, check_spatial_dims


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_two_and_three_dimensions_pass(spatial_dims: int) -> None:
    check_spatial_dims(spatial_dims)


@pytest.mark.parametrize("spatial_dims", [0, 1, 4])
def test_other_dimensions_are_named(spatial_dims: int) -> None:
    with pytest.raises(ValueError, match=rf"spatial_dims must be 2 or 3, got {spatial_dims}"):
        check_spatial_dims(spatial_dims)


def test_probabilities_in_the_half_open_unit_interval_pass() -> None:
    check_probabilities("p", 0.0, 0.5, 0.999)
    check_probabilities("p")  # nothing to check


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_a_probability_outside_is_named_with_its_value(bad: float) -> None:
    with pytest.raises(ValueError, match=rf"dropout_prob must be in \[0, 1\), got {bad}$"):
        check_probabilities("dropout_prob", bad)
    with pytest.raises(ValueError, match=rf"dropout must be in \[0, 1\), got \[0.1, {bad}\]"):
        check_probabilities("dropout", 0.1, bad)
