"""Self-contained export of a bundle: a folder and a zip that run without this project installed.

``python -m common.bundle export bundles/<name> --out dist/`` writes ``dist/<zoo name>/`` and
``dist/<zoo name>_v<version>.zip`` in the model zoo's shape:

- ``configs/``, ``docs/``, ``LICENSE`` (and a ``large_files.yml``, if any) of the bundle, with every reference to
  ``common`` rewritten to the bundle's own ``scripts`` package and ``bundle_root`` set to ``"."`` (model-zoo bundles
  run from their folder); outputs, demo data and other files of the bundle folder stay behind;
- ``scripts/``: the modules of ``common`` the configs use, found from the configs' references and the modules' imports
  (:mod:`common.bundle.vendor`);
- ``configs/metadata.json`` with ``required_packages_version`` listing the PyPI distributions the configs and the
  vendored code need (plain imports; modules imported only through MONAI's ``optional_import`` are named in the
  model card instead), pinned to the exporting environment's versions, and the MONAI/PyTorch/NumPy versions;
- ``models/model.pt`` (the trained state dict) and ``models/model.ts``, made from it by MONAI's ``ckpt_export`` run
  inside the export with the ``common`` package blocked, so that the TorchScript comes from the vendored code;
  the exported configs describe the network of those weights: trained with an overlay that changes the network
  (``dmgsa``'s ``quick.json``), the overlay's network settings are written into them (:func:`fit_configs_to_weights`).

The zip is deterministic (sorted entries, fixed timestamps): the same files give the same checksum, which is recorded
in ``<out>/model_info.json`` as the model zoo records its releases.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from .vendor import VendorError, VendorPlan, config_references, plan_vendoring, rewrite_config, write_vendored

__all__ = [
    "ExportError",
    "ExportResult",
    "NetworkFit",
    "StagedBundle",
    "blocked_package_env",
    "export_bundle",
    "files_checksum",
    "fit_configs_to_weights",
    "model_card_title",
    "stage_bundle",
    "zip_bundle",
]

PACKAGE = "common"
"""The package whose modules are vendored."""
VENDORED_AS = "scripts"
"""The package name of the vendored copy inside an export: the model zoo's place for a bundle's code."""
SHIPPED = ("configs", "docs", "LICENSE", "large_files.yml", "large_files.yaml", "large_files.json")
"""What of a bundle folder an export ships (when present); outputs, demo data and stray files stay behind."""
REQUIRED_FILES = ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE")
VERSIONED_ELSEWHERE = ("torch", "monai", "numpy")
"""Distributions with their own metadata fields (``pytorch_version``, ``monai_version``, ``numpy_version``)."""
PROJECT_DISTRIBUTION = "label-efficient-bundles"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_REPO_ONLY_CALLS = ("find_bundle_root", "repository_root")


class ExportError(RuntimeError):
    """A bundle that cannot be exported; the message names the file and the problem, and what to do."""


@dataclass
class StagedBundle:
    """A bundle's exported sources (everything but ``models/``).

    Attributes:
        path: the export folder.
        source: the bundle folder it was made from.
        zoo_name: the model-zoo name (the folder's and the zip's name).
        version: ``metadata.json``'s version.
        plan: what was vendored from ``common``.
        required_packages: the ``required_packages_version`` written to the metadata.
    """

    path: Path
    source: Path
    zoo_name: str
    version: str
    plan: VendorPlan
    required_packages: dict[str, str]


@dataclass
class ExportResult:
    """What :func:`export_bundle` wrote.

    Attributes:
        folder: the exported bundle folder.
        zip_file: its zip.
        checksum: the zip's SHA-1, as recorded in ``model_info.json``.
        seconds: how long the export took.
    """

    folder: Path
    zip_file: Path
    checksum: str
    seconds: float


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _plain_version(version: str) -> str:
    """``2.13.0+cpu`` -> ``2.13.0``: a local build tag is no PyPI release."""
    return version.split("+", 1)[0]


def _installed_version(distribution: str) -> str | None:
    try:
        return _plain_version(importlib_metadata.version(distribution))
    except importlib_metadata.PackageNotFoundError:
        return None


def model_card_title(readme: Path) -> str:
    """The model card's title: the text of its first line, which must be a level-1 heading (the zoo's template).

    Raises:
        ExportError: when the first non-empty line is not ``# <title>``.
    """
    for line in readme.read_text().splitlines():
        if line.strip():
            if line.startswith("# ") and line[2:].strip():
                return line[2:].strip()
            break
    raise ExportError(f"{readme}: a model card starts with its title as a level-1 heading ('# <Model title>')")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: not valid JSON: {e}") from e


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=4) + "\n")


def _check_sources(bundle: Path) -> dict:
    missing = [f for f in REQUIRED_FILES if not (bundle / f).is_file()]
    if missing:
        raise ExportError(f"bundle {bundle} lacks {', '.join(missing)}: an exported bundle needs them")
    if (bundle / VENDORED_AS).exists():
        raise ExportError(
            f"{bundle / VENDORED_AS} exists: the export writes the vendored {PACKAGE} modules there; move the bundle's "
            f"own code into {PACKAGE}/ and name it from the configs as {PACKAGE}.<package>.<Name>"
        )
    other = sorted(p.name for p in (bundle / "configs").iterdir() if p.suffix in (".yaml", ".yml"))
    if other:
        raise ExportError(f"{bundle / 'configs'}: {other} are YAML; the export rewrites JSON configs only")
    meta_file = bundle / "configs" / "metadata.json"
    meta = _read_json(meta_file)
    version = meta.get("version")
    if not isinstance(version, str) or not _SEMVER.match(version):
        raise ExportError(f"{meta_file}: 'version' must be semantic (MAJOR.MINOR.PATCH), got {version!r}")
    if version not in meta.get("changelog", {}):
        raise ExportError(f"{meta_file}: version {version} has no entry in 'changelog'")
    return meta


def _required_packages(plan: VendorPlan, declared: dict[str, str], meta_file: Path) -> dict[str, str]:
    """``required_packages_version``: the bundle's declared packages and those the vendored code imports, pinned."""
    wanted: dict[str, str] = {}  # canonical name -> spelling used in the metadata
    for name in declared:
        if _installed_version(name) is None:
            raise ExportError(
                f"{meta_file}: required_packages_version lists {name!r}, which is not an installed distribution; "
                "list PyPI distribution names (e.g. 'pytorch-ignite', 'pillow') and install them"
            )
        wanted.setdefault(_canonical(name), name)
    providers = importlib_metadata.packages_distributions()
    # plain imports only: what the vendored code imports through optional_import fails only on the path that uses it
    for module, importers in sorted(plan.third_party.items()):
        dists = providers.get(module)
        if not dists:
            raise ExportError(
                f"{', '.join(sorted(importers))} import {module!r}, which no installed distribution provides: "
                "install it before exporting, so that its version can be recorded"
            )
        for dist in dists:
            wanted.setdefault(_canonical(dist), dist)
    excluded = {_canonical(n) for n in (*VERSIONED_ELSEWHERE, PROJECT_DISTRIBUTION)}
    return {
        spelled: _installed_version(spelled)  # type: ignore[misc]
        for canonical, spelled in sorted(wanted.items())
        if canonical not in excluded
    }


