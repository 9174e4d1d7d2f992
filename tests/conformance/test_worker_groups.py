"""The suite's xdist groups hold: every item of a ``<bundle>-<group>`` group runs on one worker.

The integration suite trains each bundle once per worker and shares the copy between the items of its
``<bundle>-trained`` group (``test_bundles.grouped``); if ``--dist loadgroup`` stops grouping (pytest 9.2 with
pytest-xdist 3.8 did so silently), the items spread over the workers and each worker trains the bundle again.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GROUPED = """
import os
from pathlib import Path

import pytest


def grouped(group):
    return [pytest.param(b, marks=pytest.mark.xdist_group(f"{b}-{group}")) for b in "abcdef"]


@pytest.mark.parametrize("name", grouped("trained"))
def test_one(name):
    Path(f"ran_{name}_{os.environ['PYTEST_XDIST_WORKER']}_one").touch()


@pytest.mark.parametrize("name", grouped("trained"))
def test_two(name):
    Path(f"ran_{name}_{os.environ['PYTEST_XDIST_WORKER']}_two").touch()
"""


def test_each_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's addopts
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadgroup", "-p", "no:cacheprovider"]
    proc = subprocess.run([*cmd, "test_grouped.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = [re.fullmatch(r"ran_(\w)_(gw\d+)_(one|two)", p.name).groups() for p in tmp_path.glob("ran_*")]
    assert len(ran) == 12, ran
    workers = {name: {worker for n, worker, _ in ran if n == name} for name in "abcdef"}
    assert all(len(w) == 1 for w in workers.values()), f"groups split over workers: {workers}"
