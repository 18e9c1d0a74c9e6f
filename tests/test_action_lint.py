"""Lint action.yml and the example workflows with actionlint (and shellcheck for the `run:` scripts).

actionlint checks workflow files, not action metadata, so action.yml is checked twice over:
- every example workflow is linted in a scratch repository where it calls the action as ``uses: ./``:
  actionlint then loads action.yml and checks each ``with:`` key against its inputs;
- action.yml's composite steps are lifted into a reusable workflow (its inputs become
  ``workflow_call`` inputs), so that expressions, step outputs, action inputs of setup-python/cache/
  codeql and the bash scripts (through shellcheck) are all checked as actionlint checks any job.
Plus structural checks actionlint cannot make about composite actions and injection safety.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
EXAMPLES = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
PUBLISHED_AS = f"pttrust/pttrust@v{VERSION}"
"""How the examples refer to the action: the release tag of this version, which the release workflow
creates (replaced by ``./`` to lint against this action.yml)."""
ACTIONLINT_CONFIG = "self-hosted-runner:\n  labels: [gpu]\n"


def _tool(name: str) -> str | None:
    """The venv's copy first (the test extra installs it there), then PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    binary = _tool("actionlint")
    if binary is None:
        pytest.skip("actionlint is not installed (pip install -e '.[test]')")
    shellcheck = _tool("shellcheck")
    # Without shellcheck the scripts go unchecked; say so instead of passing quietly.
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install -e '.[test]')")
    return [binary, "-no-color", "-oneline", "-shellcheck", shellcheck, "-pyflakes", ""]


def _lint(cmd: list[str], repo: Path, files: list[Path]) -> None:
    result = subprocess.run(
        cmd + [str(f.relative_to(repo)) for f in files], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def _scratch_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".git").mkdir()  # actionlint looks for the project root by its .git
    (repo / ".github" / "actionlint.yaml").write_text(ACTIONLINT_CONFIG)
    shutil.copy(ACTION, repo / "action.yml")
    return repo


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {
        "pttrust-hosted-cpu.yml",
        "pttrust-self-hosted-gpu.yml",
        "pttrust-fork-prs.yml",
        "pttrust-sarif.yml",
        "pttrust-local-model.yml",
        "pttrust-train-bundle.yml",
    } <= names


def test_example_workflows_pass_actionlint_against_this_action(actionlint, tmp_path):
    repo = _scratch_repo(tmp_path)
    files = []
    for example in EXAMPLES:
        text = example.read_text()
        dest = repo / ".github" / "workflows" / example.name
        dest.write_text(text.replace(PUBLISHED_AS, "./"))
        files.append(dest)
    _lint(actionlint, repo, files)


def test_a_wrong_input_name_is_caught(actionlint, tmp_path):
    """The check above really compares `with:` against action.yml (not a vacuous pass)."""
    repo = _scratch_repo(tmp_path)
    bad = repo / ".github" / "workflows" / "bad.yml"
    bad.write_text(
        "on: pull_request\njobs:\n  r:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: ./\n        with:\n          treshold: '0.5'\n"
    )
    result = subprocess.run(
        actionlint + [str(bad.relative_to(repo))], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "treshold" in result.stdout


def _as_workflow(action: dict) -> dict:
    """The composite action as a reusable workflow with the same inputs, steps and outputs."""
    inputs = {
        name: {
            "type": "string",
            "required": False,
            "default": spec.get("default", ""),
            "description": spec.get("description", ""),
        }
        for name, spec in action["inputs"].items()
    }
    return {
        "name": action["name"],
        "on": {"workflow_call": {"inputs": inputs}},
        "jobs": {
            "action": {
                "runs-on": "ubuntu-latest",
                "outputs": {name: spec["value"] for name, spec in action["outputs"].items()},
                "steps": action["runs"]["steps"],
            }
        },
    }


def test_composite_steps_pass_actionlint(actionlint, tmp_path):
    repo = _scratch_repo(tmp_path)
    action = yaml.safe_load(ACTION.read_text())
    dest = repo / ".github" / "workflows" / "action-steps.yml"
    dest.write_text(yaml.safe_dump(_as_workflow(action), sort_keys=False, width=200))
    _lint(actionlint, repo, [dest])


# --------------------------------------------------------------------------------------------------
# What actionlint does not check about action metadata


def _action() -> dict:
    return yaml.safe_load(ACTION.read_text())


def test_composite_structure():
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert {"findings", "max-risk", "flagged-lines", "report-path", "sarif-path", "review-url"} <= set(
        action["outputs"]
    )
    assert {
        "github-token",
        "model",
        "threshold",
        "max-comments",
        "fail-above",
        "authored-by",
        "config",
        "format",
        "upload-sarif",
        "dry-run",
        "filter-mode",
        "fail-level",
        "check-name",
        "paths",
        "pr-number",
    } <= set(action["inputs"])
    ids = {s.get("id") for s in action["runs"]["steps"]}
    for name, spec in action["outputs"].items():
        step = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.[\w-]+ \}\}", spec["value"])
        assert step and step.group(1) in ids, f"output {name} does not read a step's output"
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell"), f"composite run step {step.get('name')} needs a shell"
        else:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def test_third_party_actions_are_pinned_by_full_sha_with_the_version_beside():
    """Tags move; a full commit sha does not. The version rides along in a comment for humans (and
    for Dependabot, which updates both)."""
    for path in [ACTION, *EXAMPLES]:
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:-\s*)?uses:\s*(\S+)(.*)", line)
            if not m or m.group(1).startswith(("./", PUBLISHED_AS.split("@")[0])):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", m.group(1)), f"{path.name}: {line.strip()}"
            assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", m.group(2)), f"{path.name}: version comment: {line.strip()}"