def _exported_readme_section(bundle: Path, zoo_name: str, plan: VendorPlan) -> str:
    packages = sorted({n.split(".")[1] for n in plan.vendored if n.count(".") >= 1})
    optional = ""
    if plan.optional:
        names = ", ".join(f"`{name}`" for name in sorted(plan.optional))
        optional = (
            f"\nNot required: {names}, which the vendored code imports only where a data layout needs them (MONAI's "
            "`optional_import`: HDF5 volumes, NIfTI files); install them to read such data with this bundle.\n"
        )
    return f"""

## Exported bundle
This folder is the bundle `{bundle.name}` of label-efficient-bundles, exported as `{zoo_name}` by
`python -m common.bundle export bundles/{bundle.name}`. It runs without that project: the components its configs name
are vendored in `scripts/` ({", ".join(f"`scripts.{p}`" for p in packages)}), so `{PACKAGE}.networks.X` of the
repository is `scripts.networks.X` here. `bundle_root` is `.`: run the commands from this folder, and drop the
`bundles/{bundle.name}/` prefix of the paths in the commands above. From another folder, put this folder on
`PYTHONPATH` and pass it as `--bundle_root` (MONAI imports the configs' `scripts` before it adds the bundle folder
to `sys.path`): `PYTHONPATH=<this folder> python -m monai.bundle run --config_file <this folder>/configs/inference.json
--bundle_root <this folder> ...`.

```bash
# install: monai, torch and numpy at the `monai_version`, `pytorch_version`, `numpy_version` of
# configs/metadata.json, the distributions in its `required_packages_version`, and fire (MONAI's command line)
python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\
    --config_file configs/inference.json
python -m monai.bundle run --config_file configs/inference.json --dataset_dir /path/to/images
```
`models/model.pt` is the trained network's state dict, `models/model.ts` its TorchScript export (`ckpt_export`).
{optional}"""


