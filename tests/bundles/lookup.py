"""Read a bundle's configs as its tests do, and find a training handler by its type, never by its place in the list
(a user may insert handlers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

__all__ = ["handler_id", "parse_configs"]


def parse_configs(bundle: Path, *names: str, root: Path | None = None, **overrides: Any) -> ConfigParser:
    """The bundle's ``configs/<name>.json`` layered in order, on the CPU, with top-level ids overridden.

    Args:
        bundle: the bundle's folder (``bundles/<name>``), where the configs are read.
        names: config names without ``.json``, e.g. ``"train", "quick"``.
        root: the ``bundle_root`` the configs see (where they write and look for data); ``bundle`` when None.
        overrides: top-level config ids and their values.

    Returns:
        the parser, not yet resolved.
    """
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / f"{name}.json") for name in names])
    parser["bundle_root"] = str(bundle if root is None else root)
    parser["device"] = "$torch.device('cpu')"
    for key, value in overrides.items():
        parser[key] = value
    return parser


def handler_id(parser: ConfigParser, target: str, handlers: str = "train#handlers") -> str:
    """The config id of the one handler of ``handlers`` whose ``_target_`` is ``target``.

    Args:
        parser: the parsed bundle configs.
        target: the handler's ``_target_`` string, e.g. ``"LrScheduleHandler"``.
        handlers: id of the handler list.

    Returns:
        the id to pass to ``parser[...]`` or ``get_parsed_content``: the referenced id for an ``"@id"`` entry, else
        ``<handlers>#<index>``.

    Raises:
        LookupError: when no handler or more than one has that target.
    """
    found = []
    for index, entry in enumerate(parser[handlers]):
        entry_id = entry[1:] if isinstance(entry, str) and entry.startswith("@") else f"{handlers}#{index}"
        config = parser[entry_id]
        if isinstance(config, dict) and config.get("_target_") == target:
            found.append(entry_id)
    if len(found) != 1:
        raise LookupError(f"{len(found)} handlers of {handlers} have _target_ {target!r}")
    return found[0]
