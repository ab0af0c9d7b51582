"""The code's shape, checked: layers import only downward, no import circle (lazy imports
included), no package module over 500 lines, no function over 80 (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "training", "serving", "inmarket")  # lowest layer first
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _modules(root)
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle() -> None:
    assert import_circles(import_graph()) == []


def test_names_are_imported_from_the_module_that_holds_them() -> None:
    """``from training import TrainJob`` goes through the package's lazy ``__all__``: the
    import graph above would not see which module it reaches, so the project never does it."""
    modules = _modules()
    through_package = sorted(
        f"{name}: from {node.module} import {alias.name}"
        for name, path in modules.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module in ("features", "training", "serving")
        for alias in node.names
        if f"{node.module}.{alias.name}" not in modules
    )
    assert through_package == []


def test_layers_import_only_downward() -> None:
    rank = {package: i for i, package in enumerate(PACKAGES)}
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for target in targets
        if rank[target.split(".")[0]] > rank[name.split(".")[0]]
    )
    assert upward == []


def test_no_module_over_the_limit() -> None:
    long = {
        name: lines
        for name, path in _modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_over_the_limit() -> None:
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert long == {}


@pytest.mark.parametrize(
    ("files", "circles"),
    [
        (
            {"a.py": "from features import b\n", "b.py": "def f():\n    import features.a\n"},
            [["features.a", "features.b"]],
        ),
        ({"a.py": "from features.b import x\n", "b.py": "x = 1\n"}, []),
        (
            {"a.py": "from . import b\n", "b.py": "from .a import y\n"},
            [["features.a", "features.b"]],
        ),
    ],
)
def test_a_circle_is_found_lazy_or_relative(
    tmp_path: Path, files: dict[str, str], circles: list[list[str]]
) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    for name, text in files.items():
        (tmp_path / "features" / name).write_text(text, encoding="utf-8")
    assert import_circles(import_graph(tmp_path)) == circles


@pytest.mark.parametrize("package", ["features", "training", "serving"])
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert missing == []
    with pytest.raises(AttributeError, match="no attribute 'nothing_of_the_kind'"):
        _ = module.nothing_of_the_kind
