"""The core never imports Textual; the headless CLI imports it only to open the app; no module
of the package imports itself through others (no import cycles); nothing waits with
``asyncio.wait_for``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    return set(out.split())


def test_core_engine_does_not_import_textual():
    mods = _modules_after("import evopilot.core.engine")
    assert "textual" not in mods and not any(m.startswith("evopilot.tui") for m in mods)


def test_cli_does_not_import_textual():
    assert "textual" not in _modules_after("import evopilot.tui.cli")


def test_no_core_module_imports_tui_or_textual():
    offenders = subprocess.run(["git", "grep", "-nE", r"^\s*(from|import) (textual|tui|evopilot\.tui)\b", "--", "core"],
                               capture_output=True, text=True, cwd=REPO).stdout
    assert offenders == ""


def test_nothing_waits_with_asyncio_wait_for():
    """Python 3.11's wait_for loses a cancellation that comes as the awaited thing finishes
    (see core/waits.py): a loop stopped by cancelling it can run on for ever."""
    found = []
    for path in sorted([*(REPO / "core").rglob("*.py"), *(REPO / "tui").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr == "wait_for"
                    and isinstance(node.value, ast.Name) and node.value.id == "asyncio") or (
                    isinstance(node, ast.ImportFrom) and node.module == "asyncio"
                    and any(a.name == "wait_for" for a in node.names)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


PACKAGES = {"core": "evopilot.core", "tui": "evopilot.tui"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_level_imports(tree: ast.Module, module: str, is_package: bool):
    """Imported module names of the statements run at import time (``if TYPE_CHECKING:`` blocks
    count: a cycle through them is still a cycle of the design), not those inside functions."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            yield from ((a.name, None) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield from ((base, a.name) for a in node.names)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for top in PACKAGES for p in (REPO / top).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for base, name in _module_level_imports(tree, module, path.name == "__init__.py"):
            target = f"{base}.{name}" if name and f"{base}.{name}" in files else base
            if target in files and target != module:
                graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_find_cycle_names_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def by_subpackage(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between subpackages (``core.hosts``, ``core.jobs``, ``tui.screens``; a module
    directly in ``core`` or ``tui`` stands for itself)."""

    def node(m: str) -> str:
        return ".".join(m.split(".")[:3])

    out: dict[str, set[str]] = {}
    for m, targets in graph.items():
        out.setdefault(node(m), set()).update(node(t) for t in targets if node(t) != node(m))
    return out


def test_no_import_cycles():
    graph = import_graph()
    assert "evopilot.core.jobs.scheduler" in graph["evopilot.core.engine"]  # the graph is real
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle)
    cycle = find_cycle(by_subpackage(graph))
    assert cycle is None, "import cycle between subpackages: " + " -> ".join(cycle)


FACADE = {
    "evopilot.core.engine",  # the facade itself
    "evopilot.core.models", "evopilot.core.errors", "evopilot.core.events",  # what it takes and gives
    "evopilot.core.config", "evopilot.core.locations",  # what opening it needs
    "evopilot.core.bindings",  # the key table, which the config checks [keys] against
    "evopilot.core.quoting",  # the one place shell words are quoted and split (typed arguments)
    "evopilot.core.formatting",  # how its data reads as text
    "evopilot.core.status",  # the job statuses, without the models (start-up time)
    # `jobs --json` when nothing needs reconciling: read-only, without the engine (start-up time)
    "evopilot.core.jobs.listing",
}


def _runtime_imports(tree: ast.Module, modules: set[str]):
    """Every import, in functions too, except type-only ones under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from (f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                        for a in node.names)
        stack.extend(ast.iter_child_nodes(node))


def test_tui_reaches_core_only_through_the_facade():
    """tui/ (the app and the CLI) uses the engine and the types it speaks in; a service module
    (jobs, hosts, analysis, db) imported anywhere there is a way around the facade."""
    core = {m for m in import_graph() if m.startswith("evopilot.core")}
    assert FACADE <= core  # every name above is a real module
    around = sorted(
        f"{path.relative_to(REPO)}: {name}"
        for path in (REPO / "tui").rglob("*.py")
        for name in _runtime_imports(ast.parse(path.read_text(encoding="utf-8")), core)
        if name in core and name not in FACADE
    )
    assert around == []
