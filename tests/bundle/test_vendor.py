"""Tests of common.bundle.vendor: references in configs, the import closure, trimmed re-exports, the vendored copy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import common
from common.bundle.vendor import (
    VendorError,
    config_references,
    plan_vendoring,
    rewrite_config,
    rewrite_expression,
    write_vendored,
)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A small package ``pkg`` with every import form the vendoring must follow."""
    root = tmp_path / "src" / "pkg"
    write(
        root,
        {
            "__init__.py": '''
                """Root with a lazy loader: holds code, so it is copied whole."""
                import importlib

                def __getattr__(name):
                    return importlib.import_module(f"{__name__}.{name}")
            ''',
            "nets/__init__.py": '''
                """Re-exports only: trimmed to what is vendored."""
                from __future__ import annotations

                from .big import Big
                from .small import Small, helper

                __all__ = ["Big", "Small", "helper"]
            ''',
            "nets/small.py": """
                from __future__ import annotations

                import numpy as np

                from pkg.util.maths import double
                from ..util import text as text_module

                def helper(x):
                    return double(x)

                class Small:
                    def __init__(self):
                        from pkg.util.late import LATE  # a function-level import is followed too
                        self.value = LATE + text_module.NAME + str(np.int64(1))
            """,
            "nets/big.py": """
                import scipy  # never vendored: nothing needs Big

                class Big:
                    pass
            """,
            "util/__init__.py": '"""Empty re-export package."""\n',
            "util/maths.py": """
                from typing import TYPE_CHECKING

                from monai.utils import optional_import

                h5py, _ = optional_import("h5py")

                if TYPE_CHECKING:
                    from pkg.nets.big import Big  # type-only: not needed at run time

                def double(x):
                    return 2 * x
            """,
            "util/text.py": 'NAME = "text"\n',
            "util/late.py": "LATE = 'late:'\n",
            "registry/__init__.py": """
                from .a import A
                from .b import B

                REGISTRY = {"a": A, "b": B}

                def get(name):
                    return REGISTRY[name]()
            """,
            "registry/a.py": """
                from monai.utils import optional_import

                nib, _ = optional_import("nibabel")

                class A:
                    pass
            """,
            "registry/b.py": "import nibabel\n\nclass B:\n    pass\n",
        },
    )
    return root


def test_closure_follows_imports_and_trims_reexports(package: Path) -> None:
    plan = plan_vendoring([("cfg: network_def#_target_", "pkg.nets.Small")], package, "pkg")
    assert plan.modules == {"pkg", "pkg.nets.small", "pkg.util.maths", "pkg.util.text", "pkg.util.late"}
    assert plan.trimmed == {"pkg.nets", "pkg.util"}
    assert "pkg.nets.big" not in plan.vendored  # the TYPE_CHECKING import is not followed
    assert set(plan.third_party) == {"numpy", "monai"}  # no scipy: Big is not vendored
    assert plan.optional == {"h5py": {"pkg.util.maths"}}  # only through optional_import: not required at run time
    assert plan.third_party["numpy"] == {"pkg.nets.small"}


def test_a_package_init_with_code_comes_whole_with_its_imports(package: Path) -> None:
    plan = plan_vendoring([("cfg: x", "pkg.registry.get")], package, "pkg")
    assert {"pkg.registry", "pkg.registry.a", "pkg.registry.b"} <= plan.modules
    assert "nibabel" in plan.third_party  # b.py imports it plainly: required, though a.py imports it optionally
    assert "nibabel" not in plan.optional


def test_vendored_copy_imports_and_runs_under_its_new_name(package: Path, tmp_path: Path) -> None:
    plan = plan_vendoring([("cfg: x", "pkg.nets.Small"), ("cfg: y", "pkg.nets.helper")], package, "pkg")
    dest = tmp_path / "bundle" / "scripts"
    written = write_vendored(plan, dest, "scripts")
    assert dest / "nets" / "small.py" in written and not (dest / "nets" / "big.py").exists()
    init = (dest / "nets" / "__init__.py").read_text()
    assert "from .big import" not in init and '__all__ = ["Small", "helper"]' in init
    small = (dest / "nets" / "small.py").read_text()
    assert "from scripts.util.maths import double" in small and "from scripts.util.late import LATE" in small
    assert "pkg" not in small.split("\n", 2)[2].replace("package", "")
    code = "import scripts.nets as n; print(n.Small().value, n.helper(21))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=dest.parent, capture_output=True, text=True, env={"PYTHONPATH": ""}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["late:text1", "42"]


