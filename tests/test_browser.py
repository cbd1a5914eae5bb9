"""The published book: `jupyter-book build .` passes without warnings; every chapter reads well in Chromium.

These tests are marked ``book_build``; the root conftest.py runs them after everything else, so in a full
``python -m pytest`` the notebooks have already run under nbval: conftest.py hands their outputs to the
build's execution cache (jupyter-cache, which matches a notebook by its code cells), and the build
executes only the chapters nbval did not run completely.

Each page of ``_toc.yml`` is opened from disk (``file://``, as a reader opens ``_build/html/index.html``)
in headless Chromium, driven by selenium and Debian's chromedriver. A page passes when it loads nothing from
the network (MathJax included), its math is typeset without errors, every internal link points at an
existing file and anchor, every image has loaded, and no cell output holds a Python error. A full-page
screenshot of each goes to ``_build/screenshots/``.

Set ``PUSHPULL_BOOK_HTML=path/to/_build/html`` to check an existing build instead of building (the
build test then skips, which CI counts as a failure).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 45 * 60  # a hang fails the test; `quick` with a warm model cache needs a few minutes
SCREENSHOT_MAX_HEIGHT = 16_000  # px: long chapters are cut there to keep the PNGs small
# What a Sphinx warning or error looks like in the build output (the colour codes are stripped first).
_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE):")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Chromium's own options: headless, no sandbox (root in CI), and none of its background traffic, which
# would flood a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The documents of the table of contents in reading order, e.g. ``["book/intro", "book/01_biology"]``."""
    tree = yaml.safe_load(toc.read_text())
    pages = [tree["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                pages.append(str(Path(entry["file"]).with_suffix("")))
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    walk(tree.get("parts", []))
    walk(tree.get("chapters", []))
    return [str(Path(page).with_suffix("")) if page.endswith((".md", ".ipynb")) else page for page in pages]


def build_problems(log: str) -> list[str]:
    """The warning and error lines of a Sphinx / jupyter-book build log, without colour codes."""
    return [line.strip() for line in _ANSI.sub("", log).splitlines() if _PROBLEM.search(line)]


class _Anchors(HTMLParser):
    """Collects the ids and names a URL fragment can point at."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" or (key == "name" and tag == "a"):
                self.anchors.add(value or "")


def anchors_of(path: Path) -> set[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser.anchors


def broken_links(hrefs: list[str], page: Path, dom_ids: set[str]) -> list[str]:
    """The ``file:`` hrefs (already resolved by the browser) whose file or fragment does not exist.

    hrefs: absolute URLs as ``a.href`` gives them; page: the HTML file they were read from; dom_ids: the
    ids of the live page (a fragment on the page itself may point at an element its scripts created).
    """
    broken, cache = [], {}
    for href in hrefs:
        url, fragment = urldefrag(href)
        parsed = urlparse(url)
        if parsed.scheme != "file":
            continue  # external links are the reader's business; the book must only not *load* them
        target = Path(unquote(parsed.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"{href} (no such file)")
            continue
        if not fragment or target.suffix != ".html":
            continue
        if target == page:
            ids = dom_ids
        else:
            ids = cache.setdefault(target, anchors_of(target))
        if unquote(fragment) not in ids:
            broken.append(f"{href} (no such anchor)")
    return broken


# ----------------------------------------------------------------------------------------------- the build


@pytest.fixture(scope="module")
def book() -> dict:
    """Build the book once (``jupyter-book build .``) and return ``{"html": Path, "log": str | None}``."""
    prebuilt = os.environ.get("PUSHPULL_BOOK_HTML")
    if prebuilt:
        html = Path(prebuilt).resolve()
        assert (html / "index.html").exists(), f"PUSHPULL_BOOK_HTML={prebuilt} holds no index.html"
        return {"html": html, "log": None, "returncode": 0}
    jupyter_book = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    cmd = [jupyter_book, "build", ".", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    log = proc.stdout + proc.stderr
    (ROOT / "_build").mkdir(exist_ok=True)
    (ROOT / "_build" / "book-build.log").write_text(log)
    return {"html": ROOT / "_build" / "html", "log": log, "returncode": proc.returncode}


@pytest.mark.book_build
def test_book_builds_without_warnings(book):
    if book["log"] is None:
        pytest.skip("the book was built outside this test run (PUSHPULL_BOOK_HTML is set)")
    problems = build_problems(book["log"])
    tail = "\n".join(book["log"].splitlines()[-30:])
    assert book["returncode"] == 0, f"jupyter-book build failed (full log in _build/book-build.log):\n{tail}"
    assert not problems, "the build warned (full log in _build/book-build.log):\n" + "\n".join(problems)


@pytest.mark.book_build
def test_every_toc_page_is_built(book):
    missing = [page for page in toc_pages() if not (book["html"] / f"{page}.html").exists()]
    assert not missing, f"pages of _toc.yml missing from {book['html']}: {missing}"


@pytest.mark.book_build
def test_every_chapter_that_plots_shows_its_figures(book):
    # a kernel started with MPLBACKEND=Agg draws nothing, and "every image has loaded" then holds for none
    # (CI built a book without a single figure that way); conftest.py drops MPLBACKEND for the kernels
    plotting = [
        p.stem
        for p in sorted((ROOT / "book").glob("*.ipynb"))
        if re.search(r"plt\.|plotting\.|explore\.\w+_figure\(", p.read_text())
    ]
    assert plotting, "no chapter draws a figure: nothing to check"
    html = {page: (book["html"] / "book" / f"{page}.html").read_text() for page in plotting}
    bare = [page for page, text in html.items() if not re.search(r'<img [^>]*src="[^"]*_images/', text)]
    assert not bare, f"chapters that plot but show no figure: {bare}"


# ----------------------------------------------------------------------------------------------- Chromium


def _find(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through selenium, with a fresh profile and the network and console logs on."""
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium or chromedriver is missing: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory(prefix="pushpull-chromium-") as profile:
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        driver.get("about:blank")  # let a fresh profile's start-up traffic pass before the first page
        try:
            yield driver
        finally:
            driver.quit()


_WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const ready = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? MathJax.startup.promise.then(() => done("typeset"), (e) => done("error: " + e))
    : done("no MathJax");
if (document.readyState === "complete") ready(); else window.addEventListener("load", ready);
"""

_INSPECT = """
const outputs = Array.from(document.querySelectorAll(".cell_output, .output"));
return {
  hrefs: Array.from(document.querySelectorAll("a[href]"), (a) => a.href),
  ids: Array.from(document.querySelectorAll("[id], a[name]"), (e) => e.id || e.getAttribute("name")),
  images: Array.from(document.images, (img) => ({src: img.currentSrc || img.src,
                                                 complete: img.complete, width: img.naturalWidth})),
  math_sources: document.querySelectorAll(".math, span.math, div.math").length,
  mathjax: document.querySelectorAll("mjx-container").length,
  math_errors: Array.from(document.querySelectorAll("mjx-merror"), (e) => e.getAttribute("data-mjx-error")
                          || e.textContent),
  error_outputs: Array.from(document.querySelectorAll(".output.traceback, .output.error"),
                            (e) => e.textContent.slice(0, 300)),
  output_text: outputs.map((e) => e.innerText).join("\\n"),
  output_paragraphs: Array.from(document.querySelectorAll(".cell_output p"), (e) => e.textContent),
  page_text: document.body.innerText,
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""

# A Markdown table that a cell displayed but the build did not render: its separator row left as text.
_UNRENDERED_TABLE = re.compile(r"^\|(\s*:?[-\u2013\u2014]+:?\s*\|)+\s*$", re.MULTILINE)

# An error as a cell output shows it: the traceback header, or "NameError: ..." at the start of a line.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*[A-Z]\w*(Error|Exception): ", re.MULTILINE)


def _network(driver) -> tuple[list[str], list[str]]:
    """(URLs the page requested, "URL: error" of its failed loads) since the last call.

    From Chromium's performance log, keeping the requests of ``file:`` documents: the browser's own
    (its new-tab page, ``chrome://`` URLs) are not the book's.
    """
    requested, failed, urls = [], [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if params.get("documentURL", "").startswith("file:") or url.startswith("file:"):
                urls[params["requestId"]] = url
                requested.append(url)
        elif message["method"] == "Network.loadingFailed" and params["requestId"] in urls:
            if not params.get("canceled"):
                failed.append(f"{urls[params['requestId']]}: {params.get('errorText')}")
    return requested, failed


def _screenshot(driver, path: Path, height: int) -> None:
    """A PNG of the whole page (up to SCREENSHOT_MAX_HEIGHT px): the viewport is made as tall as the page."""
    height = min(height, SCREENSHOT_MAX_HEIGHT)
    metrics = {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.book_build
@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_offline_without_errors(book, browser, page):
    html_file = book["html"] / f"{page}.html"
    assert html_file.exists(), f"{page} is in _toc.yml but was not built"
    browser.get_log("performance")  # drop what the previous page left
    browser.get_log("browser")
    browser.get(html_file.as_uri())
    mathjax_state = browser.execute_async_script(_WAIT_FOR_MATHJAX)
    info = browser.execute_script(_INSPECT)
    requested, failed = _network(browser)
    console = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    _screenshot(browser, ROOT / "_build" / "screenshots" / f"{page.replace('/', '__')}.png", info["height"])

    problems = []
    remote = sorted({url for url in requested if urlparse(url).scheme in ("http", "https", "ws", "wss")})
    problems += [f"loads from the network: {url}" for url in remote]
    problems += [f"failed to load: {item}" for item in failed]
    problems += [f"console error: {message}" for message in console]
    if info["math_sources"]:
        if mathjax_state != "typeset" or not info["mathjax"]:
            problems.append(f"math is not typeset (MathJax: {mathjax_state}, {info['mathjax']} formulas)")
        problems += [f"MathJax error: {err}" for err in info["math_errors"]]
    problems += [f"broken link: {link}" for link in broken_links(info["hrefs"], html_file, set(info["ids"]))]
    problems += [
        f"missing image: {img['src']}" for img in info["images"] if not img["complete"] or img["width"] == 0
    ]
    problems += [f"error output: {text}" for text in info["error_outputs"]]
    problems += [
        f"Markdown table shown as text (set nb_render_markdown_format): {text[:120]}"
        for text in info["output_paragraphs"]
        if _UNRENDERED_TABLE.search(text)
    ]
    if "Traceback (most recent call last)" in info["page_text"] or _TRACEBACK.search(info["output_text"]):
        match = _TRACEBACK.search(info["output_text"]) or _TRACEBACK.search(info["page_text"])
        problems.append(f"a Python error in the page: ...{info['page_text'][match.start() :][:300]}")
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.book_build
def test_math_page_uses_the_local_mathjax(book):
    """The pages that hold math load MathJax from _static, never from a CDN."""
    pages_with_math = [
        page for page in toc_pages() if 'class="math' in (book["html"] / f"{page}.html").read_text()
    ]
    assert pages_with_math, "no page of the book holds math: nothing to check"
    for page in pages_with_math:
        text = (book["html"] / f"{page}.html").read_text()
        scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', text, re.IGNORECASE)
        scripts = [urldefrag(s)[0].split("?")[0] for s in scripts]  # Sphinx appends ?v=<checksum>
        assert scripts and all(s.endswith("_static/mathjax/tex-chtml.js") for s in scripts), (page, scripts)
        local = (book["html"] / page).parent / scripts[0]
        assert local.resolve().exists(), f"{page} points at {scripts[0]}, which was not copied"


# ------------------------------------------------------------------------------- the checks on known inputs


def test_toc_pages_walk_parts_chapters_and_sections(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: A\n    chapters:\n      - file: book/a\n"
        "        sections:\n          - file: book/a1.ipynb\n"
        "  - caption: B\n    chapters:\n      - file: book/b.md\n"
    )
    assert toc_pages(toc) == ["book/intro", "book/a", "book/a1", "book/b"]


def test_build_problems_finds_warnings_and_errors_in_coloured_output():
    log = (
        "reading sources... [ 50%] book/a\n"
        "\x1b[91m/x/a.md:3: WARNING: undefined label: 'fig'\x1b[39;49;00m\n"
        '\x1b[31mdocstring of m.f:1: ERROR: Undefined substitution referenced: "d".\x1b[39;49;00m\n'
        "build succeeded, 2 warnings.\n"
    )
    assert build_problems(log) == [
        "/x/a.md:3: WARNING: undefined label: 'fig'",
        'docstring of m.f:1: ERROR: Undefined substitution referenced: "d".',
    ]
    assert build_problems("build succeeded.\nwarnings are shown in grey\n") == []


def test_broken_links_checks_files_and_anchors(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a name="old"></a>')
    page = tmp_path / "b.html"
    page.write_text("<p>b</p>")
    base = tmp_path.as_uri()
    hrefs = [
        f"{base}/a.html",
        f"{base}/a.html#top",
        f"{base}/a.html#old",
        f"{base}/a.html#gone",
        f"{base}/missing.html",
        f"{base}/b.html#made-by-js",
        "https://example.org/not-checked#x",
    ]
    assert broken_links(hrefs, page, dom_ids={"made-by-js"}) == [
        f"{base}/a.html#gone (no such anchor)",
        f"{base}/missing.html (no such file)",
    ]


def _load_ext(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unique_scripts_drops_repeats_that_differ_only_by_none_and_empty_filename():
    from sphinx.builders.html._assets import _JavaScript

    unique = _load_ext("unique_scripts").unique
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [
        _JavaScript("_static/a.js"),
        _JavaScript(None, body=thebe),
        _JavaScript("", body=thebe),
        _JavaScript("", body="let other = 1"),
        _JavaScript("_static/a.js", **{"async": "async"}),
        "_static/b.js",
        "_static/b.js",
    ]
    kept = unique(scripts)
    assert kept == [scripts[0], scripts[1], scripts[3], scripts[4], scripts[5]]


def test_local_mathjax_finds_the_installed_tex_chtml_component_and_its_fonts():
    local_mathjax = _load_ext("local_mathjax")
    es5 = local_mathjax.mathjax_source()
    assert (es5 / "tex-chtml.js").stat().st_size > 500_000
    assert len(list((es5 / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_*.woff"))) >= 20
    assert (es5 / "input" / "tex" / "extensions" / "boldsymbol.js").exists()  # autoloaded by \boldsymbol
