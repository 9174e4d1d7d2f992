"""Locating a bundle's root folder from a config, wherever the command is run from."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_bundle_root", "repository_root"]


def repository_root() -> Path:
    """Return the folder that holds ``common/`` and ``bundles/`` when this project is used from a checkout.

    Returns:
        the parent folder of the ``common`` package.
    """
    return Path(__file__).resolve().parents[2]


def _is_bundle(folder: Path) -> bool:
    return (folder / "configs" / "metadata.json").is_file()


def find_bundle_root(name: str) -> str:
    """Find the root folder of bundle ``name`` so that its configs run from any working directory.

    The bundle runner (``python -m monai.bundle run``) has no notion of where a config file lies, so configs call
    this once for ``bundle_root``. It is searched, in order, as:

    1. the current working directory, when it is the bundle itself (model-zoo style: ``cd bundles/<name>``);
    2. ``bundles/<name>`` under the current working directory (the repository root: the documented form);
    3. ``bundles/<name>`` in the checkout this ``common`` package belongs to (an editable install).

    ``--bundle_root <path>`` on the command line (and MONAI Label, which sets it) overrides the config entry and
    bypasses this search.

    Args:
        name: the bundle's folder name under ``bundles/``, e.g. ``"cmunext"``.

    Returns:
        the bundle root as an absolute path string.

    Raises:
        FileNotFoundError: when none of the candidates holds ``configs/metadata.json``.
    """
    cwd = Path(os.getcwd()).resolve()
    candidates = [cwd] if cwd.name == name else []
    candidates += [cwd / "bundles" / name, repository_root() / "bundles" / name]
    for folder in candidates:
        if _is_bundle(folder):
            return str(folder)
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"cannot find bundle '{name}' (looked for configs/metadata.json in: {tried}); "
        "run from the repository root or the bundle folder, or pass --bundle_root <path>."
    )
