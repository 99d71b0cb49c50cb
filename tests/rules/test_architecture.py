"""The package's shape: which of its modules import which.

Read from the source (every ``import`` statement, inside functions and under
``TYPE_CHECKING`` included), so that a lazy import counts as an import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import leadsq_async

PACKAGE = Path(leadsq_async.__file__).parent
NAME = "leadsq_async"


def module_name(path: Path) -> str:
    parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, by any statement anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from .x import y` imports the module x.y when there is one, else x.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of modules larger than one (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_every_import_statement() -> None:
    graph = import_graph()
    # A plain import, a relative one, one of a submodule, and a lazy one all count.
    assert f"{NAME}._limits" in graph[f"{NAME}._ratelimit"]
    assert f"{NAME}._session" in graph[NAME]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Loops known and owned elsewhere, each to be removed by its owner (issue 17 item 1): the
# Lead record, which reuses the row records' machinery while their converter builds
# Lead's hooks (the feeds'). Nothing else may join this list.
LOOPS_BEING_REMOVED: list[list[str]] = []


def test_no_module_of_the_package_imports_itself_back() -> None:
    assert [loop for loop in cycles(import_graph()) if loop not in LOOPS_BEING_REMOVED] == []


def test_errors_is_a_leaf() -> None:
    assert import_graph()[f"{NAME}._errors"] == set()


def test_limits_imports_only_leaves() -> None:
    assert import_graph()[f"{NAME}._limits"] <= {f"{NAME}._checks", f"{NAME}._errors"}
    assert import_graph()[f"{NAME}._checks"] == set()


# What `import leadsq_async` leaves for first use (issue 17 item 10): the account-wide feeds
# with `Lead`, and the event classes, built only while something listens.
DEFERRED = [
    f"{NAME}._events",
    f"{NAME}._feed_walk",
    f"{NAME}._feeds",
    f"{NAME}._leads",
    f"{NAME}._windows",
]
LOADED_AFTER_IMPORT = """
import json, sys
import leadsq_async as lsq
before = sorted(name for name in sys.modules if name.startswith("leadsq_async."))
lsq.Lead, lsq.PageFetched
from leadsq_async import _feeds
after = sorted(name for name in sys.modules if name.startswith("leadsq_async."))
print(json.dumps([before, after, lsq.PageFetched.__module__, lsq.Lead.__module__]))
"""


def test_the_feeds_and_the_events_are_imported_at_first_use() -> None:
    printed = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER_IMPORT], capture_output=True, text=True, check=True
    ).stdout
    before, after, event_module, lead_module = json.loads(printed)
    assert set(DEFERRED).isdisjoint(before)
    assert set(DEFERRED) <= set(after)
    assert (event_module, lead_module) == (f"{NAME}._events", f"{NAME}._leads")
