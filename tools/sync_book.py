"""Keep the book's derived files in step with ``_config.yml`` and clean for git.

- writes the Colab install cell (the first code cell, tagged ``install``) of every chapter from
  ``repository.url``;
- writes the chapter table with Colab badges in README.md (between the ``chapters`` markers) and the
  ``repository-code`` of CITATION.cff;
- strips outputs, execution counts and widget state from every notebook.

Run ``python tools/sync_book.py`` after changing the repository address or adding a chapter;
``python tools/sync_book.py --check`` only reports what is out of date (exit status 1), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
START, END = "<!-- chapters:start (written by tools/sync_book.py) -->", "<!-- chapters:end -->"


def load_config(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "_config.yml").read_text())


def repository(root: Path = ROOT) -> tuple[str, str, str]:
    """(url, owner/name, branch) from ``_config.yml``."""
    repo = load_config(root)["repository"]
    url = repo["url"].rstrip("/")
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?", url)
    if not match:
        raise SystemExit(f"_config.yml repository.url must be https://github.com/<owner>/<name>, got {url!r}")
    return url, match.group(1), repo.get("branch", "main")


def chapters(root: Path = ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").is_file()]


def install_cell_source(url: str) -> str:
    return (
        "# Set-up: where pushpull_lite is missing (e.g. on Colab), install it from the book's repository.\n"
        "# pip keeps the torch that is already installed (on Colab, its CUDA build).\n"
        "import importlib.util\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if importlib.util.find_spec("pushpull_lite") is None:\n'
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{url}"], check=True)'
    )


def colab_url(slug: str, branch: str, notebook: Path, root: Path = ROOT) -> str:
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/{notebook.relative_to(root).as_posix()}"


def title(notebook: dict, fallback: str) -> str:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def synced_notebook(nb: dict, url: str) -> dict:
    """The notebook with a fresh install cell and no outputs, execution counts or widget state."""
    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("widgets", None)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    if not code:
        raise SystemExit("a chapter needs at least one code cell (the install cell)")
    first = code[0]
    tags = first.setdefault("metadata", {}).setdefault("tags", [])
    if "install" not in tags:
        tags.append("install")
    first["source"] = install_cell_source(url)
    for cell in code:
        cell["outputs"] = []
        cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    return nb


def readme_table(root: Path = ROOT) -> str:
    url, slug, branch = repository(root)
    rows = ["| chapter | open in Colab |", "| --- | --- |"]
    for path in chapters(root):
        nb = json.loads(path.read_text())
        rows.append(
            f"| {title(nb, path.stem)} | [![Open In Colab]({BADGE})]({colab_url(slug, branch, path, root)}) |"
        )
    return "\n".join([START, *rows, END])


def sync(root: Path = ROOT, check: bool = False) -> list[str]:
    """Bring notebooks and README.md up to date; return what was (or, with ``check``, would be) changed."""
    url, _, _ = repository(root)
    changed = []
    for path in chapters(root):
        text = path.read_text()
        new = json.dumps(synced_notebook(json.loads(text), url), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            changed.append(str(path.relative_to(root)))
            if not check:
                path.write_text(new)
    citation = root / "CITATION.cff"
    if citation.is_file():
        text = citation.read_text()
        new = re.sub(r"(?m)^repository-code: .*$", f'repository-code: "{url}"', text)
        if new != text:
            changed.append("CITATION.cff")
            if not check:
                citation.write_text(new)
    readme = root / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md needs the markers {START!r} and {END!r}")
    new = text[: text.index(START)] + readme_table(root) + text[text.index(END) + len(END) :]
    if new != text:
        changed.append("README.md")
        if not check:
            readme.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report what is out of date; change nothing")
    args = parser.parse_args(argv)
    changed = sync(check=args.check)
    for name in changed:
        print(("out of date: " if args.check else "updated: ") + name)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
