"""Every chapter runs to its end in every profile: a smoke run of each chapter in medium, full and paper.

CI executes the chapters in `quick` only (nbval). The other profiles change subset sizes, held-out splits,
seeds and budgets, and a chapter can crash there without anyone seeing it (chapter 6 once calibrated its
detector on an empty set in every profile but `quick`). A smoke run (``PUSHPULL_SMOKE``, see
:mod:`pushpull_lite.config`) keeps a profile's logic and shrinks its cost: every data set and image count
divided by the smoke factor ("all images" stays "all images"), one epoch of two small batches per model,
models and results in their own part of the cache. Its numbers mean nothing; that it reaches the end of
every chapter is the test. The chapters run as ``jupyter-book build`` runs them (nbclient, cells tagged
``skip-execution`` skipped).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pushpull_lite import config

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))
SMOKE_FACTOR = "500"  # 20 test images, 100 training images: room for a held-out split of 10
# `paper` differs from `full` in its seeds (3 against 1) and its schedules, which a smoke run caps at one
# epoch; these chapters train one seed (or none), so their `paper` run would repeat their `full` run
ONE_SEED = {"01_biology", "03b_paper_models", "05_feedback", "06_amsdn", "07_evaluation"}
# chapter 1 does the same work in every profile (once, in medium, is enough); chapter 8's paper run would
# combine medium's three seeds with full's "all images", both checked already (and it is the slowest)
SKIP = {("01_biology", "full"), ("08_leaderboard", "paper")}
RUNS = [
    (c, p)
    for c in CHAPTERS
    for p in ("medium", "full", "paper")
    if not (p == "paper" and c in ONE_SEED) and (c, p) not in SKIP
]
SLIDER_REPEATS = 20  # tests/test_headless.py: a section with sliders runs this often without a stall
# A smoke run is mostly single-threaded Python (kernel start, imports, figures): two at a time, each with
# one torch thread, fill two cores and halve the wall time. Runs that train the same smoke model meet at
# the model cache's entry lock, so one trains and the other loads.
WORKERS = 2


def slider_sections(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the cells of every sliders section: the cell tagged skip-execution and the code cell
    before it (the static figure)."""
    tagged = [i for i, c in enumerate(nb.cells) if "skip-execution" in c.metadata.get("tags", [])]
    figures = [max(j for j in range(i) if nb.cells[j].cell_type == "code") for i in tagged]
    return sorted(tagged + figures)


def smoke_run(chapter: str, profile: str, repeat_sliders: int = 0) -> nbformat.NotebookNode:
    """Execute ``book/<chapter>.ipynb`` as a smoke run of ``profile`` (nbclient skips the cells tagged
    skip-execution, as the book build does), then its sliders sections ``repeat_sliders`` more times in
    the same kernel; returns the executed notebook. A stall raises nbclient's CellTimeoutError."""
    nb = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
    env = dict(os.environ, PUSHPULL_PROFILE=profile, PUSHPULL_SMOKE=SMOKE_FACTOR)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # see WORKERS
    env.pop("MPLBACKEND", None)  # figures through the inline backend, as in a reader's build
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "book")}}
    )
    with client.setup_kernel(env=env):  # the kernel's environment (NotebookClient(env=...) is ignored)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        for _ in range(repeat_sliders):
            for index in slider_sections(nb):
                client.execute_cell(nb.cells[index], index)
    return nb


def _run(chapter: str, profile: str) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
    # chapters 2-4 repeat their sliders sections once (in medium); chapter 1's are tests/test_headless.py's
    sliders = bool(slider_sections(nb)) and profile == "medium" and not chapter.startswith("01")
    return smoke_run(chapter, profile, repeat_sliders=SLIDER_REPEATS if sliders else 0)


@pytest.fixture(scope="module")
def smoke_runs(request) -> dict[tuple[str, str], Future]:
    """The selected smoke runs, started WORKERS at a time in the order the tests ask for them."""
    selected = [
        (item.callspec.params["chapter"], item.callspec.params["profile"])
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_chapter_runs_to_its_end"
    ]
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="smoke")
    futures = {run: pool.submit(_run, *run) for run in selected}
    yield futures
    for future in futures.values():  # an interrupted session starts nothing new
        future.cancel()
    pool.shutdown(wait=True)


@pytest.mark.parametrize("chapter, profile", RUNS)
def test_chapter_runs_to_its_end(chapter, profile, smoke_runs):
    nb = smoke_runs[(chapter, profile)].result()  # re-raises the run's error (a failing cell, a stall)
    text = "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "SMOKE RUN" in text, "every chapter prints config.describe(), which labels a smoke run"
    assert config.PROFILES[profile].description not in text  # the real profile's label never appears