def test_an_export_list_split_over_augmented_assignments_is_still_trimmed(package: Path, tmp_path: Path) -> None:
    write(
        package,
        {
            "nets/__init__.py": """
                from .big import Big
                from .small import Small, helper

                __all__ = ["Big", "Small"]
                __all__ += ["helper"]
            """
        },
    )
    plan = plan_vendoring([("cfg: x", "pkg.nets.Small")], package, "pkg")
    assert "pkg.nets" in plan.trimmed and "pkg.nets.big" not in plan.vendored
    with pytest.raises(VendorError, match="pkg.nets has no attribute 'Nope'"):
        plan_vendoring([("cfg: x", "pkg.nets.Nope")], package, "pkg")
    write_vendored(plan, tmp_path / "scripts", "scripts")
    init = (tmp_path / "scripts" / "nets" / "__init__.py").read_text()
    assert "from .big import" not in init and '__all__ = ["Small"]\n__all__ += ["helper"]\n' in init


LAZY_INIT = '''
    """Eager re-exports and lazy ones (PEP 562): trimmed, the table to the entries of vendored modules."""
    from __future__ import annotations

    import importlib

    from .small import Small

    _LAZY_EXPORTS = {"Tool": "tool", "Other": "other"}

    __all__ = ["Small", "Tool", "Other"]


    def __getattr__(name):
        if name in _LAZY_EXPORTS:
            return getattr(importlib.import_module(f"{__name__}.{_LAZY_EXPORTS[name]}"), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


    def __dir__():
        return sorted({*globals(), *_LAZY_EXPORTS})
'''


@pytest.fixture
def lazy_package(package: Path) -> Path:
    """``pkg.tools``: one eager re-export and two lazy ones, one of which imports a package that is not installed."""
    write(
        package,
        {
            "tools/__init__.py": LAZY_INIT,
            "tools/small.py": "class Small:\n    pass\n",
            "tools/tool.py": "from pkg.util.text import NAME\n\n\nclass Tool:\n    name = NAME\n",
            "tools/other.py": "import not_installed_anywhere\n\n\nclass Other:\n    pass\n",
        },
    )
    return package


