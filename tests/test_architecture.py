"""The package's shape: dependencies point one way, and nobody reaches into another's privates.

The imports are read from the source with :mod:`ast`, so every import counts:
module level, inside functions, and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "closeloop"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``from … import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, None))
                else:
                    found.append((source, alias.name))
    return [(name, item) for name, item in found if name.split(".")[0] == "closeloop"]


def _graph() -> dict[str, set[str]]:
    return {
        module: {target for target, _ in _imports(module) if target in MODULES and target != module}
        for module in MODULES
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

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
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _is_private_module(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def test_the_modules_are_found() -> None:
    """The scan sees the package (so the checks below cannot pass on an empty list)."""
    assert {"closeloop.loop", "closeloop.service", "closeloop.storage.base"} <= set(MODULES)
    assert "closeloop.service" in _graph()["closeloop.loop"]


def test_no_import_cycles() -> None:
    """No two modules of the package import each other, directly or through others."""
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The cycle check itself reports a cycle when there is one."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_imported_across_modules(module: str) -> None:
    """A module imports no ``_private`` name from another module (private modules excepted)."""
    offending = [
        f"{source}.{name}"
        for source, name in _imports(module)
        if name is not None and name.startswith("_") and not name.startswith("__")
        and source != module and not _is_private_module(source)
    ]
    assert offending == []


def test_nothing_below_the_facade_imports_it() -> None:
    """Only the package's entry points (``closeloop``, the CLI) import ``closeloop.loop``."""
    allowed = {"closeloop", "closeloop.loop"}
    importers = {
        module for module, targets in _graph().items()
        if "closeloop.loop" in targets and not module.startswith("closeloop.cli")
    }
    assert importers <= allowed
