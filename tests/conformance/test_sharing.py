"""Sharing: every bundle exports as a self-contained, zoo-shaped bundle, has a zoo model card and a current index entry.

Default run (fast, no trained model needed): the model card has the sections of the model zoo's README template; the
bundle's entry in ``bundles/model_info.json`` matches a fresh staging.

Integration (``-m integration``, no trained model needed): the staged export (configs rewritten, ``common`` modules
vendored in ``scripts/``) passes MONAI's ``verify_net_in_out`` (``python -m monai.bundle``) and resolves every
``scripts.*`` reference of every config with the ``common`` package blocked.

Slow (``-m slow``): a quick-trained copy is exported with ``python -m common.bundle export``; a clean virtual
environment gets MONAI, PyTorch, NumPy, ``fire`` and ``jsonschema`` (MONAI's bundle command line and
``verify_metadata``) and exactly the export's ``required_packages_version``, pinned, and not this project; there, from
a folder outside the repository with ``PYTHONPATH`` unset, MONAI's ``verify_metadata``, ``verify_net_in_out``,
``ckpt_export`` and an inference on a demo case written from the bundle's phantom must succeed.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from sharing import (
    ROOT,
    TRAINED,
    base_packages,
    build_venv,
    clone_venv,
    demo_case,
    export_trained,
    outside_env,
    required_packages,
    run,
    run_blocked,
    stage,
    venv_python,
)
from test_bundles import BUNDLES, SCHEMA, get_trained, grouped

from common.bundle.model_info import check_index, load_index
from common.data.io import read_array, spatial_shape

TEMPLATE_SECTIONS = (
    "Authors",
    "Tags",
    "Model Description",
    "Data",
    "Preprocessing",
    "Performance",
    "System Configuration",
)
"""The sections the model zoo's README template (``docs/readme_template.md``) does not mark optional."""

RESOLVE_REFERENCES = r"""
import importlib, json, pathlib, re, sys
from monai.bundle import verify_net_in_out  # what `python -m monai.bundle verify_net_in_out` runs
verify_net_in_out(net_id="network_def", meta_file="configs/metadata.json", config_file="configs/inference.json")
pattern = re.compile(r"(?<![\w.])(scripts|common)((?:\.\w+)+)")
found = 0
for config in sorted(pathlib.Path("configs").glob("*.json")):
    def strings(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from ([(k, v)] if isinstance(v, str) else strings(v))
        elif isinstance(x, list):
            for v in x:
                yield from ([(None, v)] if isinstance(v, str) else strings(v))
    for key, value in strings(json.loads(config.read_text())):
        if not (key == "_target_" or value.startswith("$")):
            continue
        for match in pattern.finditer(value):
            if match.group(1) == "common":
                sys.exit(f"{config}: still references {match.group(0)}")
            parts = match.group(0).split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                    break
                except ModuleNotFoundError:
                    continue
            if i < len(parts):
                getattr(obj, parts[i])  # AttributeError names the missing component
            found += 1
print(found, "references resolved")
import runpy  # MONAI Label's reads of the bundle: common/bundle/monai_label.py, run by its path (sys.argv[1])
checker, sys.argv = sys.argv[1], ["check", "."]
try:
    runpy.run_path(checker, run_name="__main__")
except SystemExit as stop:
    if stop.code not in (0, None):
        raise
"""
CHECKER = ROOT / "common" / "bundle" / "monai_label.py"


def _headings(text: str) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # a '#' in a code block is a comment
    lines = [line for line in prose.splitlines() if line.startswith("#")]
    return {re.sub(r"[#*]|\(optional\)", "", line, flags=re.I).strip().lower() for line in lines}


# ---------------------------------------------------------------------------------------------------- default
@pytest.mark.parametrize("name", BUNDLES)
def test_model_card_follows_the_zoo_template(name):
    readme = ROOT / "bundles" / name / "docs" / "README.md"
    text = readme.read_text()
    first = next(line for line in text.splitlines() if line.strip())
    assert first.startswith("# ") and len(first) > 3, f"{readme}: the first line is the title, '# <Model title>'"
    missing = [s for s in TEMPLATE_SECTIONS if s.lower() not in _headings(text)]
    assert not missing, f"{readme} lacks the model-zoo template sections {missing} (headings such as '## **Data**')"


@pytest.mark.parametrize("name", BUNDLES)
def test_index_entry_is_current(name):
    problems = check_index(ROOT / "bundles" / name)
    assert not problems, "\n".join(problems)