def test_lazy_reexports_are_trimmed_like_imports(lazy_package: Path, tmp_path: Path) -> None:
    """A lazy table does not make the ``__init__`` code: only referenced lazy names bring their modules along."""
    plan = plan_vendoring([("cfg: x", "pkg.tools.Small")], lazy_package, "pkg")
    assert "pkg.tools" in plan.trimmed and "pkg.tools" not in plan.modules
    assert not {"pkg.tools.tool", "pkg.tools.other"} & plan.vendored
    assert "not_installed_anywhere" not in plan.third_party
    plan = plan_vendoring([("cfg: x", "pkg.tools.Small"), ("cfg: y", "pkg.tools.Tool")], lazy_package, "pkg")
    assert {"pkg.tools.tool", "pkg.util.text"} <= plan.vendored and "pkg.tools.other" not in plan.vendored
    assert "not_installed_anywhere" not in plan.third_party
    with pytest.raises(VendorError, match="pkg.tools has no attribute 'Nope'"):
        plan_vendoring([("cfg: x", "pkg.tools.Nope")], lazy_package, "pkg")

    dest = tmp_path / "bundle" / "scripts"
    write_vendored(plan, dest, "scripts")
    init = (dest / "tools" / "__init__.py").read_text()
    assert '_LAZY_EXPORTS = {\n    "Tool": "tool",\n}\n' in init and '"Other"' not in init
    assert '__all__ = ["Small", "Tool"]' in init and "def __getattr__(name):" in init
    code = (
        "import sys, scripts.tools as t; loaded = 'scripts.tools.tool' in sys.modules; "
        "print(loaded, t.Tool.name, 'scripts.tools.tool' in sys.modules, hasattr(t, 'Other'), 'Tool' in dir(t))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=dest.parent, capture_output=True, text=True, env={"PYTHONPATH": ""}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "text", "True", "False", "True"]

    write_vendored(plan_vendoring([("cfg: x", "pkg.tools.Small")], lazy_package, "pkg"), tmp_path / "only", "only")
    assert "_LAZY_EXPORTS: dict[str, str] = {}\n" in (tmp_path / "only" / "tools" / "__init__.py").read_text()


def test_code_beside_a_lazy_table_makes_the_init_whole(lazy_package: Path) -> None:
    write(lazy_package, {"tools/__init__.py": LAZY_INIT + "\n\n    REGISTRY = {}\n"})
    plan = plan_vendoring([("cfg: x", "pkg.tools.Small")], lazy_package, "pkg")
    assert "pkg.tools" in plan.modules and "pkg.tools" not in plan.trimmed


def test_missing_attribute_names_the_config(package: Path) -> None:
    with pytest.raises(VendorError, match=r"configs/train.json: loss.*pkg.nets has no attribute 'Nope'"):
        plan_vendoring([("configs/train.json: loss", "pkg.nets.Nope")], package, "pkg")
    with pytest.raises(VendorError, match="names no module"):
        plan_vendoring([("configs/train.json: loss", "other.Thing")], package, "pkg")


def test_plain_import_of_the_package_is_refused(package: Path) -> None:
    write(package, {"bad.py": "import pkg.util.text\n\nX = pkg.util.text.NAME\n"})
    with pytest.raises(VendorError, match=r"bad.py:1: `import pkg.util.text` binds the name 'pkg'"):
        plan_vendoring([("cfg", "pkg.bad")], package, "pkg")


def test_star_import_is_refused(package: Path) -> None:
    write(package, {"star.py": "from pkg.util.text import *\n"})
    with pytest.raises(VendorError, match="star imports"):
        plan_vendoring([("cfg", "pkg.star")], package, "pkg")


def test_references_in_targets_and_expressions() -> None:
    config = {
        "imports": ["$import glob", "$import common"],
        "net": {"_target_": "common.networks.CMUNeXt", "x": "@y"},
        "handlers": "$common.bundle.handlers_for_this_rank(@train#handlers)",
        "described": "common.networks is named in a description, not a reference",
        "attr": "$foo.common.bar + len('common.quoted')",
        "plain_target": {"_target_": "Compose"},
    }
    refs = config_references(config)
    assert refs == [
        ("imports#1", "common"),
        ("net#_target_", "common.networks.CMUNeXt"),
        ("handlers", "common.bundle.handlers_for_this_rank"),
    ]
    rewritten = rewrite_config(config)
    assert rewritten["imports"] == ["$import glob", "$import scripts"]
    assert rewritten["net"] == {"_target_": "scripts.networks.CMUNeXt", "x": "@y"}
    assert rewritten["handlers"] == "$scripts.bundle.handlers_for_this_rank(@train#handlers)"
    assert rewritten["described"] == config["described"] and rewritten["attr"] == config["attr"]
    assert config_references(rewritten) == []


def test_rewrite_expression_keeps_the_rest_of_the_text() -> None:
    assert rewrite_expression("[common.a(x) for x in common.b(@d#e)]", "common", "s") == "[s.a(x) for x in s.b(@d#e)]"
    assert rewrite_expression("commons.a + my_common.b", "common", "s") == "commons.a + my_common.b"


def test_real_bundle_configs_resolve_in_the_common_package() -> None:
    """Every reference of every bundle config resolves: the closure of the real package can be planned."""
    root = Path(common.__file__).parent
    for config_file in sorted(root.parent.glob("bundles/*/configs/*.json")):
        refs = [(f"{config_file}: {cid}", ref) for cid, ref in config_references(json.loads(config_file.read_text()))]
        plan = plan_vendoring(refs, root)
        assert all(name == "common" or name.startswith("common.") for name in plan.vendored)
        assert "common.bundle.export" not in plan.vendored  # tools of the repository stay out of bundles
