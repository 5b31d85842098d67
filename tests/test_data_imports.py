"""``neuronas.data`` has no import cycle, counting the imports made inside functions too, and the
registry imports no loader: a loader may import the registry, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import neuronas

PACKAGE = Path(neuronas.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if sub in files:
                        edges.add(sub)
                    elif node.module in files:
                        edges.add(node.module)
        graph[name] = edges - {name}
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycle_through_any_data_module() -> None:
    graph = _graph()
    data_modules = sorted(m for m in graph if m.startswith("neuronas.data"))
    assert "neuronas.data.registry" in data_modules and "neuronas.data.flow" in data_modules
    cycles = [c for m in data_modules if (c := _cycle_through(graph, m)) is not None]
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_registry_imports_no_loader() -> None:
    graph = _graph()
    loaders = {
        "neuronas.data.digits",
        "neuronas.data.flow",
        "neuronas.data.tonic_sets",
        "neuronas.data.framing",
        "neuronas.data.loading",
    }
    assert graph["neuronas.data.registry"] & loaders == set()
    # and each loader does import the registry or the shared types (the edge that used to loop)
    assert "neuronas.data.registry" in graph["neuronas.data.digits"]
    assert "neuronas.data.info" in graph["neuronas.data.tonic_sets"]
