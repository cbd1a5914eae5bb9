"""The interfaces of corruptions, metrics, cifar10c, data and cachefiles: accurate ``__all__`` and an
acyclic import graph (imports inside functions included)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pushpull_lite"
MODULES = ("corruptions", "metrics", "cifar10c", "data", "cachefiles")
#: public names deliberately left out of ``__all__``: kept importable for old callers only
LEGACY = {"metrics": {"corruption_errors", "SEVERITIES"}}


def _top_level_public_names(module: str) -> set[str]:
    """Names a module defines at top level (functions, classes, assignments), without leading underscore."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", MODULES)
def test_all_is_accurate(module):
    mod = importlib.import_module(f"pushpull_lite.{module}")
    exported = set(mod.__all__)
    assert len(exported) == len(mod.__all__), "a name appears twice in __all__"
    assert all(hasattr(mod, name) for name in exported)
    assert _top_level_public_names(module) - LEGACY.get(module, set()) == exported


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports anywhere (module level or inside a function)."""
    known = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pushpull_lite."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pushpull_lite.")}
    return found & known


def test_no_import_cycle_through_these_modules():
    graph = {p.stem: _imports(p.stem) for p in PACKAGE.glob("*.py")}

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    on_cycle = [m for m in MODULES if m in reachable(m)]
    assert not on_cycle, f"import cycle through {on_cycle}: {[(m, sorted(graph[m])) for m in on_cycle]}"
    assert "cifar10c" not in reachable("data")  # data is the lower layer: cifar10c uses it, never back
