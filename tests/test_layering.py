"""Who may touch what: private names stay in their module, the core's internals in the core.

The core (the hand-off, its parking lot and its two faces, ``open_channel``'s
ends and ``BufferedIterator``) keeps the contract; every other module uses its
public interface.  These tests read the package's source (ast), so a new
shortcut through a private name fails here, not in a review.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bridges

PACKAGE = Path(bridges.__file__).parent

#: the modules that make up the core; they may touch each other's internals
#: (the hot paths of the two faces inline the hand-off's fast path)
CORE = frozenset({"bridges._buffer", "bridges._parking", "bridges._channel", "bridges._iterator"})

#: private attributes of other libraries' objects that share a name with one of the core's
NOT_THE_CORES = {
    # asyncio.StreamReader's flow-control flag (streams holds a reader error back with it)
    ("bridges.streams", "reader._paused"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool

    def resolve(self, node: ast.ImportFrom) -> str:
        """The absolute name of the module an ``import from`` names."""
        if not node.level:
            return node.module or ""
        base = self.name.split(".")
        if not self.is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)


@dataclass
class CoreClass:
    module: str
    private: set[str] = field(default_factory=set)
    bases: list[str] = field(default_factory=list)


def _modules() -> list[Module]:
    return [
        Module(_module_name(p), p, ast.parse(p.read_text(), str(p)), p.name == "__init__.py")
        for p in sorted(PACKAGE.rglob("*.py"))
    ]


MODULES = _modules()


def _private_members(cls: ast.ClassDef, *, stores: bool = True) -> set[str]:
    """Private attributes a class defines: slots, methods, class attributes, and (with
    ``stores``) ``self._x = ...``."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node in cls.body:
            names.add(node.name)
        elif stores and isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node in cls.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__slots__" and node.value is not None:
                        names.update(
                            c.value
                            for c in ast.walk(node.value)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)
                        )
    return {n for n in names if _is_private(n)}


def _core_classes() -> dict[str, CoreClass]:
    classes: dict[str, CoreClass] = {}
    for module in MODULES:
        if module.name not in CORE:
            continue
        for node in module.tree.body:
            if isinstance(node, ast.ClassDef):
                classes[node.name] = CoreClass(
                    module.name,
                    _private_members(node),
                    [ast.unparse(b).split("[")[0] for b in node.bases],
                )
    return classes


CORE_CLASSES = _core_classes()
CORE_PRIVATE = set().union(*(c.private for c in CORE_CLASSES.values()))


def _inherited_private(bases: list[str]) -> set[str]:
    """The private names a class outside the core inherits from core classes."""
    names: set[str] = set()
    todo = list(bases)
    while todo:
        base = todo.pop()
        core = CORE_CLASSES.get(base)
        if core is not None:
            names |= core.private
            todo.extend(core.bases)
    return names


def _where(module: Module, node: ast.AST) -> str:
    return f"{module.path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"


def test_the_core_is_where_this_test_says() -> None:
    names = {m.name for m in MODULES}
    assert CORE - {"bridges._parking"} <= names
    assert "Handoff" in CORE_CLASSES
    assert {"_items", "_slots", "_state", "_exc", "_offer"} <= CORE_CLASSES["Handoff"].private


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_no_private_name_is_imported_from_another_module(module: Module) -> None:
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            source = module.resolve(node)
            if source.split(".")[0] != "bridges" or source == module.name:
                continue
            found += [
                f"{_where(module, node)}: from {source} import {a.name}"
                for a in node.names
                if _is_private(a.name)
            ]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            # a private name reached through an imported bridges module (``ops._Map``)
            base = node.value
            if isinstance(base, ast.Name) and base.id in _imported_bridges_modules(module):
                found.append(f"{_where(module, node)}: {ast.unparse(node)}")
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def _imported_bridges_modules(module: Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            source = module.resolve(node)
            if source.split(".")[0] != "bridges":
                continue
            for a in node.names:
                if (
                    f"{source}.{a.name}" in {m.name for m in MODULES}
                    and f"{source}.{a.name}" != module.name
                ):
                    names.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("bridges"):
                    names.add(a.asname or a.name.split(".")[0])
    return names


@pytest.mark.parametrize("module", [m for m in MODULES if m.name not in CORE], ids=lambda m: m.name)
def test_no_module_outside_the_core_touches_its_internals(module: Module) -> None:
    found = []
    for cls_or_module in [module.tree, *ast.walk(module.tree)]:
        if cls_or_module is not module.tree and not isinstance(cls_or_module, ast.ClassDef):
            continue
        if isinstance(cls_or_module, ast.ClassDef):
            bases = [ast.unparse(b).split("[")[0] for b in cls_or_module.bases]
            if "Handoff" in bases:
                found.append(
                    f"{_where(module, cls_or_module)}: class {cls_or_module.name} "
                    "subclasses Handoff (use its options)"
                )
            inherited = _inherited_private(bases) - _private_members(cls_or_module, stores=False)
            found += [
                f"{_where(module, node)}: {ast.unparse(node)} (inherited from the core)"
                for node in ast.walk(cls_or_module)
                if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr in inherited
            ]
            continue
        # the module's own classes may share a private name with the core's
        own = set().union(
            *(_private_members(c) for c in ast.walk(module.tree) if isinstance(c, ast.ClassDef))
        )
        found += [
            f"{_where(module, node)}: {ast.unparse(node)}"
            for node in ast.walk(cls_or_module)
            if isinstance(node, ast.Attribute)
            and node.attr in CORE_PRIVATE - own
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and (module.name, ast.unparse(node)) not in NOT_THE_CORES
        ]
    assert not found, "the core's internals touched outside the core:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "module", [m for m in MODULES if m.name != "bridges._backend"], ids=lambda m: m.name
)
def test_only_the_backend_module_asks_which_libraries_are_loaded(module: Module) -> None:
    """``sys.modules`` lookups ("is trio imported?"), asyncio's private calls and setting
    sniffio's library live in ``_backend.py``; the rest asks it (``loaded()``,
    ``under_trio()``, ``loop_kind()``, ``name_asyncio_in_loop_callback()``)."""
    found = [
        f"{_where(module, node)}: {ast.unparse(node)}"
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (
            (node.value.id == "sys" and node.attr == "modules")
            or (node.value.id == "asyncio" and _is_private(node.attr))
            # telling sniffio which library runs is backend knowledge too
            or (node.value.id == "sniffio" and node.attr == "current_async_library_cvar")
        )
    ]
    assert not found, "backend knowledge outside _backend.py:\n" + "\n".join(found)


def _module_level_imports(module: Module) -> set[str]:
    """The bridges modules ``module`` imports when it is imported (not in functions or
    ``if TYPE_CHECKING``)."""
    names = {m.name for m in MODULES}
    found: set[str] = set()
    for node in module.tree.body:
        if isinstance(node, ast.ImportFrom):
            source = module.resolve(node)
            for a in node.names:
                if f"{source}.{a.name}" in names:
                    found.add(f"{source}.{a.name}")
                elif source in names:
                    found.add(source)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in names}
    found.discard(module.name)
    return found


def test_the_import_picture_has_no_cycle() -> None:
    graph = {m.name: _module_level_imports(m) for m in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            # a package imported for one of its modules is that module's parent, not a cycle
            if not dep.startswith(name + "."):
                visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
