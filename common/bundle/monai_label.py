"""What MONAI Label's ``monaibundle`` app reads from a bundle, checked without MONAI Label installed.

MONAI Label (0.8) serves a bundle folder with two tasks, and each reads fixed config ids:

- ``BundleInferTask`` reads ``configs/inference.json`` (sets ``bundle_root`` to the folder and puts the folder on
  ``sys.path``, so that ``scripts`` imports), instantiates ``network_def`` when ``models/model.pt`` exists (else it
  loads ``models/model.ts``), takes the first input and output of ``metadata.json``'s ``network_data_format`` (the
  input's ``spatial_shape`` gives the dimension, the output's ``channel_def`` the labels: every name but
  ``background``), replaces ``device`` by the request's device name (a string such as ``"cpu"``), and instantiates
  ``preprocessing`` (or ``pre_transforms``: a ``Compose`` or a list, whose ``LoadImaged`` it wraps), ``inferer`` and
  ``postprocessing`` (or ``post_transforms``; it drops ``SaveImaged`` and appends its own restore and writer).
- ``BundleTrainTask`` reads ``configs/train.json`` and overrides ``bundle_root``, ``device``,
  ``train#trainer#max_epochs``, ``train#dataset#data``, ``validate#dataset#data`` and ``train#handlers`` (adding a
  ``CheckpointLoader`` of ``@network``), then runs ``run``.

:func:`check_monai_label_contract` does the same reads and instantiations and lists what would fail. This file
imports neither MONAI Label nor the rest of this package, so it can check an exported bundle where ``common`` is not
importable: ``python path/to/monai_label.py <bundle folder>`` (or ``python -m common.bundle.monai_label <folder>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["INFER_KEYS", "TRAIN_KEYS", "check_monai_label_contract", "main"]

INFER_KEYS = ("bundle_root", "device", "network_def", "inferer")
"""Ids of ``inference.json`` that MONAI Label reads, besides pre- and postprocessing."""
TRAIN_KEYS = (
    "bundle_root",
    "device",
    "network",
    "network_def",
    "train#trainer#max_epochs",
    "train#dataset#data",
    "train#handlers",
    "validate#dataset#data",
    "run",
)
"""Ids of ``train.json`` that MONAI Label's training task overrides or uses."""


def _first(parser, keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in parser), None)


def _metadata_problems(meta_file: Path) -> list[str]:
    problems: list[str] = []
    try:
        meta = json.loads(meta_file.read_text())
        inputs = meta["network_data_format"]["inputs"]
        outputs = meta["network_data_format"]["outputs"]
        image = next(iter(inputs.values()))
        pred = next(iter(outputs.values()))
    except (OSError, ValueError, KeyError, StopIteration, AttributeError) as e:
        return [f"{meta_file}: no network_data_format with an input and an output ({type(e).__name__}: {e})"]
    shape = image.get("spatial_shape")
    if not isinstance(shape, list) or len(shape) not in (2, 3):
        problems.append(f"{meta_file}: the first input's spatial_shape gives MONAI Label the dimension; got {shape!r}")
    channels = pred.get("channel_def")
    if not isinstance(channels, dict) or not channels:
        return problems + [f"{meta_file}: the first output needs a channel_def: MONAI Label's labels come from it"]
    if not all(str(k).isdigit() for k in channels):
        problems.append(f"{meta_file}: channel_def keys must be channel indices ('0', '1', ...), got {list(channels)}")
    if not [v for v in channels.values() if str(v).lower() != "background"]:
        problems.append(f"{meta_file}: channel_def declares no label besides 'background'")
    if pred.get("num_channels") not in (None, len(channels)):
        problems.append(f"{meta_file}: num_channels {pred.get('num_channels')} but {len(channels)} channel_def entries")
    return problems


