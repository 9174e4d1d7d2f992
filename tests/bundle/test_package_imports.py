"""Tests of what ``common.bundle`` imports: training and inference load no release tooling; the tools load on use."""

from __future__ import annotations

import json
import subprocess
import sys

from common.bundle.locate import repository_root
from common.bundle.vendor import config_references

TOOLING = (
    "common.bundle.__main__",
    "common.bundle.export",
    "common.bundle.model_info",
    "common.bundle.monai_label",
    "common.bundle.uncertainty",
    "common.bundle.vendor",
)
"""The modules of ``python -m common.bundle <command>`` and the MONAI Label check: none is a training import."""

LAZY = {
    "ExportError": "common.bundle.export",
    "export_bundle": "common.bundle.export",
    "stage_bundle": "common.bundle.export",
    "check_monai_label_contract": "common.bundle.monai_label",
    "rank_by_uncertainty": "common.bundle.uncertainty",
}

# What a training (or inference) process does with its configs, then what a user of the tools does, in a fresh process:
# the references resolve as MONAI resolves them (a ``_target_`` with ``pydoc.locate``, as MONAI's ``instantiate``; a
# ``$`` expression's dotted name attribute by attribute from ``common``, as ``eval`` of it), the modules loaded are
# recorded, and then the tool names are used.
CODE = """
import json, pydoc, sys

import common

TOOLING, LAZY = json.loads(sys.argv[2]), json.loads(sys.argv[3])
for cid, dotted in json.loads(sys.argv[1]):
    if cid.endswith("_target_"):
        found = pydoc.locate(dotted)
    else:
        found = common
        for part in dotted.split(".")[1:]:
            found = getattr(found, part)
    assert found is not None, (cid, dotted)
loaded = sorted(m for m in sys.modules if m == "common" or m.startswith("common."))

assert set(LAZY) <= set(dir(common.bundle)) and set(LAZY) <= set(common.bundle.__all__)
assert common.bundle.export_bundle is sys.modules["common.bundle.export"].export_bundle
from common.bundle import check_monai_label_contract, rank_by_uncertainty

for name, module in LAZY.items():
    assert getattr(common.bundle, name) is getattr(sys.modules[module], name), name
namespace = {}
exec("from common.bundle import *", namespace)
assert set(common.bundle.__all__) <= set(namespace)
try:
    common.bundle.no_such_tool
except AttributeError as e:
    assert "no_such_tool" in str(e)
else:
    raise AssertionError("an unknown name must raise AttributeError")
print(json.dumps(loaded))
"""


def test_configs_import_no_release_tooling_and_the_tools_load_on_first_access() -> None:
    """Every ``common`` reference of every bundle config resolves without loading the export or vendoring code;
    ``common.bundle.<tool>``, ``from common.bundle import <tool>`` and ``import *`` still give the tools."""
    refs = []
    for config_file in sorted((repository_root() / "bundles").glob("*/configs/*.json")):
        refs += config_references(json.loads(config_file.read_text()))
    dotted = {d for _, d in refs}
    assert {"common", "common.bundle.check_command_line", "common.bundle.find_bundle_root"} <= dotted
    proc = subprocess.run(
        [sys.executable, "-c", CODE, json.dumps(refs), json.dumps(TOOLING), json.dumps(LAZY)],
        cwd=repository_root(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert {"common.bundle.command_line", "common.bundle.distributed", "common.handlers", "common.networks"} <= loaded
    assert sorted(set(TOOLING) & loaded) == []
