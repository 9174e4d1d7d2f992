"""The collection index ``bundles/model_info.json``: each bundle's model-zoo name, version and source checksum.

The model zoo keys its ``models/model_info.json`` by ``<name>_v<version>`` and records a checksum and a source for
each release. This repository's index follows that shape, offline:

.. code-block:: json

    {
        "lesion_rgb_cmunext_segmentation_v0.1.0": {
            "name": "lesion_rgb_cmunext_segmentation",
            "version": "0.1.0",
            "display_name": "CMUNeXt lesion segmentation",
            "folder": "bundles/cmunext",
            "checksum": "<sha1>",
            "hash_type": "sha1",
            "source": "dist/lesion_rgb_cmunext_segmentation_v0.1.0.zip"
        }
    }

``folder`` maps the repository's folder names (which users' commands use) to the zoo's names; ``source`` is where
``python -m common.bundle export`` writes the zip. ``checksum`` is :func:`common.bundle.export.files_checksum` of
the export without ``models/``: configs as rewritten, vendored code, model card, LICENSE and the names of the
required packages. Trained weights are not in the repository, so they cannot be covered; the checksum of a zip with
its weights is written to ``<out>/model_info.json`` by each export. When a bundle's configs, card or any ``common``
module it ships change, the checksum changes and ``--check`` says to regenerate the index.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from .export import ExportError, _read_json, files_checksum, model_card_title, stage_bundle
from .locate import repository_root

__all__ = [
    "ZOO_TASKS",
    "bundle_folders",
    "check_index",
    "default_index_file",
    "index_entry",
    "load_index",
    "update_index",
    "zoo_name_of",
]

ZOO_TASKS = ("segmentation", "classification", "detection", "annotation", "registration", "generative")
"""The task words model-zoo names end with (``spleen_ct_segmentation``, ``spleen_deepedit_annotation``)."""
_ZOO_NAME = re.compile(rf"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*_(?:{'|'.join(ZOO_TASKS)})$")
_NAME_HELP = (
    "model-zoo names read <target>_<modality>_<method>_<task>, e.g. lesion_rgb_cmunext_segmentation; set it once with "
    "`python -m common.bundle model_info --name {folder}=<zoo name>`"
)


def default_index_file() -> Path:
    """``bundles/model_info.json`` of this checkout."""
    return repository_root() / "bundles" / "model_info.json"


def bundle_folders(bundles_dir: str | Path | None = None) -> list[Path]:
    """The bundles of the collection: folders of ``bundles/`` holding ``configs/metadata.json``, sorted."""
    root = Path(bundles_dir) if bundles_dir else repository_root() / "bundles"
    return sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())


def load_index(index_file: str | Path | None = None) -> dict[str, dict]:
    """The index's entries; empty when the file does not exist yet."""
    path = Path(index_file) if index_file else default_index_file()
    return _read_json(path) if path.is_file() else {}


def _folder_key(bundle: Path) -> str:
    return f"bundles/{bundle.name}"


def zoo_name_of(bundle: str | Path, index: dict[str, dict] | None = None) -> str:
    """The model-zoo name recorded for a bundle folder.

    Args:
        bundle: the bundle folder.
        index: the index entries; by default those of ``model_info.json`` beside the bundle (``bundles/``).

    Raises:
        ExportError: the bundle has no entry yet (the message says how to give it a name).
    """
    bundle = Path(bundle).resolve()
    index_file = bundle.parent / "model_info.json"
    index = load_index(index_file) if index is None else index
    for entry in index.values():
        if entry.get("folder") == _folder_key(bundle):
            return entry["name"]
    hint = _NAME_HELP.format(folder=bundle.name)
    raise ExportError(f"bundle {bundle.name} has no model-zoo name in {index_file}; {hint}")


def index_entry(bundle: str | Path, zoo_name: str) -> dict[str, str]:
    """The index entry of a bundle: its export is staged in a temporary folder and checksummed.

    Raises:
        ExportError: an invalid zoo name, or a bundle that cannot be staged.
    """
    bundle = Path(bundle).resolve()
    if not _ZOO_NAME.match(zoo_name):
        hint = _NAME_HELP.format(folder=bundle.name)
        raise ExportError(f"{zoo_name!r} is no model-zoo name for bundle {bundle.name}: {hint}")
    with tempfile.TemporaryDirectory(prefix="stage_") as tmp:
        staged = stage_bundle(bundle, Path(tmp) / zoo_name, zoo_name)
        checksum = files_checksum(staged.path)
        meta = json.loads((staged.path / "configs" / "metadata.json").read_text())
    return {
        "name": zoo_name,
        "version": staged.version,
        "display_name": meta.get("name") or model_card_title(bundle / "docs" / "README.md"),
        "folder": _folder_key(bundle),
        "checksum": checksum,
        "hash_type": "sha1",
        "source": f"dist/{zoo_name}_v{staged.version}.zip",
    }


