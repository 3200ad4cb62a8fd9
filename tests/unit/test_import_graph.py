"""The package's modules import one another without a cycle, lazy imports included; the
composition root is imported by the process alone; the pure layers never reach the API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "lasched"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_imports() -> dict[str, set[str]]:
    """Module -> every module it imports anywhere (TYPE_CHECKING and functions too)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    imports: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        imports[name] = deps - {name}
    return imports


def import_graph() -> dict[str, set[str]]:
    """Module -> the lasched modules it imports anywhere (TYPE_CHECKING and functions too)."""
    imports = all_imports()
    return {name: {d for d in deps if d in imports} for name, deps in imports.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_lasched() -> None:
    """No two lasched modules import each other, directly or around a loop."""
    assert cycles(import_graph()) == []


def test_only_the_process_imports_the_composition_root() -> None:
    """The cycle, the handlers, explain and the HTTP side take their parts, never the Scheduler."""
    importers = {m for m, deps in import_graph().items() if "lasched.scheduler" in deps}
    assert importers <= {"lasched.app"}


PURE = ("lasched.model", "lasched.queue", "lasched.cache", "lasched.framework", "lasched.plugins")
API = ("lasched.kube", "kubernetes_asyncio", "aiohttp")


def test_the_pure_layers_never_reach_the_api() -> None:
    """model, queue, cache, framework and plugins import nothing that talks to the API."""
    found = {
        (module, dep)
        for module, deps in all_imports().items()
        if module.startswith(PURE)
        for dep in deps
        if dep.startswith(API)
    }
    assert found == set()


def top_level_imports(path: Path) -> set[str]:
    """What a module imports when it is loaded (not inside functions)."""
    deps: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            deps.add(node.module)
        elif isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names)
    return deps


def test_the_scheduler_never_loads_the_developer_tools() -> None:
    """The dev cluster, the demo and plots are lasched-dev: no lasched module loads them,
    and only the CLI's developer commands import them, when run."""
    loads = {
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if any(d.startswith("lasched_dev") for d in top_level_imports(p))
    }
    assert loads == set()
    lazy = {
        m for m, deps in all_imports().items() if any(d.startswith("lasched_dev") for d in deps)
    }
    assert lazy <= {"lasched.cli", "lasched.cli_explain"}
    assert not (PACKAGE / "devcluster").exists()


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
    ids=["two", "three-with-a-tail", "none"],
)
def test_the_cycle_finder_finds_cycles(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    """The check itself can fail: it reports every loop it is shown."""
    assert cycles(graph) == expected
