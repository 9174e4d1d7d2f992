"""Helpers of the sharing tests (export, clean environments, MONAI Label): exports, demo cases, virtual environments.

Not a test module: ``test_sharing.py`` and ``test_monai_label_app.py`` import it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from test_bundles import ROOT, TRAINED, parse

from common.bundle.export import blocked_package_env, stage_bundle
from common.bundle.model_info import zoo_name_of

__all__ = [
    "ROOT",
    "base_packages",
    "build_venv",
    "clone_venv",
    "demo_case",
    "export_trained",
    "outside_env",
    "required_packages",
    "run",
    "run_blocked",
    "stage",
    "venv_python",
    "zoo_name",
    "TRAINED",
]

TIMEOUT = 900


def zoo_name(name: str) -> str:
    """The model-zoo name of bundle ``name`` (from ``bundles/model_info.json``)."""
    return zoo_name_of(ROOT / "bundles" / name)


def stage(name: str, dest: Path) -> Path:
    """The exported sources of bundle ``name`` (no models), staged in ``dest/<zoo name>``."""
    zoo = zoo_name(name)
    return stage_bundle(ROOT / "bundles" / name, dest / zoo, zoo).path


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command and fail with its output when it fails."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(map(str, cmd))}` in {cwd} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def run_blocked(cmd: list[str], cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command of this environment with the ``common`` package blocked."""
    with blocked_package_env() as env:
        return run(cmd, cwd, env, timeout)


def outside_env() -> dict[str, str]:
    """The environment of a user outside the repository: no ``PYTHONPATH``, no virtual environment activated."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def export_trained(bundle: Path, name: str, out: Path) -> tuple[Path, float]:
    """Export a trained copy of bundle ``name`` with the user's command; returns the folder and the seconds taken."""
    start = time.perf_counter()
    run(
        [sys.executable, "-m", "common.bundle", "export", bundle, "--out", out, "--name", zoo_name(name)],
        ROOT,
        outside_env(),
    )
    return out / zoo_name(name), time.perf_counter() - start


def demo_case(bundle: Path, dest: Path) -> Path:
    """Copy one case image of a trained bundle copy's phantom (its datalist) into folder ``dest``; return its path.

    Demo data stay out of exports (the model zoo keeps large files elsewhere): the case is written by the test.
    """
    datalist = parse(bundle, "train", "quick").get_parsed_content("datalist")
    cases = datalist.get("test") or datalist.get("validation") or datalist["training"]
    source = Path(cases[0]["image"])
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(source, dest / source.name))


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def base_packages() -> list[str]:
    """What a user installs besides a bundle's own packages: MONAI, PyTorch, NumPy, and MONAI's bundle command line.

    ``fire`` is what ``python -m monai.bundle`` is built on; ``jsonschema`` is what ``verify_metadata`` validates
    with. Pinned to this environment's versions (torch without its local build tag: the CPU wheel is 2.13.0).
    """
    pins = {name: version(name).split("+")[0] for name in ("torch", "monai", "numpy", "fire", "jsonschema")}
    return [f"{name}=={pinned}" for name, pinned in pins.items()]


def build_venv(path: Path, packages: list[str]) -> float:
    """Create a virtual environment at ``path`` with ``packages`` (pip, this machine's configuration); seconds taken."""
    start = time.perf_counter()
    run([sys.executable, "-m", "venv", path], path.parent, outside_env())
    run([venv_python(path), "-m", "pip", "install", "--quiet", *packages], path.parent, outside_env(), timeout=1800)
    return time.perf_counter() - start


def clone_venv(base: Path, dest: Path) -> Path:
    """A copy of a virtual environment made of hard links (seconds instead of a new install); ``pip`` in the copy
    replaces files rather than writing into them, so the base stays as it was."""
    shutil.copytree(base, dest, symlinks=True, copy_function=os.link)
    return dest


def required_packages(export: Path) -> list[str]:
    """``name==version`` for each entry of an export's ``required_packages_version``."""
    meta = json.loads((export / "configs" / "metadata.json").read_text())
    return [f"{n}=={v}" for n, v in meta["required_packages_version"].items()]
