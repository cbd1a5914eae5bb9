"""The package as a reader on Colab gets it: a wheel, installed elsewhere, run from an empty folder.

It must find the committed reference results (package data) and must not plan to write into
site-packages. The virtual environment reuses this machine's torch (``--system-site-packages``), so the
test needs no download.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import pushpull_lite
from pushpull_lite import config, experiments, results
print(json.dumps({
    "package": pushpull_lite.__file__,
    "checkout": str(config.checkout_root()),
    "reference": sorted(r["name"] for r in results.load_reference("medium")),
    "runner_writes_to": str(experiments.default_output("medium")),
}))
"""


def test_an_installed_wheel_finds_the_reference_results_and_writes_outside_site_packages(tmp_path):
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "pushpull_lite", source / "pushpull_lite", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("pushpull_lite-*.whl")
    committed = sorted(
        p.name for p in (ROOT / "pushpull_lite" / "reference_results" / "medium").glob("*.json")
    )
    with zipfile.ZipFile(wheel) as zf:
        shipped = sorted(Path(n).name for n in zf.namelist() if "/reference_results/medium/" in n)
    assert shipped == committed and committed

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run(
        [str(python), "-c", PROBE],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PUSHPULL_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)},
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["package"].startswith(str(env_dir)), probe  # the wheel, not the checkout
    assert probe["checkout"] == "None"
    assert len(probe["reference"]) == len(committed)
    assert probe["runner_writes_to"] == str(tmp_path / "cache" / "results" / "medium")
