"""The shape of exporter/: its import graph has no cycle, and only a kind's own module and the registry name
a collection kind (the store, the collector, the landing page, the scheduler and the command iterate the
registry)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from helpers import REPO

from exporter import registry

PACKAGE = REPO / "exporter"
# The version 1 state file's key for all its entries (store.py reads it to migrate such a file).
ALLOWED_STRINGS = {("exporter.store", "reports")}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, tree: ast.Module, known: set[str]) -> Iterator[str]:
    """The exporter modules `tree` imports anywhere in it (at the top, in a function, for type checking)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: a relative import (exporter/ imports by absolute names)"
            base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}"
                elif base in known and base != "exporter":  # the package's __init__ holds only the version
                    yield base


def test_the_import_graph_has_no_cycle() -> None:
    trees = modules()
    graph = {name: set(imported(name, tree, set(trees))) - {name} for name, tree in trees.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " → ".join([*path[path.index(name):], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_store_imports_no_collection_and_nothing_downstream() -> None:
    trees = modules()
    imports = set(imported("exporter.store", trees["exporter.store"], set(trees)))
    assert imports <= {"exporter.collection", "exporter.config", "exporter.errors", "exporter.files",
                       "exporter.scrub"}, imports


def test_no_module_but_a_kind_and_the_registry_names_a_kind() -> None:
    kind_modules = {type(kind).__module__ for kind in registry.KINDS}
    identifiers: set[str] = set()
    words: set[str] = set()
    for kind in registry.KINDS:
        words |= {kind.name, kind.section}
        identifiers |= {kind.settings_type.__name__, kind.run_type.__name__, type(kind).__name__,
                        kind.settings_type.result_type.__name__}
    found: list[str] = []
    for name, tree in modules().items():
        if name in kind_modules or name == registry.__name__ or name.startswith("exporter.simulator"):
            continue  # the simulator is N-central's stand-in: its customers are N-central's, not a kind
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', '?')}"
            if (isinstance(node, ast.ImportFrom) and (
                node.module in kind_modules or any(f"{node.module}.{a.name}" in kind_modules for a in node.names)
            )) or (isinstance(node, ast.Import) and any(alias.name in kind_modules for alias in node.names)):
                found.append(f"{where} imports a kind's module")
            elif isinstance(node, ast.Name) and node.id in identifiers:
                found.append(f"{where} names {node.id}")
            elif isinstance(node, ast.Attribute) and (node.attr in identifiers or node.attr in words):
                found.append(f"{where} names .{node.attr}")
            elif isinstance(node, ast.alias) and node.name in identifiers:
                found.append(f"{where} imports {node.name}")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words
                  and (name, node.value) not in ALLOWED_STRINGS):
                found.append(f"{where} names {node.value!r}")
    assert not found, "\n".join(found)


def test_no_kind_imports_another_kind() -> None:
    """What two kinds share (the device list, paged calls) lives in a module of its own, so each kind can be
    read, changed or dropped alone."""
    trees = modules()
    kind_modules = {type(kind).__module__ for kind in registry.KINDS}
    crossings = {(name, other) for name in kind_modules
                 for other in imported(name, trees[name], set(trees)) if other in kind_modules - {name}}
    assert not crossings, crossings
