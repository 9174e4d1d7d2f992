"""A lint of every bundle's configs, so that a user can change them safely.

Four checks, each with a companion test that proves it fires on a tiny bad config (the lint cannot pass vacuously):

- unused imports: an ``imports`` entry of a base config (one that has ``imports``: ``train.json``, ``inference.json``)
  that no ``$`` expression of that config or of an overlay (a config without ``imports``, which is layered on a base:
  ``quick.json``, ``supervised.json``, ``multi_gpu_train.json``...) uses;
- position references: an ``@`` reference or ``%`` macro that indexes a list (``@train#handlers#1``), or an override
  key of an overlay that does (``"train#handlers#1#interval"``): inserting an item silently retargets them. Every one
  is refused: an object others reference gets a top-level id (the mean teacher's network is ``teacher``, which the
  inline ``EMATeacher`` handler updates);
- a training handler list of inline dicts: every entry of ``train#handlers`` is a dict, never an ``"@id"``
  reference, because MONAI's property check (``ConfigWorkflow.check_properties``, run by the model zoo) reads
  ``entry["_target_"]`` of each entry to find the ``ValidationHandler`` (``monai/bundle/workflows.py``,
  ``_check_optional_id``; ``test_bundles.py::test_train_properties`` runs it on each bundle): an object defined at its
  own id and referenced from the list makes it raise TypeError, so the EMA handler stays in the list and what others
  need from it (the teacher network) is the object at an id of its own;
- checkpoint dicts written twice: a ``load_dict`` and a ``save_dict`` of one config file with the same keys, written
  out twice instead of referencing one id (``"@checkpoint_dict"``), so that a new checkpointed object cannot be saved
  without being resumed (or the other way round).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

BUNDLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "bundles").iterdir() if (p / "configs").is_dir())
REFERENCE = re.compile(r"@[A-Za-z_]\w*(?:(?:#|::)\w+)*|%[\w./-]+(?:(?:#|::)\w+)*")
"""An ``@id#sub`` reference or a ``%file#id`` macro (MONAI also accepts ``::`` as the separator)."""
POSITION = re.compile(r"(?:#|::)\d+(?=#|::|$)")


