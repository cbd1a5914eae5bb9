"""Shared pytest settings for the unit tests and the notebooks (nbval)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # no screen in CI
# ...in this process only. The kernels that nbval and the book build start inherit the environment: with
# MPLBACKEND=Agg there they would draw no figures, and the pages checked in Chromium would have none.
os.environ.pop("MPLBACKEND", None)

ROOT = Path(__file__).resolve().parent

# Under CI a skipped test is a failure unless it needs something CI cannot have.
_ALLOWED_SKIP = re.compile(r"internet|network|online|\bGPU\b|CUDA", re.IGNORECASE)
_bad_skips: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skips_execution(item) -> bool:
    """An nbval cell tagged ``skip-execution``: the tag jupyter-book and nbclient honour (cells that show
    widgets, which can stall a headless run; see pushpull_lite.explore). nbval knows only its own tags."""
    cell = getattr(item, "cell", None)
    return cell is not None and "skip-execution" in cell.get("metadata", {}).get("tags", [])


def pytest_collection_modifyitems(session, config, items):
    # nbval executes a chapter as the book build does: without the cells tagged skip-execution
    skipped = [item for item in items if _skips_execution(item)]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not _skips_execution(item)]
    # The book build runs last: by then nbval has run every chapter and filled the model cache, so
    # `jupyter-book build .` (tests/test_browser.py) executes the chapters again but trains nothing.
    items.sort(key=lambda item: item.get_closest_marker("book_build") is not None)


# ------------------------------------------------------------ the book build reuses nbval's executions
# nbval executes every chapter; the book build (tests/test_browser.py) would execute them all again. It
# runs with execute_notebooks: cache, so each chapter nbval ran completely and without a failure is put
# into the build's jupyter-cache with nbval's outputs, as a first build would have put it there: the
# cache matches a notebook by its code cells, and the build renders those outputs instead of executing.
_nbval_runs: dict[Path, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    notebook = getattr(getattr(item, "parent", None), "nb", None)
    if getattr(item, "cell", None) is None or notebook is None:
        return  # not an nbval cell
    run = _nbval_runs.setdefault(Path(str(item.fspath)), {"outputs": {}, "failed": False, "seconds": 0.0})
    run["failed"] |= report.failed or report.skipped
    if report.when == "call" and report.passed:
        index = next(i for i, cell in enumerate(notebook.cells) if cell is item.cell)
        run["outputs"][index] = list(item.test_outputs or [])
        run["seconds"] += report.duration


def _prime_book_cache() -> list[str]:
    """Put every chapter nbval executed completely into ``_build/.jupyter_cache``; returns their names."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    primed = []
    cache = get_cache(str(ROOT / "_build" / ".jupyter_cache"))
    for path, run in sorted(_nbval_runs.items()):
        nb = nbformat.read(path, as_version=4)
        expected = {
            i
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and "skip-execution" not in cell.metadata.get("tags", [])
        }
        if run["failed"] or set(run["outputs"]) != expected:
            continue  # partly run (a -k selection) or failed: the build executes this chapter itself
        for i in expected:
            nb.cells[i].outputs = [nbformat.from_dict(out) for out in run["outputs"][i]]
        with warnings.catch_warnings():  # the chapters are committed without cell ids (nbformat 4.4)
            warnings.simplefilter("ignore", nbformat.validator.MissingIDFieldWarning)
            nbformat.validate(nb)
        bundle = CacheBundleIn(nb, str(path), data={"execution_seconds": run["seconds"]})
        cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
        primed.append(path.name)
    return primed


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("book_build") is None or not _nbval_runs:
        return
    if os.environ.get("PUSHPULL_BOOK_HTML"):
        return  # the tests check a book built elsewhere
    try:
        primed = _prime_book_cache()
        print(f"\nconftest.py: the book build takes nbval's outputs of {len(primed)} chapters: {primed}")
    except Exception as exc:  # an optimisation only: without it the build executes every chapter
        warnings.warn(f"could not hand nbval's executed chapters to the book build: {exc!r}", stacklevel=1)
    finally:
        _nbval_runs.clear()  # once per session


def pytest_runtest_logreport(report):
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not _ALLOWED_SKIP.search(reason):
            _bad_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter):
    if _bad_skips:
        terminalreporter.section("skips that fail under CI")
        for line in _bad_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session, exitstatus):
    if _bad_skips and session.exitstatus == 0:
        session.exitstatus = 1
