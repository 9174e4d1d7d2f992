"""Vendoring: copy the ``common`` modules a bundle's configs use into its ``scripts/`` package, rewrite the references.

A bundle of this repository names its components ``common.<package>.<Name>`` and so runs only where this project is
installed. An exported bundle carries its own code instead, in ``scripts/`` as the model zoo does: this module finds
which modules of ``common`` the configs reference (``_target_`` values, ``$`` expressions, ``$import common``) and,
transitively, which modules those import (absolute, relative and function-level imports), copies exactly those with
the package's layout kept (``common/networks/cmunext.py`` -> ``scripts/networks/cmunext.py``, so relative imports
still resolve), and rewrites ``common`` to ``scripts`` in import statements and config references.

A package ``__init__.py`` that only re-exports its modules (docstring, imports, ``__all__``) is trimmed to the
re-exports of vendored modules; so is one whose other re-exports are lazy (PEP 562): a ``_LAZY_EXPORTS`` table of
constant ``{"name": "submodule"}`` entries read by its ``__getattr__`` (and ``__dir__``), as ``common.bundle`` keeps
the sharing tools out of training processes; its table keeps the entries of vendored modules. One that holds other
code (a registry, a loader of its own) is vendored whole with everything it imports, since that code may use any of
it. Third-party imports (plain imports and MONAI's ``optional_import``) are collected so that the export can list them
as required packages.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "VendorError",
    "VendorPlan",
    "config_references",
    "plan_vendoring",
    "rewrite_config",
    "rewrite_expression",
    "write_vendored",
]

_NOT_THIRD_PARTY = frozenset(sys.stdlib_module_names) | {"__future__"}


class VendorError(ValueError):
    """A reference or import that cannot be vendored; the message names the config or file and the problem."""


@dataclass
class VendorPlan:
    """What to copy from a package, and what the copied code imports from elsewhere.

    Attributes:
        package: the package's import name (``"common"``).
        root: the package's folder.
        modules: dotted names of the modules copied whole (including package ``__init__`` files that hold code).
        trimmed: dotted names of packages whose ``__init__`` only re-exports; copied with the re-exports of
            vendored modules only.
        third_party: top-level names of the non-standard-library modules the copied code imports (``import`` and
            ``from ... import`` statements, which fail at run time without them), each with the vendored modules that
            import them.
        optional: those that the copied code imports only through MONAI's ``optional_import`` (and never with a
            plain import), each with its importers: the code runs without them until a path that needs them is
            taken (``nibabel`` for NIfTI layouts, ``h5py`` for HDF5), which then stops with MONAI's
            ``OptionalImportError`` naming the module.
    """

    package: str
    root: Path
    modules: set[str] = field(default_factory=set)
    trimmed: set[str] = field(default_factory=set)
    third_party: dict[str, set[str]] = field(default_factory=dict)
    optional: dict[str, set[str]] = field(default_factory=dict)

    @property
    def vendored(self) -> set[str]:
        """Every module or package that the copy contains."""
        return self.modules | self.trimmed

    def source_file(self, name: str) -> Path:
        """The source file of the vendored module ``name``."""
        return _module_file(self.root, self.package, name)  # type: ignore[return-value]


def _module_file(root: Path, package: str, name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != package:
        return None
    folder = root.joinpath(*parts[1:])
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    module = folder.parent / f"{parts[-1]}.py"
    return module if len(parts) > 1 and module.is_file() else None


def _is_all_assignment(stmt: ast.stmt) -> bool:
    """``__all__ = [...]`` or ``__all__ += [...]`` (long export lists are split over several statements)."""
    if isinstance(stmt, ast.AugAssign):
        return isinstance(stmt.op, ast.Add) and isinstance(stmt.target, ast.Name) and stmt.target.id == "__all__"
    return (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id == "__all__"
    )


_LAZY_TABLE = "_LAZY_EXPORTS"
"""The table of lazy re-exports (``{"name": "submodule"}``) of a package ``__init__.py``."""

_LAZY_FUNCTIONS = frozenset({"__getattr__", "__dir__"})


def _lazy_table(stmt: ast.stmt) -> dict[str, str] | None:
    """The entries of ``_LAZY_EXPORTS = {"name": "submodule", ...}`` (constant strings only), else None."""
    if not (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id == _LAZY_TABLE
        and isinstance(stmt.value, ast.Dict)
    ):
        return None
    table = {}
    for key, value in zip(stmt.value.keys, stmt.value.values):
        if not (isinstance(key, ast.Constant) and isinstance(value, ast.Constant)):
            return None
        if not (isinstance(key.value, str) and isinstance(value.value, str)):
            return None
        table[key.value] = value.value
    return table


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A package's lazy re-exports: attribute -> the submodule (relative name) defining it."""
    for stmt in tree.body:
        table = _lazy_table(stmt)
        if table is not None:
            return table
    return {}


