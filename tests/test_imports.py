"""The package's import graph: no cycles, and the library never imports the command line.

Every ``import`` / ``from ... import`` of a ``neuronas`` module in every module of the package
is read with ``ast`` (module level and inside functions alike; ``if TYPE_CHECKING:`` blocks are
left out, they never run), so a cycle hidden in a function-level import is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "neuronas"

#: known edges that close a cycle or break the layering today, each with who removes it.
#: Everything else in the graph is checked for real.
# edges allowed although they close a cycle or reach the CLI: none any more (the data
# registry imports no loader; the export uses ArchSpec.describe())
KNOWN: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append(child)
            todo.append(child)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the neuronas modules it imports (a name imported from a package counts as
    the submodule when it is one, else as the package)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            for t in targets:
                r = resolve(t) if t.split(".")[0] == "neuronas" else None
                if r is not None and r != m:
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in ts if (m, t) not in KNOWN} for m, ts in graph.items()}


def _cli_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    def is_cli(m: str) -> bool:
        return m in ("neuronas.cli", "neuronas.__main__") or m.startswith("neuronas._cli")

    return [(m, t) for m, ts in graph.items() if not is_cli(m) for t in sorted(ts) if is_cli(t)]


def test_the_graph_is_read() -> None:
    # guard against a walker that finds nothing (and so no cycle): known edges must show
    g = import_graph()
    assert "neuronas.hardware.cost" in g["neuronas.hardware"]
    assert "neuronas.search.lifecycle" in g["neuronas.search.local"]  # a function-level one too
    assert "neuronas.search.objective" in g["neuronas.search.lifecycle"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_besides_the_known_edges() -> None:
    found = cycles(_without_known(import_graph()))
    assert not found, f"import cycles: {found}"


def test_the_library_never_imports_the_command_line() -> None:
    bad = [e for e in _cli_imports(import_graph()) if e not in KNOWN]
    assert not bad, f"library modules importing the CLI: {bad}"


def test_no_import_cycles_at_all() -> None:
    g = import_graph()
    assert not cycles(g) and not _cli_imports(g)
