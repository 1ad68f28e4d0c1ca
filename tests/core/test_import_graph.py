"""The package's import graph has no cycles, function-level imports included.

A cycle hidden behind a function-level import still ties the modules together (neither can be understood, moved
or tested alone), so every `import` and `from … import` of a project module counts, wherever it stands. A lazy
re-export (a package `__getattr__` mapping names to submodules) is followed too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ifguide_cli

PACKAGE = Path(ifguide_cli.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (a module, or the package holding an attribute)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _lazy_exports(tree: ast.Module, package: str) -> set[str]:
    """Submodules a package's `_EXPORTS = {"Name": "submodule", ...}` table re-exports lazily (PEP 562)."""
    for node in tree.body:
        exports = isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
        if exports and isinstance(node.value, ast.Dict):
            return {f"{package}.{v.value}" for v in node.value.values if isinstance(v, ast.Constant)}
    return set()


def _edges(module: str, file: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(file.read_text())
    names: set[str] = _lazy_exports(tree, module) if file.name == "__init__.py" else set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ifguide_cli"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("ifguide_cli"))
    targets = {_target(n, modules) for n in names}
    return {t for t in targets if t is not None and t != module and not module.startswith(t + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycles():
    modules = _modules()
    graph = {m: _edges(m, f, modules) for m, f in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
