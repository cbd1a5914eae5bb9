"""Shared pytest settings for the unit tests and the notebooks (nbval)."""

from __future__ import annotations

import os
import re

import matplotlib

matplotlib.use("Agg")  # no screen in CI

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
