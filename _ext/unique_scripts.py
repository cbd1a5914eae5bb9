"""Write each ``<script>`` once per page.

Under jupyter-book 1.0.4 (Sphinx 7.4) the inline scripts of sphinx-thebe and sphinx-togglebutton reach the
page twice: Sphinx keeps one copy registered with filename ``None`` and one with ``""``, which its own
de-duplication takes for different scripts. The second ``const THEBE_JS_URL = ...`` then throws a
SyntaxError in every page's console. This drops such repeats (same file or body, same attributes).

Listed in ``_config.yml`` under ``sphinx.local_extensions``.
"""

from __future__ import annotations

import os
from typing import Any

from sphinx.application import Sphinx


def unique(scripts: list[Any]) -> list[Any]:
    """The scripts without repeats, first occurrence kept, order unchanged.

    scripts: Sphinx ``_JavaScript`` assets (``filename`` may be None, "" or a path; ``attributes`` a dict
    holding e.g. ``body``) or plain file names.
    """
    seen, kept = set(), []
    for script in scripts:
        if isinstance(script, str):
            key = (script, ())
        else:
            key = (os.fspath(script.filename or ""), tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _dedupe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if "script_files" in context:
        context["script_files"] = unique(list(context["script_files"]))


def setup(app: Sphinx) -> dict[str, object]:
    # late priority: after the extensions that add page-specific scripts (MathJax, myst-nb)
    app.connect("html-page-context", _dedupe, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