def _scan_leftovers(config: Any, where: Path, repo_root: Path) -> None:
    """Refuse exported configs that still depend on the repository."""
    if config_references(config, PACKAGE):
        raise ExportError(f"{where}: references to {PACKAGE} remain after rewriting: {config_references(config)}")
    text = json.dumps(config)
    for call in _REPO_ONLY_CALLS:
        if call in text:
            raise ExportError(
                f"{where}: calls {call}, which only works inside the repository; an exported bundle's root is '.'"
            )
    if str(repo_root) in text:
        raise ExportError(f"{where}: holds the absolute path {repo_root}, which does not exist where the bundle goes")


def stage_bundle(bundle_dir: str | Path, dest: str | Path, zoo_name: str) -> StagedBundle:
    """Write a bundle's exported sources (configs, vendored ``scripts/``, docs, LICENSE, metadata) to ``dest``.

    Args:
        bundle_dir: the bundle folder, e.g. ``bundles/cmunext``.
        dest: the export folder to create; it must not exist.
        zoo_name: the model-zoo name of the bundle, named in the exported model card.

    Returns:
        what was staged.

    Raises:
        ExportError: missing files, a config or module that cannot be vendored, configs that would still depend on
            the repository, a required package that is not installed.
    """
    import common

    bundle = Path(bundle_dir).resolve()
    dest = Path(dest)
    package_root = Path(common.__file__).resolve().parent
    repo_root = package_root.parent
    meta = _check_sources(bundle)

    dest.mkdir(parents=True)
    for name in SHIPPED:
        source = bundle / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, dest / name)
    configs: dict[Path, Any] = {}
    references: list[tuple[str, str]] = []
    for path in sorted((dest / "configs").glob("*.json")):
        config = _read_json(path)
        if isinstance(config, dict) and "bundle_root" in config:
            config["bundle_root"] = "."
        configs[path] = config
        source = bundle / "configs" / path.name
        references += [(f"{source}: {cid}", ref) for cid, ref in config_references(config, PACKAGE)]
    try:
        plan = plan_vendoring(references, package_root, PACKAGE)
        write_vendored(plan, dest / VENDORED_AS, VENDORED_AS)
    except VendorError as e:
        raise ExportError(str(e)) from e
    for path, config in configs.items():
        rewritten = rewrite_config(config, PACKAGE, VENDORED_AS)
        _scan_leftovers(rewritten, bundle / "configs" / path.name, repo_root)
        _write_json(path, rewritten)

    meta_file = bundle / "configs" / "metadata.json"
    meta = _read_json(dest / "configs" / "metadata.json")
    packages = _required_packages(plan, meta.get("required_packages_version", {}), meta_file)
    meta["required_packages_version"] = packages
    for field, dist in (("monai_version", "monai"), ("pytorch_version", "torch"), ("numpy_version", "numpy")):
        meta[field] = _installed_version(dist) or meta.get(field)
    meta.setdefault("name", model_card_title(bundle / "docs" / "README.md"))
    _write_json(dest / "configs" / "metadata.json", meta)
    readme = dest / "docs" / "README.md"
    readme.write_text(readme.read_text().rstrip("\n") + "\n" + _exported_readme_section(bundle, zoo_name, plan))
    return StagedBundle(dest, bundle, zoo_name, meta["version"], plan, packages)


