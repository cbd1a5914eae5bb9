"""The package's shape: every module declares ``__all__``, no import cycles (imports inside functions
count), no private names imported across modules, one place that counts correct predictions, and no
function defined in two notebooks."""

from __future__ import annotations

import ast
import importlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pushpull_lite"
MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module of the package, names imported from it) for every import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = [a.name for a in node.names]
            if node.level == 1 and not mod:  # from . import a, b
                out += [(n, []) for n in names]
            elif node.level == 1:  # from .a import x
                out.append((mod.split(".")[0], names))
            elif mod == "pushpull_lite":
                out += [(n, []) for n in names]
            elif mod.startswith("pushpull_lite."):
                out.append((mod.split(".")[1], names))
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("pushpull_lite.")]
    return out


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines at top level (functions, classes, assignments)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_every_module_declares_an_accurate_all(path):
    assert "__all__" in _top_level_names(path), f"{path.name} has no __all__"
    mod = importlib.import_module(f"pushpull_lite.{path.stem}")
    assert len(set(mod.__all__)) == len(mod.__all__), "a name appears twice in __all__"
    assert all(hasattr(mod, name) for name in mod.__all__)
    public = {n for n in _top_level_names(path) if not n.startswith("_")}
    assert public == set(mod.__all__), f"defined but not exported: {public - set(mod.__all__)}"


def test_no_import_cycles():
    graph = {
        p.stem: {m for m, _ in _imports(p) if (PACKAGE / f"{m}.py").exists()} - {p.stem} for p in MODULES
    }
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert "cifar10c" not in graph["data"]  # data is the lower layer: cifar10c uses it, never back


def test_no_private_names_imported_across_modules():
    private = [
        f"{p.name}: from {m} import {n}"
        for p in MODULES
        for m, names in _imports(p)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not private, private


def test_one_function_counts_correct_predictions():
    pattern = re.compile(r"argmax\((dim=)?1\)\s*[!=]=")
    found = [p.name for p in MODULES if pattern.search(p.read_text())]
    assert found == ["measure.py"], f"count right/wrong with measure.hits, not argmax(1) == y: {found}"


def test_no_function_is_defined_in_two_notebooks():
    defined: Counter[str] = Counter()
    where: dict[str, list[str]] = {}
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        names = set()
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                names |= set(re.findall(r"^\s*def (\w+)", "".join(cell["source"]), re.M))
        for n in names:
            defined[n] += 1
            where.setdefault(n, []).append(nb.stem)
    twice = {n: where[n] for n, k in defined.items() if k > 1}
    assert not twice, f"define these once in pushpull_lite and import them: {twice}"


def test_the_layout_in_the_package_docstring_is_the_import_order():
    """``pushpull_lite/__init__.py`` lists the modules bottom to top: each imports only earlier ones."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    order: list[str] = []
    for name in re.findall(r"``(\w+)``", doc.split("Layout", 1)[1]):
        if (PACKAGE / f"{name}.py").exists() and name not in order:
            order.append(name)
    assert sorted(order) == sorted(p.stem for p in MODULES), "every module is listed once"
    rank = {m: i for i, m in enumerate(order)}
    late = [
        f"{p.stem} imports {m}"
        for p in MODULES
        for m, _ in _imports(p)
        if m in rank and m != p.stem and rank[m] > rank[p.stem]
    ]
    assert not late, f"imports against the documented layout: {late}"


def test_every_module_has_a_section_in_the_api_reference():
    api = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"automodule:: pushpull_lite\.(\w+)", api))
    assert documented == {p.stem for p in MODULES}
