"""Helpers shared by the benchmark scripts: bundle discovery, the bundle runner's command line, load.

The machine's description comes from ``benchmarks/timing.py`` (``describe_machine``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "RESULTS",
    "add_timing_arguments",
    "bundles_with",
    "config_files",
    "config_list",
    "display_command",
    "display_path",
    "load_average",
    "monai_bundle_command",
    "phantom_folder",
    "run_logged",
    "short_run_overrides",
]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def add_timing_arguments(parser: argparse.ArgumentParser, iterations: int, warmup: int = 1) -> argparse.ArgumentParser:
    """Add the options of a timed run of training iterations: iterations, warm-up, device, threads, AMP.

    Args:
        parser: the (sub)command's parser.
        iterations: the default number of timed iterations.
        warmup: the default number of untimed iterations run first.

    Returns:
        ``parser``, with ``--iterations``, ``--warmup``, ``--device``, ``--threads`` and ``--amp`` (a flag).
    """
    parser.add_argument("--iterations", type=int, default=iterations, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed iterations first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    return parser


def bundles_with(*configs: str) -> list[str]:
    """Names of the bundles under ``bundles/`` that have every ``configs/<name>.json`` given (and metadata.json).

    Args:
        configs: config names without ``.json``, e.g. ``"supervised"`` for the semi-supervised bundles.

    Returns:
        bundle folder names, sorted.
    """
    found = []
    for folder in sorted((ROOT / "bundles").iterdir()):
        need = ["metadata", *configs]
        if all((folder / "configs" / f"{name}.json").is_file() for name in need):
            found.append(folder.name)
    return found


def config_files(bundle: str, names: Sequence[str], optional: Sequence[str] = ()) -> list[str]:
    """Absolute paths of a bundle's configs, in layering order; names in ``optional`` are left out when missing."""
    paths = []
    for name in names:
        path = ROOT / "bundles" / bundle / "configs" / f"{name}.json"
        if path.is_file():
            paths.append(str(path))
        elif name not in optional:
            raise FileNotFoundError(f"bundle {bundle} has no configs/{name}.json")
    return paths


def config_list(paths: Sequence[str]) -> str:
    """The ``--config_file`` value that layers several configs: a Python list literal, as MONAI's CLI takes it."""
    return repr(list(paths))


def monai_bundle_command(command: str | None, paths: Sequence[str], overrides: dict[str, object]) -> list[str]:
    """``python -m monai.bundle run [command] --config_file [...] --key value ...``, the user's form of a run.

    Args:
        command: the config id to run (``"training"``), or None for the model-zoo keys (initialize/run/finalize).
        paths: config files, layered in order.
        overrides: top-level config ids and their values (strings are passed as they are, others via ``repr``).

    Returns:
        the argument vector.
    """
    cmd = [sys.executable, "-m", "monai.bundle", "run"]
    if command:
        cmd.append(command)
    cmd += ["--config_file", config_list(paths)]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return cmd


def phantom_folder(base: Path, bundle: str, schedule: str) -> Path:
    """Where the speed measurements keep a bundle's phantom: ``<base>/speed/data/<bundle>_<schedule>``.

    ``benchmarks/gpu_check.py`` reads the phantom the speed steps wrote there (same generator settings) rather than
    writing it again.
    """
    return base / "speed" / "data" / f"{bundle}_{schedule}"


def short_run_overrides(
    bundle: str, folder: Path, phantom_dir: Path, device: str, amp: bool, epochs: int, epoch_length: int
) -> dict[str, Any]:
    """The bundle command-line overrides of a short measured training, its files kept apart from the bundle's.

    Args:
        bundle: the bundle's folder name.
        folder: the run's own folder (``models`` and ``eval`` are made inside).
        phantom_dir: the phantom the configs read or write (see :func:`phantom_folder`).
        device: ``"cpu"``, ``"cuda"``, ...
        amp: mixed precision.
        epochs: training epochs.
        epoch_length: iterations per epoch.

    Returns:
        ``bundle_root``, ``ckpt_dir``, ``output_dir``, ``phantom_dir``, ``resume`` (False: always from scratch),
        ``device``, ``amp``, ``epochs``, ``epoch_length`` and ``max_iterations`` (``epochs * epoch_length``: the
        bundles that count iterations derive their epochs from it).
    """
    return {
        "bundle_root": str(ROOT / "bundles" / bundle),
        "ckpt_dir": str(folder / "models"),
        "output_dir": str(folder / "eval"),
        "phantom_dir": str(phantom_dir),
        "resume": False,
        "device": f"$torch.device('{device}')",
        "amp": amp,
        "epochs": epochs,
        "epoch_length": epoch_length,
        "max_iterations": epochs * epoch_length,
    }


def run_logged(cmd: Sequence[str], log: Path, threads: int | None = None, timeout: float | None = None) -> float:
    """Run a command from the repository root, its output to ``log``; return the wall time in seconds.

    Args:
        cmd: the argument vector.
        log: file receiving stdout and stderr (its folder is created).
        threads: when given, OMP/MKL thread counts of the child (parallel jobs keep to one core each).
        timeout: seconds before the child is killed.

    Raises:
        RuntimeError: when the command fails; the message holds the log's tail.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}); log {log}:\n{tail}")
    return time.perf_counter() - start


def load_average() -> str:
    """The 1/5/15-minute load averages (the machine may be shared: every figure is recorded with them)."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a report shows it: never this checkout's absolute location nor a temporary folder's.

    Reports (model cards, README tables, ``*.md`` written under ``benchmarks/results``) travel with exported bundles
    and are read on other machines, so the absolute folder of the checkout that measured them means nothing there and
    names one developer's machine.

    Args:
        path: a file or folder as the user gave it.

    Returns:
        the path relative to the repository root when it lies inside the checkout; ``<tmp>/<name>`` when it lies in the
        system's temporary folder (a scratch location: only its name carries meaning); otherwise the path as given
        (the user's own data folder).
    """
    text = os.fspath(path)
    resolved = Path(text).expanduser().resolve()
    for base, shown in ((ROOT, None), (Path(tempfile.gettempdir()).resolve(), "<tmp>")):
        try:
            rest = resolved.relative_to(base)
        except ValueError:
            continue
        if shown is None:
            return rest.as_posix() or "."
        return shown if rest == Path() else f"{shown}/{rest.as_posix()}"
    return text


def display_command(script: str, argv: Sequence[str]) -> str:
    """``python <script> <args>`` as a user would type it from the repository root, for a report's header.

    Args:
        script: the script's path relative to the repository root, e.g. ``"benchmarks/accuracy.py"``.
        argv: its arguments; each one that names an absolute or existing path (alone or as ``--key=path``) is shown
            by :func:`display_path`.

    Returns:
        one shell-quoted command line.
    """
    shown = []
    for arg in argv:
        key, eq, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        if value and (os.path.isabs(value) or (not value.startswith("-") and os.path.exists(value))):
            value = display_path(value)
        shown.append(f"{key}{eq}{value}" if eq else value)
    return " ".join(["python", script, *(a if "<tmp>" in a else shlex.quote(a) for a in shown)])