_BLOCKER = """\
import sys


class _Blocked:
    \"\"\"Refuses {package!r} and its modules: an exported bundle must run without them.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == {package!r} or name.startswith({package!r} + "."):
            raise ImportError(f"{{name}} is blocked here: an exported bundle must not import the {package} package")
        return None


sys.meta_path.insert(0, _Blocked())
"""


@contextmanager
def blocked_package_env(package: str = PACKAGE) -> Iterator[dict[str, str]]:
    """An environment for subprocesses in which ``import <package>`` fails, as where this project is not installed.

    ``PYTHONPATH`` names a folder whose ``sitecustomize`` puts a finder first on ``sys.meta_path`` that refuses
    ``<package>``, whatever the working directory or the installation. Byte-code is not written, so that an export
    folder stays clean.

    Yields:
        a copy of ``os.environ`` with ``PYTHONPATH`` set to that folder only.
    """
    with tempfile.TemporaryDirectory(prefix="blocked_") as folder:
        (Path(folder) / "sitecustomize.py").write_text(_BLOCKER.format(package=package))
        env = dict(os.environ)
        env.update(PYTHONPATH=folder, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        yield env


def _ckpt_export(folder: Path, python: str, timeout: float) -> None:
    cmd = [
        python,
        "-m",
        "monai.bundle",
        "ckpt_export",
        "network_def",
        "--filepath",
        "models/model.ts",
        "--ckpt_file",
        "models/model.pt",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    ]
    with blocked_package_env() as env:
        proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not (folder / "models" / "model.ts").is_file():
        command = " ".join(cmd[1:])
        raise ExportError(
            f"MONAI's ckpt_export failed in {folder} (`{command}`):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )


def _export_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.relative_to(folder).parts and p.suffix != ".pyc"
    )


def zip_bundle(folder: str | Path, zip_file: str | Path) -> str:
    """Zip an export folder as ``<folder name>/...`` with sorted entries and fixed timestamps.

    Args:
        folder: the export folder.
        zip_file: the zip to write.

    Returns:
        the zip's SHA-1 hex digest (the model zoo's checksum).
    """
    folder, zip_file = Path(folder), Path(zip_file)
    with zipfile.ZipFile(zip_file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _export_files(folder):
            info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return hashlib.sha1(zip_file.read_bytes()).hexdigest()


def files_checksum(folder: str | Path, exclude: tuple[str, ...] = ("models",)) -> str:
    """SHA-1 over the relative paths and contents of a folder's files, sorted; top-level ``exclude`` folders skipped.

    ``configs/metadata.json`` enters without its package versions (``*_version`` fields and the values of
    ``required_packages_version``), which follow the environment that exports, not the bundle.
    """
    folder = Path(folder)
    digest = hashlib.sha1()
    for path in _export_files(folder):
        relative = path.relative_to(folder)
        if relative.parts[0] in exclude:
            continue
        content = path.read_bytes()
        if relative.as_posix() == "configs/metadata.json":
            meta = json.loads(content)
            packages = sorted(meta.get("required_packages_version", {}))
            meta = {k: v for k, v in meta.items() if not k.endswith("_version")}
            content = json.dumps({**meta, "required_packages": packages}, sort_keys=True).encode()
        digest.update(relative.as_posix().encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


BASE_CONFIGS = ("train.json", "inference.json", "evaluate.json", "multi_gpu_train.json", "metadata.json")
"""A bundle's own configs; its other JSON configs are overlays layered on ``train.json`` (``quick.json``, ...)."""


@dataclass
class NetworkFit:
    """How an export's configs were made to describe the network of its weights.

    Attributes:
        overlay: the bundle's config layered on ``train.json`` whose network the weights fit (e.g. ``quick.json``).
        values: the ids set to that overlay's values in the exported ``train.json`` and in the other configs of
            :data:`BASE_CONFIGS` that define them.
        configs: the exported configs changed.
    """

    overlay: str
    values: dict[str, Any]
    configs: list[str]


def _tensor_shapes(state: Any) -> dict[str, tuple[int, ...]]:
    return {str(k): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def _network_shapes(bundle: Path, config_files: list[Path], overrides: dict | None = None) -> dict[str, tuple]:
    """The tensor shapes of ``network_def`` as the source configs (with ``common``) define it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    parser["bundle_root"] = str(bundle)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return _tensor_shapes(parser.get_parsed_content("network_def").state_dict())


def _network_ids(config_files: list[Path]) -> set[str]:
    """The ids ``network_def`` depends on (references and macros, transitively), ``network_def`` included."""
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])

    def macros(config: Any) -> list[str]:
        if isinstance(config, dict):
            return [m for v in config.values() for m in macros(v)]
        if isinstance(config, list):
            return [m for v in config for m in macros(v)]
        return [config[1:]] if isinstance(config, str) and config.startswith("%") and "#" not in config else []

    seen: set[str] = set()
    pending = ["network_def"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            config = parser[name]
        except KeyError:
            continue
        refs = ReferenceResolver.find_refs_in_config(config, name.replace("#", "::"))
        own = name.replace("#", "::") + "::"
        pending += [ref.replace("::", "#") for ref in refs if not ref.startswith(own)]
        pending += macros(config)
    return seen


def fit_configs_to_weights(staged: StagedBundle, model: str | Path) -> NetworkFit | None:
    """Make the staged configs describe the network whose weights ``model`` holds.

    A bundle is often trained with an overlay (``quick.json`` on a CPU: ``dmgsa``'s network channels 8..64 instead
    of the recipe's 32..512), while the export ships the full-recipe ``train.json``: fine-tuning the export (MONAI
    Label's training task) then fails with a size mismatch. When ``models/model.pt`` does not fit ``train.json``'s
    ``network_def``, the bundle's overlays are tried (``quick.json`` first); the first whose network fits gives its
    values of the ids ``network_def`` depends on to the exported ``train.json`` and to the bundle's other own configs
    (:data:`BASE_CONFIGS`) that define them, and the exported model card says so. The rest of ``train.json`` stays
    the full recipe.

    Args:
        staged: the staged export (:func:`stage_bundle`).
        model: the trained state dict.

    Returns:
        what was changed, or None when ``train.json`` already fits.

    Raises:
        ExportError: the weights fit neither ``train.json`` nor any overlay.
    """
    import torch

    bundle = staged.source
    configs = bundle / "configs"
    weights = _tensor_shapes(torch.load(model, map_location="cpu", weights_only=True))
    base = [configs / "train.json"]
    recipe = _network_shapes(bundle, base)
    if recipe == weights:
        return None
    overlays = [p for p in configs.glob("*.json") if p.name not in BASE_CONFIGS]
    overlays.sort(key=lambda p: (p.name != "quick.json", p.name))
    for overlay in overlays:
        overlay_config = _read_json(overlay)
        if not isinstance(overlay_config, dict) or _network_shapes(bundle, [*base, overlay]) != weights:
            continue
        needed = _network_ids([*base, overlay])
        values = {
            key: rewrite_config(value, PACKAGE, VENDORED_AS)
            for key, value in overlay_config.items()
            if key in needed or any(n.startswith(f"{key}#") for n in needed)
        }
        if _network_shapes(bundle, base, {k: overlay_config[k] for k in values}) != weights:
            continue  # the overlay changes the network through ids found only by running it: not reproducible here
        changed = []  # the bundle's own configs; overlays keep their values (they describe other recipes)
        for name in BASE_CONFIGS[:-1]:
            path = staged.path / "configs" / name
            config = _read_json(path) if path.is_file() else None
            if not isinstance(config, dict):
                continue
            keys = [k for k in values if (k in config or name == "train.json") and config.get(k) != values[k]]
            if keys:
                config.update({k: values[k] for k in keys})
                _write_json(path, config)
                changed.append(path.name)
        readme = staged.path / "docs" / "README.md"
        settings = ", ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in values.items())
        readme.write_text(
            readme.read_text().rstrip("\n")
            + f"\n\nThe weights in `models/model.pt` were trained with `configs/{overlay.name}`: its network settings "
            f"({settings}) are set in {', '.join(f'`configs/{c}`' for c in changed)}, so that fine-tuning and "
            "inference build the network the weights belong to; the rest of `train.json` is the full recipe.\n"
        )
        return NetworkFit(overlay.name, values, changed)
    mismatched = sorted(k for k in weights if recipe.get(k) != weights[k])
    example = mismatched[0] if mismatched else next(iter(weights), "")
    raise ExportError(
        f"{bundle / 'models' / 'model.pt'} does not fit the network of {configs / 'train.json'} (e.g. {example}: "
        f"{weights.get(example)} in model.pt, {recipe.get(example)} in train.json) nor that of an overlay "
        f"({', '.join(p.name for p in overlays) or 'none'}): the export's configs must describe the network its "
        "weights belong to; train with the bundle's configs, or add the overlay the weights were trained with"
    )


def _train_hint(bundle: Path) -> str:
    quick = bundle / "configs" / "quick.json"
    configs = f"bundles/{bundle.name}/configs/train.json"
    if quick.is_file():
        configs = f"\"['{configs}','bundles/{bundle.name}/configs/quick.json']\""
    return f"python -m monai.bundle run training --config_file {configs}"


def export_bundle(
    bundle_dir: str | Path,
    out_dir: str | Path,
    zoo_name: str,
    python: str = sys.executable,
    timeout: float = 900,
) -> ExportResult:
    """Export a trained bundle as ``<out_dir>/<zoo_name>/`` and ``<out_dir>/<zoo_name>_v<version>.zip``.

    An earlier export of the same name in ``out_dir`` is replaced; ``<out_dir>/model_info.json`` gets the zip's
    checksum under ``<zoo_name>_v<version>``, the model zoo's key.

    Args:
        bundle_dir: the bundle folder; it must hold a trained ``models/model.pt``.
        out_dir: where to write; created if needed.
        zoo_name: the model-zoo name (see ``bundles/model_info.json``).
        python: the interpreter that runs MONAI's ``ckpt_export``.
        timeout: seconds allowed for ``ckpt_export``.

    Returns:
        the export folder, zip, checksum and time taken.

    Raises:
        ExportError: no trained model, or any problem of :func:`stage_bundle` or ``ckpt_export``.
    """
    start = time.perf_counter()
    bundle = Path(bundle_dir).resolve()
    model = bundle / "models" / "model.pt"
    if not model.is_file():
        raise ExportError(
            f"{model} does not exist: the export ships the trained network. Train the bundle first, e.g. "
            f"`{_train_hint(bundle)}` from the repository root, which writes models/model.pt"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = out / zoo_name
    with tempfile.TemporaryDirectory(prefix=f"{zoo_name}_", dir=out) as tmp:
        staging = Path(tmp) / zoo_name
        staged = stage_bundle(bundle, staging, zoo_name)
        (staging / "models").mkdir()
        shutil.copy2(model, staging / "models" / "model.pt")
        fit_configs_to_weights(staged, model)
        _ckpt_export(staging, python, timeout)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(staging), folder)
    zip_file = out / f"{zoo_name}_v{staged.version}.zip"
    checksum = zip_bundle(folder, zip_file)
    index_file = out / "model_info.json"
    index = _read_json(index_file) if index_file.is_file() else {}
    index[f"{zoo_name}_v{staged.version}"] = {"checksum": checksum, "source": zip_file.name}
    _write_json(index_file, dict(sorted(index.items())))
    return ExportResult(folder, zip_file, checksum, time.perf_counter() - start)
