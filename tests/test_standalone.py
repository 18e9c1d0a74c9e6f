"""The repository stands on its own: what its tests, scripts and CI read lies inside it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def _copy_alone(dest: Path) -> Path:
    """The tracked files alone, in dest/repo/, with nothing beside them."""
    repo = dest / "repo"
    for rel in _tracked_files():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    return repo


def test_spec_loader_works_in_a_copy_of_the_repository_alone(tmp_path):
    repo = _copy_alone(tmp_path)
    probe = (
        "from github_server.spec import SPEC_PATH, load_spec, spec_path, _openapi\n"
        "import pathlib, sys\n"
        "root = pathlib.Path(sys.argv[1]).resolve()\n"
        "assert spec_path().resolve().is_relative_to(root), spec_path()\n"
        "spec = load_spec()\n"
        "_openapi()\n"
        "print(len(spec['paths']), spec['info']['x-pttrust-source']['npm'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PTTRUST_GITHUB_SPEC", "PYTHONPATH")}
    env["PYTHONPATH"] = str(repo / "tests")
    res = subprocess.run(
        [sys.executable, "-c", probe, str(repo)], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["22", "@octokit/openapi@23.0.2"]


# Only files that run or configure a run: docs may say where the workplace keeps things.
_RUN_FILES = re.compile(r"^(tests/|scripts/|\.ci/|\.github/|Makefile$|pyproject\.toml$|action\.yml$|\.pre-commit)")
_OUTSIDE = re.compile(r"\.\./shared|/work/(main|shared)")


def test_nothing_that_runs_refers_outside_the_repository():
    offenders = []
    for rel in _tracked_files():
        if not _RUN_FILES.match(rel) or rel == "tests/test_standalone.py":
            continue
        try:
            text = (ROOT / rel).read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{rel}:{n}" for n, line in enumerate(text.splitlines(), 1) if _OUTSIDE.search(line)]
    assert offenders == []


def _cut_script():
    from conftest import load_script

    return load_script("cut-github-rest-subset")


def test_cut_script_lists_exactly_the_vendored_operations():
    import json

    cut = _cut_script()
    vendored = json.loads((ROOT / "tests" / "data" / "github-rest-api-subset.json").read_text())
    assert list(vendored["paths"]) == list(dict.fromkeys(p for p, _ in cut.OPERATIONS))
    assert sorted((p, m) for p, ops in vendored["paths"].items() for m in ops) == sorted(cut.OPERATIONS)
    assert vendored["info"]["x-pttrust-source"]["sha256"] == cut.SOURCE_SHA256


def test_cut_script_refuses_another_source_in_one_line(tmp_path, capsys):
    cut = _cut_script()
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "api.github.com.deref.json").write_text('{"info": {"version": "23.0.2"}}')
    assert cut.main(["--package", str(tmp_path), "--out", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a631e5d9" in err
    assert not (tmp_path / "out.json").exists()