def configs(folder: Path) -> dict[str, object]:
    """Every JSON config of a bundle's ``configs`` folder but ``metadata.json``, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "metadata.json"}


def strings(node: object) -> Iterator[str]:
    """Every string value (not key) of a parsed config, depth first."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def imported_names(statement: str) -> set[str]:
    """The names a ``$import``/``$from ... import`` entry binds (``import a.b`` binds ``a``)."""
    names = set()
    for node in ast.walk(ast.parse(statement.removeprefix("$").strip())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
    return names


def used_names(expression: str) -> set[str]:
    """The Python names a ``$`` expression reads; references (``@id``) are replaced first, they are no Python."""
    source = REFERENCE.sub("_ref_", expression.removeprefix("$"))
    try:
        return {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    except SyntaxError:  # not parseable on its own: count every identifier, erring on the side of "used"
        return set(re.findall(r"[A-Za-z_]\w*", source))


def unused_imports(folder: Path) -> list[str]:
    """``file: import`` for each import of a base config that neither it nor any overlay of the bundle uses."""
    content = configs(folder)
    overlays = [c for c in content.values() if not (isinstance(c, dict) and "imports" in c)]
    findings = []
    for name, base in content.items():
        if not (isinstance(base, dict) and "imports" in base):
            continue
        used: set[str] = set()
        for config in [base, *overlays]:
            for text in strings(config):
                if text.startswith("$") and not re.match(r"\$\s*(import|from)\s", text):
                    used |= used_names(text)
        findings += [f"{name}: {entry}" for entry in base["imports"] if not imported_names(entry) & used]
    return findings


def item(config: object, reference: str) -> object:
    """The raw config item at ``@a#b#0`` in one parsed file (None where that file does not define it)."""
    node = config
    for part in re.split(r"#|::", reference.removeprefix("@")):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def position_references(folder: Path) -> list[str]:
    """``file: reference`` for each reference, macro or override key that indexes a list by position."""
    findings = []
    for name, config in configs(folder).items():
        for text in strings(config):
            findings += [f"{name}: {ref}" for ref in REFERENCE.findall(text) if POSITION.search(ref)]
        if isinstance(config, dict):
            findings += [f"{name}: key {key}" for key in config if POSITION.search(key)]
    return findings


def checkpoint_dict_sites(node: object, path: str = "") -> Iterator[tuple[str, str, frozenset[str]]]:
    """``(kind, id, keys)`` for each ``load_dict``/``save_dict`` written out inline (a dict, not a reference)."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}#{key}" if path else str(key)
            if key.rsplit("#", 1)[-1] in ("load_dict", "save_dict") and isinstance(value, dict):
                yield key.rsplit("#", 1)[-1], child, frozenset(value)
            yield from checkpoint_dict_sites(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from checkpoint_dict_sites(value, f"{path}#{index}")


def duplicated_checkpoint_dicts(folder: Path) -> list[str]:
    """``file: load site = save site`` for each load and save dict of one file written out with the same keys."""
    findings = []
    for name, config in configs(folder).items():
        sites = list(checkpoint_dict_sites(config))
        loads = [(site, keys) for kind, site, keys in sites if kind == "load_dict"]
        saves = [(site, keys) for kind, site, keys in sites if kind == "save_dict"]
        findings += [f"{name}: {a} = {b}" for a, keys_a in loads for b, keys_b in saves if keys_a == keys_b]
    return findings


def handler_references(folder: Path) -> list[str]:
    """``file: list id [index]`` for each entry of a handler list that is not an inline dict."""
    findings = []
    for name, config in configs(folder).items():
        if not isinstance(config, dict):
            continue
        for key in ("train#handlers",):  # MONAI reads this list only (validate#handlers may hold references)
            entries = config.get(key, item(config, f"@{key}"))
            if isinstance(entries, list):
                findings += [f"{name}: {key} [{i}]" for i, e in enumerate(entries) if not isinstance(e, dict)]
    return findings


CHECKS = {"unused imports": unused_imports, "position references": position_references}
CHECKS["load/save dicts written twice"] = duplicated_checkpoint_dicts
CHECKS["training handlers as inline dicts"] = handler_references


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_bundle_configs_pass_the_lint(bundle: Path, check: str) -> None:
    assert CHECKS[check](bundle / "configs") == [], f"{bundle.name}: {check}"


def write(folder: Path, **files: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / f"{name}.json").write_text(json.dumps(content))
    return folder


def test_unused_imports_fires_on_an_import_no_config_uses(tmp_path: Path) -> None:
    base = {"imports": ["$import glob", "$import os", "$import math", "$from pathlib import Path as P"]}
    base |= {"epochs": "$math.ceil(@max_iterations / @epoch_length)", "root": "$str(P(@bundle_root))"}
    folder = write(tmp_path / "configs", train=base, quick={"seed": "$int(os.environ.get('SEED', 0))"})
    # os is used by the overlay only (configs are layered); glob by no one; a string "glob" is no use
    assert unused_imports(folder) == ["train.json: $import glob"]
    write(folder, inference={"imports": ["$import numpy", "$import math"], "window": "$[math.pi, 'numpy']"})
    assert unused_imports(folder) == ["inference.json: $import numpy", "train.json: $import glob"]


def test_unused_imports_counts_a_use_in_an_overlay_for_every_base(tmp_path: Path) -> None:
    folder = write(tmp_path / "configs", train={"imports": ["$import os"]}, inference={"imports": ["$import glob"]})
    assert unused_imports(folder) == ["inference.json: $import glob", "train.json: $import os"]
    write(folder, quick={"files": "$glob.glob(os.path.join(@dataset_dir, '*.h5'))"})
    assert unused_imports(folder) == []


def test_position_references_fire_on_a_list_index(tmp_path: Path) -> None:
    ema = {"_target_": "common.handlers.EMATeacher", "model": "@network", "teacher": "@teacher"}
    good = {"teacher": "$common.handlers.teacher_copy(@network)", "train": {"handlers": [{"_target_": "Loader"}, ema]}}
    good["size"] = "$@patch_size[0] + 1"
    folder = write(tmp_path / "configs", train=good)
    assert position_references(folder) == []  # the teacher by its id; indexing a value (patch_size[0]) is fine
    # the teacher found by the handler's place: refused even where that place holds the handler
    by_place = dict(good, teacher="$@train#handlers#1.ema_model")
    write(folder, train=by_place)
    assert position_references(folder) == ["train.json: @train#handlers#1"]
    bad = {"teacher": "$@train#handlers#1.ema_model", "net": "%configs/x.json::network#0", "n": "@a#b2"}
    write(folder, train=bad, quick={"train#handlers#3#interval": 2, "train#trainer#max_epochs": 1})
    assert position_references(folder) == [
        "quick.json: key train#handlers#3#interval",
        "train.json: @train#handlers#1",
        "train.json: %configs/x.json::network#0",
    ]


def test_duplicated_checkpoint_dicts_fire_on_the_same_keys_written_twice(tmp_path: Path) -> None:
    ckpt = {"network": "@network", "optimizer": "@optimizer"}
    handlers = [
        {"_target_": "ResumeCheckpointLoader", "load_dict": dict(ckpt)},
        {"_target_": "AtomicCheckpointSaver", "save_dict": dict(ckpt)},
    ]
    folder = write(tmp_path / "configs", train={"train": {"handlers": handlers}})
    duplicate = "train#handlers#0#load_dict = train#handlers#1#save_dict"
    assert duplicated_checkpoint_dicts(folder) == [f"train.json: {duplicate}"]
    shared = [{"load_dict": "@checkpoint_dict"}, {"save_dict": "@checkpoint_dict"}]
    other = {"validate#best_model_saver#save_dict": {"model": "@network"}}  # a different key set: no duplicate
    write(folder, train={"checkpoint_dict": ckpt, "train": {"handlers": shared}}, quick=other)
    assert duplicated_checkpoint_dicts(folder) == []
    write(folder, supervised={"train#handlers#0#load_dict": ckpt, "train#handlers#1#save_dict": ckpt})
    assert duplicated_checkpoint_dicts(folder) == [f"supervised.json: {duplicate}"]


def test_handler_references_fire_on_an_entry_that_is_not_a_dict(tmp_path: Path) -> None:
    good = {"train": {"handlers": [{"_target_": "ValidationHandler"}]}, "validate#handlers": ["@saver"]}
    folder = write(tmp_path / "configs", train=good)
    assert handler_references(folder) == []
    bad = {"ema": {"_target_": "common.handlers.EMATeacher"}, "train": {"handlers": [{"_target_": "A"}, "@ema"]}}
    write(folder, train=bad, supervised={"train#handlers": ["@train#stats", {"_target_": "B"}]})
    assert handler_references(folder) == ["supervised.json: train#handlers [0]", "train.json: train#handlers [1]"]