def test_index_names_only_existing_bundles():
    for key, entry in load_index().items():
        assert entry["folder"].split("/")[-1] in BUNDLES, f"bundles/model_info.json: {key} names a missing bundle"
        assert key == f"{entry['name']}_v{entry['version']}", key


# -------------------------------------------------------------------------------------------------- integration
@pytest.mark.integration
@pytest.mark.parametrize("name", BUNDLES)
def test_export_runs_without_common(name, tmp_path):
    """The staged export's network (MONAI's ``verify_net_in_out``), every config reference and MONAI Label's reads of
    the bundle (:mod:`common.bundle.monai_label`'s check: ``BundleInferTask`` and ``BundleTrainTask``) work with
    ``common`` blocked, from the export folder, in one process (each process spends ~10 s of CPU importing MONAI)."""
    export = stage(name, tmp_path)
    proc = run_blocked([sys.executable, "-c", RESOLVE_REFERENCES, str(CHECKER)], export)
    output = proc.stdout + proc.stderr
    assert "data shape of network is verified with no error" in output, output[-3000:]
    resolved = [line for line in proc.stdout.splitlines() if line.endswith(" references resolved")]
    assert resolved and int(resolved[-1].split()[0]) > 0, output[-3000:]
    assert "meets" in proc.stdout, output[-3000:]  # the MONAI Label contract
    for path in export.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".py", ".md", ".conf"):
            assert str(ROOT) not in path.read_text(), f"{path} names the repository's folder"


# ------------------------------------------------------------------------------------------------------ slow
@pytest.fixture(scope="session")
def clean_base(tmp_path_factory) -> Path:
    """A virtual environment with MONAI, PyTorch, NumPy, fire and jsonschema only; cloned per bundle."""
    venv = tmp_path_factory.mktemp("clean") / "base"
    seconds = build_venv(venv, base_packages())
    print(f"\nclean base environment ({' '.join(base_packages())}) built in {seconds:.0f} s")
    return venv


@pytest.mark.slow
@pytest.mark.parametrize("name", grouped("trained"))
def test_export_in_clean_environment(name, clean_base, tmp_path_factory):
    bundle = get_trained(TRAINED, name, tmp_path_factory)
    work = tmp_path_factory.mktemp(f"{name}_clean")
    export, seconds = export_trained(bundle, name, work / "dist")
    print(f"\nexport of {name}: {seconds:.1f} s")

    venv = clone_venv(clean_base, work / "venv")
    start = time.perf_counter()
    run([venv_python(venv), "-m", "pip", "install", "--quiet", *required_packages(export)], work, outside_env())
    print(f"{name} packages {required_packages(export)} installed in {time.perf_counter() - start:.0f} s")
    python = str(venv_python(venv))
    env = outside_env()
    proc = run([python, "-c", "import importlib.util as u; print(u.find_spec('common'))"], work, env)
    assert proc.stdout.strip() == "None", "the clean environment must not see this project"

    user = work / "user" / export.name  # a user's copy, unpacked from the zip, outside the repository
    shutil.unpack_archive(next((work / "dist").glob("*.zip")), work / "user")
    assert sorted(p.name for p in user.iterdir()) == sorted(p.name for p in export.iterdir())
    schema = Path(shutil.copy2(SCHEMA, work / "schema.json"))
    monai = [python, "-m", "monai.bundle"]
    meta = ["--meta_file", "configs/metadata.json"]
    run([*monai, "verify_metadata", *meta, "--filepath", schema], user, env)
    run([*monai, "verify_net_in_out", "network_def", *meta, "--config_file", "configs/inference.json"], user, env)
    run(
        [*monai, "ckpt_export", "network_def", "--filepath", work / "clean.ts", "--ckpt_file", "models/model.pt",
         *meta, "--config_file", "configs/inference.json"],
        user,
        env,
    )  # fmt: skip
    spec = json.loads((user / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    x = torch.randn(1, spec["num_channels"], *spec["spatial_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            torch.jit.load(str(work / "clean.ts"))(x), torch.jit.load(str(user / "models" / "model.ts"))(x)
        )

    demo = demo_case(bundle, work / "demo")
    out = work / "out"
    run([*monai, "run", "--config_file", "configs/inference.json", "--dataset_dir", demo.parent, "--output_dir", out],
        user, env)  # fmt: skip
    outputs = [p for p in out.rglob("*") if p.is_file()]
    assert len(outputs) == 1, outputs
    assert spatial_shape(outputs[0], read_array(outputs[0])) == spatial_shape(demo, read_array(demo))
