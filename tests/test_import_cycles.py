"""The import graph of the medssl package: no cycles between modules, and the import rules of
the rooms of the house (platform < modalities < pipelines; synthetic stands alone).

Only imports that run when a module is imported count: those at module level (also inside
module-level `if`/`try`/`with` and class bodies), not those inside functions or under
`if TYPE_CHECKING:`. `import medssl.a.b` is an edge to `medssl.a.b` only, not to the package
`medssl.a` around it, so a package `__init__` that re-exports its submodules is no cycle; an
edge to a package means its `__init__.py`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "medssl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run on import: descends into if/try/with/class, not into functions."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_time_statements(block)
            for handler in node.handlers:
                yield from _import_time_statements(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time_statements(node.body)


def _imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The medssl modules `name` imports at import time."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in _import_time_statements(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {t for t in targets if t in known and t != name}


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imported_modules(name, path, known) for name, path in modules.items()}


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_inside(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the first module of a component, for the message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    return component


def test_the_import_graph_sees_the_whole_package() -> None:
    graph = _import_graph()
    assert "medssl.platform.config" in graph
    assert "medssl.modalities.volume.readers" in graph["medssl.modalities.volume.validate"]


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    cycles = [
        " -> ".join(_cycle_inside(c, graph))
        for c in _strongly_connected(graph)
        if len(c) > 1
    ]
    assert not cycles, "import cycles between medssl modules:\n" + "\n".join(sorted(cycles))


def _in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("medssl.platform", ("medssl.modalities", "medssl.pipelines", "medssl.synthetic")),
        ("medssl.modalities", ("medssl.pipelines",)),
        ("medssl.synthetic", ("medssl.modalities", "medssl.pipelines")),
    ],
)
def test_rooms_import_only_the_rooms_below_them(room: str, forbidden: tuple[str, ...]) -> None:
    graph = _import_graph()
    breaches = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _in_room(module, room)
        for target in targets
        if any(_in_room(target, other) for other in forbidden)
    )
    assert not breaches, f"{room} breaks the import rules of the rooms:\n" + "\n".join(breaches)


def test_nothing_imports_the_cli() -> None:
    graph = _import_graph()
    importers = sorted(m for m, targets in graph.items() if "medssl.cli" in targets)
    assert not importers, f"medssl.cli is imported by {importers}; nothing may import it"
