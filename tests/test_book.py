"""The book's structure: clean notebooks, install cells and badges from _config.yml, the README's commands."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("sync_book", ROOT / "tools" / "sync_book.py")
sync_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync_book)


def test_every_chapter_is_clean_and_has_the_derived_install_cell():
    assert sync_book.sync(ROOT, check=True) == [], "run `python tools/sync_book.py`"


def test_notebooks_have_no_outputs_counts_or_widget_state():
    for path in ROOT.glob("book/**/*.ipynb"):
        nb = json.loads(path.read_text())
        assert "widgets" not in nb.get("metadata", {}), path
        for cell in nb["cells"]:
            assert not cell.get("outputs") and not cell.get("execution_count"), path


def test_every_notebook_is_in_the_toc():
    listed = set(sync_book.chapters(ROOT))
    for path in ROOT.glob("book/*.ipynb"):
        assert path in listed, f"{path.name} is not in _toc.yml"


def test_install_cell_installs_only_when_missing_and_keeps_torch():
    url, _, _ = sync_book.repository(ROOT)
    source = sync_book.install_cell_source(url)
    assert 'find_spec("pushpull_lite") is None' in source and f"git+{url}" in source
    assert "torch" not in source.split("subprocess.run")[1], "the install must not ask for torch"


def test_repository_url_is_set_in_one_place():
    url, _, _ = sync_book.repository(ROOT)
    for name in ["README.md", "CITATION.cff", "requirements.txt", "pyproject.toml", "_toc.yml"]:
        text = (ROOT / name).read_text()
        # derived copies are written by the sync tool; nothing else spells the address
        occurrences = text.count(url.split("//")[1])
        assert occurrences == (1 if name == "CITATION.cff" else 0), name


def test_book_config_executes_and_fails_on_errors():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] in ("cache", "force", "auto")
    assert cfg["execute"]["timeout"] >= 600 and cfg["execute"]["allow_errors"] is False
    assert cfg["only_build_toc_files"] is True
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["html"]["use_repository_button"] and cfg["html"]["use_issues_button"]
    assert "references.bib" in cfg["bibtex_bibfiles"]


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    # torchattacks (chapter 7's cross-check, AutoAttack's attacks in chapters 5, 6 and 8) pins an old
    # requests that Sphinx cannot use; its code never imports requests, so it is installed without its
    # dependencies
    install = "pip install -r requirements.txt && pip install --no-deps torchattacks==3.5.1"
    build = f"{install} && jupyter-book build ."
    tests = f"{install} && python -m pytest"
    assert build in readme and tests in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "# 2\\. run the tests" in ci
    lines = readme.splitlines()
    assert (
        lines[lines.index("# 2. run the tests: unit tests and every chapter notebook (nbval)") + 1] == tests
    )


def test_requirements_pin_torch_and_the_package_stays_loose():
    req = (ROOT / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in req and "torchvision==0.29.1" in req and "-e ." in req
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.1"' in pyproject and "torch==" not in pyproject


def test_every_notebook_cell_has_a_unique_id():
    # nbformat 4.5 requires cell ids; a cell inserted by a script without one makes every run warn,
    # and later nbformat versions refuse the notebook
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        ids = [cell.get("id") for cell in nb["cells"]]
        assert None not in ids, f"{path.name}: cells {[i for i, c in enumerate(ids) if c is None]} have no id"
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"