def _write(index: dict[str, dict], index_file: Path) -> None:
    index_file.write_text(json.dumps(dict(sorted(index.items())), indent=4) + "\n")


def update_index(
    bundles: list[str | Path] | None = None,
    names: dict[str, str] | None = None,
    index_file: str | Path | None = None,
) -> dict[str, dict]:
    """Regenerate the entries of ``bundles`` (all of the collection by default) and write the index.

    Entries of folders that no longer exist are dropped; a bundle keeps the zoo name it has unless ``names`` gives
    another.

    Args:
        bundles: bundle folders to regenerate; None for every bundle of ``bundles/``.
        names: ``{folder name: zoo name}`` for new bundles or renames.
        index_file: the index; ``bundles/model_info.json`` by default.

    Returns:
        the index written.

    Raises:
        ExportError: a bundle without a zoo name, or one that cannot be staged (nothing is written then).
    """
    index_path = Path(index_file) if index_file else default_index_file()
    index = load_index(index_path)
    names = dict(names or {})
    folders = [Path(b).resolve() for b in bundles] if bundles else bundle_folders(index_path.parent)
    existing = {p.name for p in bundle_folders(index_path.parent)}
    index = {k: v for k, v in index.items() if v.get("folder", "").split("/")[-1] in existing}
    for folder in folders:
        zoo_name = names.pop(folder.name, None) or zoo_name_of(folder, index)
        entry = index_entry(folder, zoo_name)
        index = {k: v for k, v in index.items() if v.get("folder") != entry["folder"]}
        index[f"{entry['name']}_v{entry['version']}"] = entry
    if names:
        raise ExportError(f"--name given for {sorted(names)}, which are not among the bundles regenerated")
    _write(index, index_path)
    return index


def check_index(bundle: str | Path | None = None, index_file: str | Path | None = None) -> list[str]:
    """The problems of the index, for one bundle or for the whole collection; empty when it is up to date.

    Args:
        bundle: a bundle folder to check; None checks every bundle and that no entry names a missing folder.
        index_file: the index; ``bundles/model_info.json`` by default.

    Returns:
        one message per problem, each saying what to run.
    """
    index_path = Path(index_file) if index_file else default_index_file()
    index = load_index(index_path)
    regenerate = f"run `python -m common.bundle model_info` to regenerate {index_path}"
    problems = []
    if bundle is None:
        present = {_folder_key(p) for p in bundle_folders(index_path.parent)}
        for key, entry in index.items():
            if entry.get("folder") not in present:
                problems.append(f"{index_path}: {key} names {entry.get('folder')}, which is no bundle; {regenerate}")
        folders = bundle_folders(index_path.parent)
    else:
        folders = [Path(bundle).resolve()]
    for folder in folders:
        entries = [(k, e) for k, e in index.items() if e.get("folder") == _folder_key(folder)]
        if len(entries) != 1:
            problems.append(
                f"{index_path}: bundle {folder.name} has {len(entries)} entries, not 1; "
                + _NAME_HELP.format(folder=folder.name)
            )
            continue
        key, recorded = entries[0]
        try:
            expected = index_entry(folder, recorded.get("name", ""))
        except ExportError as e:
            problems.append(f"{index_path}: bundle {folder.name} cannot be staged: {e}")
            continue
        if key != f"{expected['name']}_v{expected['version']}":
            right = f"{expected['name']}_v{expected['version']}"
            problems.append(f"{index_path}: key {key} should be {right}; {regenerate}")
        stale = sorted(k for k in expected if recorded.get(k) != expected[k])
        if stale:
            problems.append(
                f"{index_path}: the entry of bundle {folder.name} is stale ({', '.join(stale)} differ: its configs, "
                f"model card or a common module it ships changed); {regenerate}"
            )
    return problems
