"""No cell of the book can stall a headless execution (jupyter-book build, nbval, nbclient).

A cell that creates ipywidgets can stall a headless run until the cell timeout (jupyter/nbclient#312;
seen here in 4 of 9 fresh builds, at chapter 1's sliders). The book therefore puts every widget in a cell
tagged ``skip-execution``, which jupyter-book, nbclient and (through conftest.py) nbval skip, and draws the
same figure in an ordinary cell before it. These tests check that rule statically, and execute the
widget-bearing chapters headless many times with a short cell timeout.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
SKIP = "skip-execution"
WIDGET_CODE = re.compile(r"\bipywidgets\b|explore\.sliders\(|\binteractive\(|\binteract\(")
REPEATS = 20  # the bar: a stall seen in 2 of 14 runs is caught with probability 1 - (12/14)^20 > 0.95
CELL_TIMEOUT = 120  # seconds; a stall otherwise waits for the build's 1800 s


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _code(cell: dict) -> str:
    return "".join(cell["source"])


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def widget_chapters() -> list[Path]:
    return [p for p in CHAPTERS if any(SKIP in _tags(c) for c in _cells(p))]


def test_every_widget_cell_is_tagged_and_every_tagged_cell_is_a_widget_cell():
    found = 0
    for path in CHAPTERS:
        for i, cell in enumerate(_cells(path)):
            if cell["cell_type"] != "code":
                continue
            widget = bool(WIDGET_CODE.search(_code(cell)))
            tagged = SKIP in _tags(cell)
            problem = "creates a widget but is not tagged" if widget else "is tagged but creates no widget"
            assert widget == tagged, (
                f"{path.name} cell {i} {problem}: only the cells that call explore.sliders skip execution"
            )
            found += widget
    assert found >= 4, "chapters 1-4 each offer sliders"


def test_every_widget_has_a_static_figure_before_it():
    # the HTML book shows only what the build executed: the figure the sliders redraw must be drawn before
    for path in widget_chapters():
        executed = ""
        for i, cell in enumerate(_cells(path)):
            if cell["cell_type"] != "code":
                continue
            if SKIP in _tags(cell):
                match = re.search(r"explore\.sliders\(\s*(?:lambda[^:]*:\s*)?([\w.]+)", _code(cell))
                assert match, f"{path.name} cell {i}: expected explore.sliders(draw, ...) or a lambda"
                assert match.group(1) + "(" in executed, (
                    f"{path.name} cell {i}: no executed cell before the sliders calls {match.group(1)}"
                )
            else:
                executed += _code(cell)


def test_only_the_explore_module_imports_widgets_and_no_progress_bar_is_a_widget():
    for path in sorted((ROOT / "pushpull_lite").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert not {"tqdm.auto", "tqdm.notebook", "tqdm.autonotebook"} & imported, (
            f"{path.name}: tqdm.auto shows a widget progress bar in Jupyter; use config.progress"
        )
        if path.name != "explore.py":
            assert "ipywidgets" not in imported, f"{path.name} imports ipywidgets"
    for path in CHAPTERS:
        for cell in _cells(path):
            code = _code(cell)
            assert "tqdm.auto" not in code and "tqdm.notebook" not in code, path.name


def test_nbval_skips_the_cells_the_build_skips():
    # conftest.py deselects the tagged cells; collect chapter 1 as the test command does
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "book/01_biology.ipynb",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tagged = [i for i, c in enumerate(_cells(ROOT / "book" / "01_biology.ipynb")) if SKIP in _tags(c)]
    assert tagged and "deselected" in out.stdout
    for i in tagged:
        assert f"::Cell {i}\n" not in out.stdout + "\n", f"nbval would execute the widget cell {i}"


def test_chapter_1_runs_headless_every_time():
    # the chapter whose sliders stalled 4 of 9 builds: all its cells, as jupyter-book runs them, REPEATS
    # times in one kernel (chapters 2-4: tests/test_profiles.py repeats their sliders sections as often)
    nb = nbformat.read(ROOT / "book" / "01_biology.ipynb", as_version=4)
    env = dict(os.environ, PUSHPULL_PROFILE="quick")
    env.pop("MPLBACKEND", None)  # figures through the inline backend, as in a reader's build
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "book")}},
    )
    start = time.perf_counter()
    with client.setup_kernel(env=env):  # the kernel's environment (NotebookClient(env=...) is ignored)
        for _ in range(REPEATS):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)  # skips the tagged cells; raises CellTimeoutError on a stall
    assert any(out.get("output_type") == "display_data" for c in nb.cells for out in c.get("outputs", []))
    assert time.perf_counter() - start < REPEATS * CELL_TIMEOUT