def test_every_reference_to_a_release_names_this_version():
    """A user copies the ``uses:`` / ``rev:`` line from the docs: it must name the tag the release
    workflow creates for the version in pyproject.toml (the docs said v0.1.0 while the package was 0.2.0)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *EXAMPLES, ROOT / ".pre-commit-hooks.yaml"]
    found = 0
    for path in docs:
        text = path.read_text()
        for m in re.finditer(r"pttrust/pttrust@([\w.-]*\w)|^\s*#?\s*(?:rev|ref): (v\S+)", text, re.M):
            ref = m.group(1) or m.group(2)
            assert ref == f"v{VERSION}", f"{path.relative_to(ROOT)}: {m.group(0).strip()} (the release is v{VERSION})"
            found += 1
    assert found >= len(EXAMPLES), "the docs and examples should show the one-line reference"


def test_the_release_workflow_tags_the_version_users_are_told_to_use():
    """``uses: pttrust/pttrust@vX.Y.Z`` works once the tag exists: the release workflow creates it (and
    moves the major tag ``vX``) from pyproject.toml's version on the default branch."""
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    script = "\n".join(s.get("run", "") for s in steps)
    assert "pyproject.toml" in script and 'git tag "v$version"' in script and "git push" in script
    assert wf["permissions"] == {"contents": "write"}


def test_installs_into_a_venv_under_the_runner_temp():
    steps = _action()["runs"]["steps"]
    torch = next(s for s in steps if s.get("id") == "torch")
    assert '-m venv --system-site-packages "$VENV"' in torch["run"] and 'VENV="$RUNNER_TEMP/' in torch["run"]
    assert 'echo "python=$PY"' in torch["run"] and 'PY="$VENV/bin/python"' in torch["run"]


def test_every_input_is_used_and_every_used_input_declared():
    text = ACTION.read_text()
    action = _action()
    used = set(re.findall(r"inputs\.([\w-]+)", yaml.safe_dump(action["runs"])))
    assert used == set(action["inputs"]), used ^ set(action["inputs"])
    assert "github.event.pull_request.head" not in text


def test_no_expression_is_pasted_into_a_script():
    """Inputs and event fields reach scripts only through env: an expression inside `run:` is
    substituted before bash parses it, so a crafted value (a branch name, an input) would run."""
    for step in _action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), f"expression inside run: of {step.get('name')}"


def test_scripts_run_outside_the_workspace():
    """`python -m X` imports X from the current directory first: never run it in the checkout."""
    for step in _action()["runs"]["steps"]:
        if "run" in step:
            assert step.get("working-directory") == "${{ runner.temp }}", step.get("name")


def test_installs_the_action_not_the_pr():
    steps = _action()["runs"]["steps"]
    installs = [s for s in steps if "pip install" in s.get("run", "") and "ACTION_PATH" in s.get("run", "")]
    assert installs and all(s["env"]["ACTION_PATH"] == "${{ github.action_path }}" for s in installs)
    assert not any("actions/checkout" in s.get("uses", "") for s in steps)


# The project's own CI workflow (.github/workflows/ci.yml)

CI = ROOT / ".github" / "workflows" / "ci.yml"


def test_ci_workflow_passes_actionlint(actionlint, tmp_path):
    repo = _scratch_repo(tmp_path)
    shutil.copy(CI, repo / ".github" / "workflows" / "ci.yml")
    _lint(actionlint, repo, [repo / ".github" / "workflows" / "ci.yml"])


def test_ci_pins_third_party_actions_by_sha_with_the_version_beside():
    uses = re.findall(r"^\s*-?\s*uses:\s*(\S+)(.*)$", CI.read_text(), re.M)
    assert uses
    for ref, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+(\.\d+)*", rest), f"{ref}: no '# vX.Y.Z' comment"


def test_ci_runs_lint_unit_and_scheduled_integration_tests():
    wf = yaml.safe_load(CI.read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads a bare `on` as true
    assert "schedule" in on and "pull_request" in on
    runs = {name: " ".join(s.get("run", "") for s in job["steps"]) for name, job in wf["jobs"].items()}
    assert "make lint" in runs["lint"]
    assert "-m 'not integration'" in runs["test"] and "-m integration" in runs["integration"]
    assert "schedule" in wf["jobs"]["integration"]["if"]