def _reexport_only(tree: ast.Module) -> bool:
    """True when a module holds nothing but a docstring, imports, ``__all__`` and lazy re-exports.

    Lazy re-exports are a ``_LAZY_EXPORTS`` table and the ``__getattr__`` / ``__dir__`` that read it.
    """
    lazy = any(_lazy_table(stmt) is not None for stmt in tree.body)
    for i, stmt in enumerate(tree.body):
        docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant)
        lazy_code = lazy and (
            _lazy_table(stmt) is not None or (isinstance(stmt, ast.FunctionDef) and stmt.name in _LAZY_FUNCTIONS)
        )
        if not (docstring or lazy_code or isinstance(stmt, (ast.Import, ast.ImportFrom)) or _is_all_assignment(stmt)):
            return False
    return True


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` that runs at run time: the bodies of ``if TYPE_CHECKING:`` are left out."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield child
        yield from _runtime_nodes(child)


def _optional_import_target(node: ast.AST) -> str | None:
    """The module named by MONAI's ``optional_import("name", ...)``, if ``node`` is such a call."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    first = node.args[0]
    if name == "optional_import" and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


class _Closure:
    """Walks references and imports, collecting the modules to vendor."""

    def __init__(self, root: Path, package: str) -> None:
        self.plan = VendorPlan(package=package, root=root)
        self._trees: dict[str, ast.Module] = {}

    # -- the package's files
    def file(self, name: str) -> Path | None:
        return _module_file(self.plan.root, self.plan.package, name)

    def is_package(self, name: str) -> bool:
        found = self.file(name)
        return found is not None and found.name == "__init__.py"

    def tree(self, name: str) -> ast.Module:
        if name not in self._trees:
            path = self.file(name)
            try:
                self._trees[name] = ast.parse(path.read_text(), filename=str(path))  # type: ignore[union-attr]
            except SyntaxError as e:
                raise VendorError(f"{path}: cannot be parsed for vendoring: {e}") from e
        return self._trees[name]

    def inside(self, name: str) -> bool:
        return name == self.plan.package or name.startswith(self.plan.package + ".")

    def absolute(self, name: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        parts = name.split(".") if self.is_package(name) else name.split(".")[:-1]
        if node.level - 1 >= len(parts):
            raise VendorError(
                f"{self.file(name)}:{node.lineno}: relative import beyond the {self.plan.package} package"
            )
        base = parts[: len(parts) - (node.level - 1)]
        return ".".join(base + (node.module.split(".") if node.module else []))

    # -- what is needed
    def need_reference(self, dotted: str, origin: str) -> None:
        """A dotted name from a config, e.g. ``common.networks.CMUNeXt`` or ``common.bundle.find_inputs``."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            module = ".".join(parts[:i])
            if self.file(module) is not None:
                break
        else:
            raise VendorError(f"{origin}: {dotted!r} names no module of the {self.plan.package} package")
        self.need_module(module, origin)
        if i < len(parts):
            self.need_attribute(module, parts[i], origin)

    def need_module(self, name: str, origin: str) -> None:
        if name in self.plan.vendored:
            return
        if self.file(name) is None:
            raise VendorError(f"{origin}: imports {name!r}, which is not a module of the {self.plan.package} package")
        parts = name.split(".")
        for i in range(1, len(parts)):  # importing a module runs the __init__ of every package above it
            self.need_module(".".join(parts[:i]), origin)
        if self.is_package(name) and _reexport_only(self.tree(name)):
            self.plan.trimmed.add(name)
            self.scan(name, only_outside=True)
            return
        self.plan.modules.add(name)
        self.scan(name)

    def need_attribute(self, module: str, attribute: str, origin: str) -> None:
        submodule = f"{module}.{attribute}"
        if self.file(submodule) is not None:
            self.need_module(submodule, origin)
            return
        self.need_module(module, origin)
        if module not in self.plan.trimmed:
            return  # vendored whole: whatever defines the attribute comes along
        lazy = _lazy_exports(self.tree(module))
        if attribute in lazy:
            self.need_attribute(f"{module}.{lazy[attribute]}", attribute, origin)
            return
        for stmt in self.tree(module).body:
            if not isinstance(stmt, ast.ImportFrom):
                continue
            for alias in stmt.names:
                if (alias.asname or alias.name) == attribute:
                    base = self.absolute(module, stmt)
                    if self.inside(base):
                        self.need_attribute(base, alias.name, origin)
                    return
        raise VendorError(f"{origin}: {module} has no attribute {attribute!r} (not re-exported by its __init__.py)")

    def note_third_party(self, imported: str, by: str, optional: bool = False) -> None:
        top = imported.split(".")[0]
        if top and top not in _NOT_THIRD_PARTY:
            (self.plan.optional if optional else self.plan.third_party).setdefault(top, set()).add(by)

    def scan(self, name: str, only_outside: bool = False) -> None:
        """Follow the imports of module ``name``: in-package ones are needed (unless ``only_outside``)."""
        where = self.file(name)
        nodes = list(self.tree(name).body) if only_outside else list(_runtime_nodes(self.tree(name)))
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if not self.inside(alias.name):
                        self.note_third_party(alias.name, name)
                    elif only_outside:
                        continue
                    elif alias.asname is None:
                        raise VendorError(
                            f"{where}:{node.lineno}: `import {alias.name}` binds the name {self.plan.package!r}, which "
                            f"cannot be renamed when vendored; write `from {alias.name.rsplit('.', 1)[0]} import ...` "
                            "or a relative import"
                        )
                    else:
                        self.need_module(alias.name, f"{where}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom):
                base = self.absolute(name, node)
                if not self.inside(base):
                    self.note_third_party(base, name)
                    continue
                if only_outside:
                    continue
                for alias in node.names:
                    if alias.name == "*":
                        raise VendorError(f"{where}:{node.lineno}: star imports cannot be vendored selectively")
                    self.need_attribute(base, alias.name, f"{where}:{node.lineno}")
            else:
                target = _optional_import_target(node)
                if target is not None:
                    self.note_third_party(target, name, optional=True)


# --------------------------------------------------------------------------------------------- config references
def _dotted_names(expression: str, package: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, dotted)`` for every dotted name rooted at ``package`` in a Python expression or statement.

    Offsets are character offsets into ``expression``; a name preceded by ``.`` (an attribute) is not a root.
    """
    # MONAI's references (``@network_def``, ``@train#handlers``) are no Python: ``#`` would start a comment. They are
    # masked by a name of the same length, so that offsets stay those of ``expression``.
    masked = re.sub(r"@[\w#]+", lambda m: "_" * len(m.group(0)), expression)
    lines = masked.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(masked).readline) if t.type != tokenize.NL]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        for match in re.finditer(rf"(?<![\w.]){re.escape(package)}(?:\.\w+)*", masked):
            yield match.start(), match.start() + len(package), match.group(0)
        return
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string != package:
            continue
        if i > 0 and tokens[i - 1].type == tokenize.OP and tokens[i - 1].string == ".":
            continue
        parts, j = [tok.string], i + 1
        while j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == tokenize.NAME:
            parts.append(tokens[j + 1].string)
            j += 2
        start = starts[tok.start[0] - 1] + tok.start[1]
        yield start, start + len(package), ".".join(parts)


def _walk_strings(config: Any, path: str = "") -> Iterator[tuple[str, str | None, str]]:
    """``(id, key, value)`` for every string in a parsed JSON config; ``key`` is the dict key holding it."""
    if isinstance(config, dict):
        for k, v in config.items():
            child = f"{path}#{k}" if path else str(k)
            if isinstance(v, str):
                yield child, str(k), v
            else:
                yield from _walk_strings(v, child)
    elif isinstance(config, list):
        for i, v in enumerate(config):
            child = f"{path}#{i}" if path else str(i)
            if isinstance(v, str):
                yield child, None, v
            else:
                yield from _walk_strings(v, child)


def _is_target_reference(key: str | None, value: str, package: str) -> bool:
    return key == "_target_" and (value == package or value.startswith(package + "."))


def config_references(config: Any, package: str = "common") -> list[tuple[str, str]]:
    """The references to ``package`` in a parsed config: ``(config id, dotted name)`` pairs.

    Args:
        config: the content of a JSON config.
        package: the package whose references are wanted.

    Returns:
        pairs such as ``("network_def#_target_", "common.networks.CMUNeXt")`` or ``("imports#2", "common")``.
    """
    found = []
    for cid, key, value in _walk_strings(config):
        if _is_target_reference(key, value, package):
            found.append((cid, value))
        elif value.startswith("$"):
            found.extend((cid, dotted) for _, _, dotted in _dotted_names(value[1:], package))
    return found


def rewrite_expression(expression: str, old: str, new: str) -> str:
    """Rename the root ``old`` of dotted names to ``new`` in a Python expression (attributes are left alone)."""
    for start, end, _ in sorted(_dotted_names(expression, old), reverse=True):
        expression = expression[:start] + new + expression[end:]
    return expression


def rewrite_config(config: Any, old: str = "common", new: str = "scripts") -> Any:
    """A copy of a parsed config with every reference to package ``old`` renamed to ``new``.

    ``_target_`` values and ``$`` expressions are rewritten; other strings (descriptions, paths) are not.
    """
    if isinstance(config, dict):
        out = {}
        for k, v in config.items():
            if isinstance(v, str) and _is_target_reference(k, v, old):
                out[k] = new + v[len(old) :]
            else:
                out[k] = rewrite_config(v, old, new)
        return out
    if isinstance(config, list):
        return [rewrite_config(v, old, new) for v in config]
    if isinstance(config, str) and config.startswith("$"):
        return "$" + rewrite_expression(config[1:], old, new)
    return config


def plan_vendoring(references: list[tuple[str, str]], root: Path, package: str = "common") -> VendorPlan:
    """Find the modules of ``package`` that ``references`` need, transitively.

    Args:
        references: ``(origin, dotted name)`` pairs, e.g. from :func:`config_references`; ``origin`` (such as
            ``"configs/train.json: network_def#_target_"``) is named in errors.
        root: the package's folder.
        package: the package's import name.

    Returns:
        the plan: modules to copy whole, package ``__init__`` files to trim, third-party imports (required and
        optional).

    Raises:
        VendorError: a reference to a missing module or attribute, or an import that cannot be vendored.
    """
    closure = _Closure(Path(root), package)
    for origin, dotted in references:
        closure.need_reference(dotted, origin)
    plan = closure.plan
    # a module imported plainly anywhere in the copy is required, whatever else imports it optionally
    plan.optional = {k: v for k, v in plan.optional.items() if k not in plan.third_party}
    return plan


# ------------------------------------------------------------------------------------------------------ writing
def _byte_offsets(source: bytes) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _import_kept(plan: VendorPlan, module: str, stmt: ast.ImportFrom, closure: _Closure) -> list[ast.alias]:
    """The names of a re-export statement in a trimmed ``__init__`` whose source is vendored."""
    base = closure.absolute(module, stmt)
    if not closure.inside(base):
        return list(stmt.names)
    kept = []
    for alias in stmt.names:
        submodule = f"{base}.{alias.name}"
        if closure.file(submodule) is not None:
            if submodule in plan.vendored:
                kept.append(alias)
        elif base in plan.modules or (base in plan.trimmed and _bound_in_trimmed(plan, base, alias.name, closure)):
            kept.append(alias)
    return kept


def _lazy_kept(plan: VendorPlan, module: str, closure: _Closure) -> dict[str, str]:
    """The lazy re-exports of a trimmed ``__init__`` whose submodule is vendored."""
    lazy = _lazy_exports(closure.tree(module))
    return {name: sub for name, sub in lazy.items() if f"{module}.{sub}" in plan.vendored}


def _bound_in_trimmed(plan: VendorPlan, module: str, name: str, closure: _Closure) -> bool:
    if name in _lazy_kept(plan, module, closure):
        return True
    for stmt in closure.tree(module).body:
        if isinstance(stmt, ast.ImportFrom):
            if any((a.asname or a.name) == name for a in _import_kept(plan, module, stmt, closure)):
                return True
    return False


def _vendored_source(plan: VendorPlan, name: str, closure: _Closure, new: str, relpath: str) -> str:
    path = plan.source_file(name)
    source = path.read_bytes()
    tree = closure.tree(name)
    starts = _byte_offsets(source)
    edits: list[tuple[int, int, bytes]] = []

    def span(node: ast.stmt, whole_lines: bool) -> tuple[int, int]:
        if whole_lines:
            return starts[node.lineno - 1], starts[node.end_lineno]  # type: ignore[index]
        return (
            starts[node.lineno - 1] + node.col_offset,
            starts[node.end_lineno - 1] + node.end_col_offset,  # type: ignore[operator]
        )

    def renamed(text: str) -> str:
        """An import statement with the package renamed (``from common.x import y``, ``import common.x as z``)."""
        text = re.sub(rf"^from\s+{plan.package}\b", f"from {new}", text)
        if re.match(r"^import\s", text):
            text = re.sub(rf"(?<![\w.]){plan.package}(?=[.\s,]|$)", new, text)
        return text

    if name in plan.trimmed:
        lazy = _lazy_kept(plan, name, closure)
        bound: set[str] = set(lazy)
        for stmt in tree.body:
            if _lazy_table(stmt) is not None:
                entries = "".join(f'    "{k}": "{v}",\n' for k, v in lazy.items())
                text = f"{_LAZY_TABLE} = {{\n{entries}}}\n" if entries else f"{_LAZY_TABLE}: dict[str, str] = {{}}\n"
                edits.append((*span(stmt, True), text.encode()))
            elif isinstance(stmt, ast.ImportFrom):
                kept = _import_kept(plan, name, stmt, closure)
                bound.update(a.asname or a.name for a in kept)
                start, end = span(stmt, True)
                if not kept:
                    text = ""
                elif len(kept) < len(stmt.names):
                    text = ast.unparse(ast.ImportFrom(module=stmt.module, names=kept, level=stmt.level)) + "\n"
                else:
                    text = source[start:end].decode()
                edits.append((start, end, renamed(text).encode()))
            elif isinstance(stmt, ast.Import):
                bound.update((a.asname or a.name).split(".")[0] for a in stmt.names)
                start, end = span(stmt, False)
                edits.append((start, end, renamed(source[start:end].decode()).encode()))
        for stmt in tree.body:
            if _is_all_assignment(stmt) and isinstance(stmt.value, (ast.List, ast.Tuple)):
                names = [e.value for e in stmt.value.elts if isinstance(e, ast.Constant)]
                quoted = [f'"{n}"' for n in names if n in bound]
                op = "+=" if isinstance(stmt, ast.AugAssign) else "="
                text = f"__all__ {op} [" + ", ".join(quoted) + "]\n"
                if len(text) > 120:
                    text = f"__all__ {op} [\n" + "".join(f"    {q},\n" for q in quoted) + "]\n"
                edits.append((*span(stmt, True), text.encode()))
    else:
        for node in ast.walk(tree):  # under `if TYPE_CHECKING:` too, so that no reference to the package is left
            if isinstance(node, (ast.Import, ast.ImportFrom)) and (
                (isinstance(node, ast.ImportFrom) and node.level == 0 and closure.inside(node.module or ""))
                or (isinstance(node, ast.Import) and any(closure.inside(a.name) for a in node.names))
            ):
                start, end = span(node, False)
                edits.append((start, end, renamed(source[start:end].decode()).encode()))

    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        source = source[:start] + replacement + source[end:]
    header = (
        f"# Vendored from {relpath} of label-efficient-bundles by `python -m common.bundle export`; edit that file.\n"
        f"# `{plan.package}.` in docstrings and messages below is this package, `{new}.`, in an exported bundle.\n"
    )
    return header + source.decode()


def write_vendored(plan: VendorPlan, dest: Path, new: str = "scripts") -> list[Path]:
    """Write the vendored copy of ``plan.package`` as package ``new`` in folder ``dest`` (``<bundle>/scripts``).

    Args:
        plan: from :func:`plan_vendoring`.
        dest: the folder of the new package; created.
        new: the new package's import name (the folder's name).

    Returns:
        the files written.
    """
    closure = _Closure(plan.root, plan.package)
    written = []
    for name in sorted(plan.vendored):
        source_file = plan.source_file(name)
        relative = source_file.relative_to(plan.root)
        target = Path(dest) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        relpath = f"{plan.package}/{relative.as_posix()}"
        target.write_text(_vendored_source(plan, name, closure, new, relpath))
        written.append(target)
    return written
