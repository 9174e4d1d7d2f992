"""Tests of common.bundle.workers: loader workers follow the CPUs available, and silence PyTorch's warning."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from common.bundle import available_cpus, loader_workers

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def test_capped_by_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert available_cpus() == 2
    assert loader_workers(4) == 2  # the recipe's 4 on a 2-core machine
    assert loader_workers(1) == 1 and loader_workers(0) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert loader_workers(4) == 4  # never more than preferred


def test_affinity_rather_than_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # a container limited to 2 of 64 cores: os.cpu_count() says 64, the affinity mask 2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 7}, raising=False)
    assert loader_workers(4) == 2


def test_negative_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        loader_workers(-1)


def test_no_pytorch_worker_warning() -> None:
    workers = loader_workers(available_cpus() + 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch's "suggested max number of worker" is a UserWarning
        loader = DataLoader(torch.arange(4), batch_size=2, num_workers=workers)
        assert len(list(loader)) == 2
    with pytest.warns(UserWarning, match="suggested max number of worker"):
        DataLoader(torch.arange(4), batch_size=2, num_workers=available_cpus() + 2).__iter__()._shutdown_workers()


@pytest.mark.parametrize("bundle", sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/train.json")))
def test_bundle_configs_take_the_workers_from_the_helper(bundle: str) -> None:
    import json

    for name, preferred in (("train.json", 4), ("inference.json", 2)):
        config = json.loads((BUNDLES / bundle / "configs" / name).read_text())
        assert config["num_workers"] == f"$common.bundle.loader_workers({preferred})", name