def _infer_problems(bundle: Path, device: str, load_weights: bool) -> list[str]:
    import torch
    from monai.bundle import ConfigParser
    from monai.transforms import Compose, LoadImaged

    config_file = bundle / "configs" / "inference.json"
    if not config_file.is_file():
        return [f"{config_file} does not exist: MONAI Label's BundleInferTask reads it"]
    problems = []
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.config.update({"bundle_root": str(bundle)})  # type: ignore[union-attr]
    missing = [k for k in INFER_KEYS if k not in parser]
    pre_key = _first(parser, ("preprocessing", "pre_transforms"))
    post_key = _first(parser, ("postprocessing", "post_transforms"))
    missing += [] if pre_key else ["preprocessing"]
    missing += [] if post_key else ["postprocessing"]
    if missing:
        return [f"{config_file}: lacks {missing}, which MONAI Label's BundleInferTask reads"]

    def parsed(key: str):
        try:
            return parser.get_parsed_content(key, instantiate=True)
        except Exception as e:  # what MONAI Label would meet: report it with the id
            problems.append(f"{config_file}: {key!r} cannot be instantiated: {type(e).__name__}: {e}")
            return None

    network = parsed("network_def")
    if network is not None and not isinstance(network, torch.nn.Module):
        problems.append(f"{config_file}: network_def is a {type(network).__name__}, not a torch.nn.Module")
    model = bundle / "models" / "model.pt"
    if load_weights and isinstance(network, torch.nn.Module) and model.is_file():
        try:  # MONAI Label loads non-strictly, which would hide a mismatch: check it strictly here
            network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True), strict=True)
        except (RuntimeError, KeyError) as e:
            problems.append(f"{model} does not fit network_def: {e}")

    parser.config.update({"device": device})  # type: ignore[union-attr]  # MONAI Label's _update_device
    parser.parse(True)
    pre = parsed(pre_key)  # type: ignore[arg-type]
    pre_list = list(pre.transforms) if isinstance(pre, Compose) else pre
    if pre is not None and not isinstance(pre_list, list):
        problems.append(f"{config_file}: {pre_key} is a {type(pre).__name__}, not a Compose or a list of transforms")
    elif pre is not None and not any(isinstance(t, LoadImaged) for t in pre_list):
        problems.append(f"{config_file}: {pre_key} has no LoadImaged, which MONAI Label replaces by its image loader")
    inferer = parsed("inferer")
    if inferer is not None and not callable(inferer):
        problems.append(f"{config_file}: inferer is a {type(inferer).__name__}, which cannot be called")
    post = parsed(post_key)  # type: ignore[arg-type]
    if post is not None and not isinstance(post, (Compose, list)):
        problems.append(f"{config_file}: {post_key} is a {type(post).__name__}, not a Compose or a list of transforms")
    return problems


def _train_problems(bundle: Path) -> list[str]:
    from monai.bundle import ConfigParser

    config_file = bundle / "configs" / "train.json"
    if not config_file.is_file():
        return [f"{config_file} does not exist: MONAI Label's BundleTrainTask reads it"]
    parser = ConfigParser()
    parser.read_config(str(config_file))
    missing = [k for k in TRAIN_KEYS if k not in parser]
    if missing:
        return [f"{config_file}: lacks {missing}, which MONAI Label's BundleTrainTask overrides or uses"]
    if not isinstance(parser.get("train#handlers"), list):
        return [f"{config_file}: train#handlers must be a list: MONAI Label inserts its CheckpointLoader into it"]
    return []


def check_monai_label_contract(bundle_dir: str | Path, device: str = "cpu", load_weights: bool = True) -> list[str]:
    """The problems MONAI Label's monaibundle app would meet with a bundle; empty when there are none.

    Args:
        bundle_dir: the bundle folder (an exported one: its ``scripts`` must import from it).
        device: the device name MONAI Label would put into ``device``.
        load_weights: load ``models/model.pt`` into ``network_def`` strictly, when the file exists.

    Returns:
        one message per problem, naming the file and the config id.
    """
    bundle = Path(bundle_dir).resolve()
    sys.path.insert(0, str(bundle))
    _unload_scripts()  # as MONAI Label's unload_module("scripts"): this bundle's code, not another's
    try:
        problems = _metadata_problems(bundle / "configs" / "metadata.json")
        problems += _infer_problems(bundle, device, load_weights)
        problems += _train_problems(bundle)
    finally:
        sys.path.remove(str(bundle))
        _unload_scripts()
    return problems


def _unload_scripts() -> None:
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Check bundle folders; print the problems; exit status 1 when there are any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", help="bundle folders")
    parser.add_argument("--device", default="cpu", help="device name MONAI Label would set (default: cpu)")
    args = parser.parse_args(argv)
    status = 0
    for bundle in args.bundles:
        problems = check_monai_label_contract(bundle, args.device)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{bundle}: {'meets' if not problems else 'does not meet'} what MONAI Label's monaibundle app reads")
        status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main())
