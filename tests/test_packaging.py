"""The wheel carries what the reviewer needs, and `pttrust review` runs from it (not only from an
editable checkout). The model is replaced by the KeywordScorer test double; the default bundle is still
loaded from the installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted(p.name for p in (ROOT / "bot" / "templates").iterdir() if p.is_file())
BUNDLE = ROOT / "risk_core" / "weights" / "qwen2.5-coder-0.5b"
BUNDLE_FILES = sorted(str(p.relative_to(ROOT)) for p in BUNDLE.rglob("*") if p.is_file())


def python_scripts() -> list[Path]:
    """The files of ``scripts/`` that run under Python (their first line names it)."""
    return sorted(
        p for p in (ROOT / "scripts").iterdir() if p.is_file() and "python" in p.read_text().split("\n", 1)[0]
    )


DRIVER = """
import sys
from pathlib import Path

import bot.run
from review_doubles import KeywordScorer

installed = Path(sys.argv[1]).resolve()
assert Path(bot.run.__file__).resolve().is_relative_to(installed), bot.run.__file__


def load_scorer(model, bundle, device="auto", progress=None):
    from risk_core.artifacts import Bundle
    from risk_core.models import DEFAULT_MODEL

    path = bot.run.default_bundle(model or DEFAULT_MODEL)
    assert path is not None and Path(path).resolve().is_relative_to(installed), path
    Bundle.load(path)  # the shipped bundle loads from the installed wheel
    return KeywordScorer(), "keyword-test-double", str(path)


bot.run.load_scorer = load_scorer
from bot.cli import main

sys.exit(main(["review", "--diff", "example.diff", "--format", "markdown"], standalone_mode=True))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    shutil.copytree(
        ROOT, build / "src", ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "*.egg-info")
    )
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
        cwd=build / "src",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = out.glob("pttrust-*.whl")
    return whl


def test_wheel_holds_the_templates_and_the_default_bundle(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"bot/templates/{t}" for t in TEMPLATES} <= names
    assert set(BUNDLE_FILES) <= names, sorted(set(BUNDLE_FILES) - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)


def test_review_runs_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    # A user's repository elsewhere: the example's files and its diff, nothing of this checkout.
    work = tmp_path / "user-repo"
    shutil.copytree(ROOT / "examples", work / "examples")
    shutil.copy(ROOT / "examples" / "example.diff", work / "example.diff")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT / "tests")])
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, str(target)], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "## PtTrust risk review" in res.stdout and "`examples/pagination.py:18-19`" in res.stdout


def test_every_module_imports_first_and_every_script_answers_help():
    """Each module of risk_core and bot imports in a fresh interpreter before any other: an import
    cycle that works only in one order (risk_core.models re-exported risk_core.model_loading, which
    imports risk_core.models, so ``import risk_core.model_loading`` first failed) is a crash for
    whoever imports that module first. Each Python script of ``scripts/`` answers ``--help`` with exit
    0 (its imports included: scripts are not modules, and one kept importing a name that had moved).
    Fresh interpreters, run a few at a time."""
    import concurrent.futures

    root = Path(__file__).resolve().parents[1]
    names = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for package in ("risk_core", "bot")
        for p in (root / package).rglob("*.py")
        if "__main__" not in p.name
    )

    commands = [[sys.executable, "-c", f"import {name}"] for name in names]
    commands += [[sys.executable, str(p), "--help"] for p in python_scripts()]

    def run(command: list[str]) -> str | None:
        done = subprocess.run(command, capture_output=True, text=True, cwd=root)
        return None if done.returncode == 0 else f"{command[1:]}: {(done.stderr.strip().splitlines() or ['?'])[-1]}"

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(run, commands) if f]
    assert not failures, failures


def test_the_readme_screenshot_script_answers_help_without_a_browser_or_touching_the_picture(tmp_path):
    """``--help`` used to run the script: it launched Chromium (failing where none is installed) and,
    where one was, rewrote docs/images/html-report.png from inside the test suite."""
    root = Path(__file__).resolve().parents[1]
    picture = root / "docs" / "images" / "html-report.png"
    before = picture.read_bytes()
    env = {**os.environ, "PTTRUST_CHROMIUM": str(tmp_path / "no-chromium")}
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "readme-screenshot"), "--help"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and "usage: readme-screenshot" in done.stdout, done.stderr[-300:]
    assert picture.read_bytes() == before and not (picture.parent / "html-report.html").exists()


def test_ruff_and_pyright_check_every_python_script_without_a_suffix():
    """ruff and pyright find Python files by their suffix, so a script of ``scripts/`` is checked only
    when ``[tool.ruff] extend-include`` and ``[tool.pyright] include`` name it: with one script listed,
    three had drifted from the format, one line from the limit and 16 types, unseen by ``make lint``."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    scripts = {f"scripts/{p.name}" for p in python_scripts() if not p.suffix}
    assert scripts - set(tool["ruff"]["extend-include"]) == set()
    assert scripts - set(tool["pyright"]["include"]) == set()
