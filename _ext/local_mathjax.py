"""Serve MathJax from the built book itself, so its math renders without network.

Sphinx loads MathJax from a CDN by default. This extension copies MathJax 3 (the ``tex-chtml`` component,
its CommonHTML fonts and the pieces it loads on demand) into ``_build/html/_static/mathjax/`` and points
``mathjax_path`` there; Sphinx reads a relative ``mathjax_path`` as relative to ``_static``.

The files come from PyPI, so ``pip install -r requirements.txt`` brings them: the ``django-static-mathjax``
wheel is a verbatim copy of the MathJax 3.2.2 release (Apache-2.0; plain data files under the import name
``mathjax``, Django itself is not needed). About 7 MB of it is copied; the other bundles (SVG output,
MathML input, the node build) are not used by the book.

Listed in ``_config.yml`` under ``sphinx.local_extensions``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.ext.mathjax import MATHJAX_URL
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: ``mathjax_path`` of the local copy, relative to ``_static``.
LOCAL_PATH = "mathjax/tex-chtml.js"

#: What ``tex-chtml.js`` needs at run time, relative to MathJax's ``es5/`` folder: the component, the fonts
#: (``output/chtml``), TeX packages it autoloads (``\boldsymbol``, ``\cancel``, ...) and the accessibility
#: menu with what the menu loads when a reader switches speech or the explorer on.
PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml", "ui", "a11y", "sre", "adaptors")


def mathjax_source() -> Path:
    """The ``es5/`` folder of the installed MathJax 3 distribution.

    Raises ExtensionError naming the package to install when it is missing or incomplete.
    """
    spec = importlib.util.find_spec("mathjax")
    hint = "install it with `pip install -r requirements.txt` (package django-static-mathjax)"
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(f"local_mathjax: MathJax is not installed; {hint}")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    missing = [part for part in PARTS if not (es5 / part).exists()]
    if missing:
        raise ExtensionError(f"local_mathjax: {es5} lacks {', '.join(missing)}; {hint}")
    return es5


def _use_local_copy(app: Sphinx, config: Config) -> None:
    # An explicit remote mathjax_path is the user's choice; only Sphinx's CDN default is replaced.
    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = LOCAL_PATH
    if config.mathjax_path == LOCAL_PATH:
        mathjax_source()  # fail at the start of the build, not after an hour of executing notebooks
    else:
        logger.info("local_mathjax: mathjax_path=%s is not the local copy; not copied", config.mathjax_path)


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html" or app.config.mathjax_path != LOCAL_PATH:
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / Path(LOCAL_PATH).parent
    for part in PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    logger.info("local_mathjax: copied MathJax to %s", target)


def setup(app: Sphinx) -> dict[str, object]:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _use_local_copy)
    app.connect("build-finished", _copy)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
