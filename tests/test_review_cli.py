"""`pttrust review` end to end through click, with the KeywordScorer test double in place of the
model (the real Scorer is exercised by the integration test at the bottom)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from review_doubles import KeywordScorer

import bot.run as bot_run
from bot.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIFF = str(ROOT / "examples" / "example.diff")


@pytest.fixture()
def scorer(monkeypatch):
    double = KeywordScorer()
    monkeypatch.setattr(
        bot_run,
        "load_scorer",
        lambda model, bundle, device="auto", progress=None: (double, "keyword-test-double", None),
    )
    return double


def run(*args, input=None):
    return CliRunner().invoke(main, ["review", *args], input=input, catch_exceptions=False)


def test_text_report_and_progress_on_stderr(scorer):
    res = run("--diff", DIFF, "--repo", str(ROOT))
    assert res.exit_code == 0, res.output
    assert "examples/pagination.py:18-19" in res.stdout
    assert "scoring 13 line(s) in 2 file(s)" in res.stderr
    # each touched file is encoded once, with all of its target lines
    (call,) = scorer.calls
    assert {(r.path, tuple(r.target_lines)) for r in call} == {
        ("examples/pagination.py", tuple(range(16, 27))),
        ("examples/format.js", (9, 10)),
    }


def test_fail_above_gates_but_still_writes_out(scorer, tmp_path):
    out = tmp_path / "r.json"
    res = run("--diff", DIFF, "--repo", str(ROOT), "--format", "json", "--out", str(out), "--fail-above", "0.9", "-q")
    assert res.exit_code == 1
    assert "above --fail-above 0.9" in res.stderr
    assert json.loads(out.read_text())["summary"]["max_risk"] == 0.93
    assert run("--diff", DIFF, "--repo", str(ROOT), "--fail-above", "0.95", "-q").exit_code == 0


def test_gate_trips_only_on_reported_findings_and_names_them(scorer):
    # 93% is below --threshold 0.95: no finding is reported, so --fail-above 0.05 must pass
    res = run("--diff", DIFF, "--repo", str(ROOT), "--threshold", "0.95", "--fail-above", "0.05", "-q")
    assert res.exit_code == 0, res.stderr
    assert "0 finding(s)" in res.stdout
    res = run("--diff", DIFF, "--repo", str(ROOT), "--fail-above", "0.9", "-q")
    assert res.exit_code == 1
    assert res.stderr.strip() == "error: 1 finding(s) above --fail-above 0.90: examples/pagination.py:18-19 (93%)"


def test_stdin_config_and_flag_override(scorer, tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("threshold: 0.95\nmax_comments: 1\n")
    diff = Path(DIFF).read_text()
    res = run("--diff", "-", "--repo", str(ROOT), "--config", str(cfg), "--format", "json", "-q", input=diff)
    assert res.exit_code == 0 and json.loads(res.stdout)["findings"] == []
    res = run(
        "--diff",
        "-",
        "--repo",
        str(ROOT),
        "--config",
        str(cfg),
        "--threshold",
        "0.5",
        "--format",
        "json",
        "-q",
        input=diff,
    )
    data = json.loads(res.stdout)
    assert len(data["findings"]) == 1 and data["summary"]["over_total_cap"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "exactly one of --diff"),
        (("--diff", "/nonexistent.diff"), "diff not found"),
        (("--diff", DIFF, "--threshold", "3"), "--threshold must be between 0 and 1"),
        (("--diff", DIFF, "--dry-run"), "--dry-run only applies to --github"),
        (("--diff", DIFF, "--templates", "/nonexistent"), "templates directory not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(scorer, args, message):
    res = run(*args, "--repo", str(ROOT))
    assert res.exit_code == 2
    assert message in res.stderr and "Traceback" not in res.output


def test_malformed_diff_is_one_line(scorer, tmp_path):
    bad = tmp_path / "bad.diff"
    bad.write_text("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-x\n")
    res = run("--diff", str(bad), "--repo", str(ROOT))
    assert res.exit_code == 2 and res.stderr.startswith("error: malformed diff")
    assert len(res.stderr.strip().splitlines()) == 1


def test_bad_config_names_its_line(scorer, tmp_path):
    cfg = tmp_path / ".pttrust.yml"
    cfg.write_text("threshold: 0.5\nmax_coments: 3\n")
    res = run("--diff", DIFF, "--repo", str(ROOT), "--config", str(cfg))
    assert res.exit_code == 2 and f"{cfg}:2: unknown key 'max_coments'" in res.stderr


def test_stale_working_tree_is_skipped_with_reason(scorer, tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "pagination.py").write_text("something else\n")
    res = run("--diff", DIFF, "--repo", str(tmp_path), "--format", "json", "-q")
    skipped = {s["path"]: s["reason"] for s in json.loads(res.stdout)["skipped"]}
    assert "differs from the diff" in skipped["examples/pagination.py"]
    assert "not found" in skipped["examples/format.js"]


@pytest.mark.integration
def test_real_scorer_on_the_example(tmp_path):
    """The README's demo: the embedded model with its shipped bundle, no flags, through the real Scorer."""
    out = tmp_path / "r.json"
    res = run("--diff", DIFF, "--repo", str(ROOT), "--format", "json", "--out", str(out), "-q")
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["summary"]["lines_scored"] > 0
    assert all(0.0 <= l["risk"] <= 1.0 for f in data["files"] for l in f["lines"])
    # reasons only: latents that push the risk up and have a description
    assert all(x["contribution"] > 0 and x["label"] for f in data["files"] for l in f["lines"] for x in l["latents"])


def test_authored_by_ai_uses_git_blame(scorer, tmp_path):
    import os
    import shutil
    import subprocess

    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}

    def git(*args, who=("Ada", "ada@example.com")):
        subprocess.run(
            ["git", "-C", str(tmp_path), "-c", f"user.name={who[0]}", "-c", f"user.email={who[1]}", *args],
            check=True,
            capture_output=True,
            env=env,
        )

    (tmp_path / "examples").mkdir()
    git("init", "-q")
    shutil.copy(ROOT / "examples" / "format.js", tmp_path / "examples")
    git("add", ".")
    git("commit", "-qm", "human change")
    shutil.copy(ROOT / "examples" / "pagination.py", tmp_path / "examples")
    git("add", ".")
    git("commit", "-qm", "agent change", who=("Copilot", "198982749+Copilot@users.noreply.github.com"))

    res = run("--diff", DIFF, "--repo", str(tmp_path), "--authored-by", "ai", "--format", "json", "-q")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    scored = {f["path"]: f["lines"] for f in data["files"] if f["lines"]}
    assert set(scored) == {"examples/pagination.py"}
    assert "author name 'Copilot' matches 'copilot*'" in scored["examples/pagination.py"][0]["ai_rule"]
    assert data["summary"]["lines_not_ai"] == 2


def _git_repo(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}

    def git(*args):
        subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=Ada", "-c", "user.email=ada@example.com", *args],
            check=True,
            capture_output=True,
            env=env,
        )

    git("init", "-q", "-b", "main")
    (tmp_path / "pager.py").write_text("def first(page, per_page):\n    return 0\n")
    git("add", ".")
    git("commit", "-qm", "base")
    return git


def test_staged_reviews_the_index_not_the_working_tree(scorer, tmp_path):
    git = _git_repo(tmp_path)
    (tmp_path / "pager.py").write_text("def first(page, per_page):\n    start = page * per_page\n    return start\n")
    git("add", "pager.py")
    # after staging, the working tree changes again: the commit will hold the staged text
    (tmp_path / "pager.py").write_text("def first(page, per_page):\n    return 0\n# unstaged\n")
    res = run("--staged", "--repo", str(tmp_path), "--fail-above", "0.9", "--format", "json", "-q")
    assert res.exit_code == 1, res.output
    assert res.stderr.strip() == "error: 1 finding(s) above --fail-above 0.90: pager.py:2 (93%)"
    data = json.loads(res.stdout)
    assert [(f["path"], f["start_line"]) for f in data["findings"]] == [("pager.py", 2)]
    assert data["skipped"] == []  # the new side is the index, so it matches the diff


def test_base_reviews_the_branch_since_its_merge_base(scorer, tmp_path):
    git = _git_repo(tmp_path)
    git("checkout", "-qb", "feature")
    (tmp_path / "pager.py").write_text("def first(page, per_page):\n    if page == 0:\n        return 0\n")
    git("commit", "-qam", "feature")
    res = run("--base", "main", "--repo", str(tmp_path), "--format", "json", "-q")
    assert res.exit_code == 0, res.output
    assert [(f["path"], f["start_line"]) for f in json.loads(res.stdout)["findings"]] == [("pager.py", 2)]
    res = run("--base", "nope", "--repo", str(tmp_path))
    assert res.exit_code == 2 and "unknown revision 'nope'" in res.stderr
    res = run("--staged", "--repo", str(tmp_path / "missing"))
    assert res.exit_code == 2


def test_pre_commit_hook_runs_the_staged_review(scorer, tmp_path):
    import shlex

    import yaml

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {"id", "name", "entry", "language"} <= set(hook) and hook["pass_filenames"] is False
    argv = shlex.split(hook["entry"]) + hook["args"]
    assert argv[:3] == ["pttrust", "review", "--staged"]
    git = _git_repo(tmp_path)
    (tmp_path / "pager.py").write_text("def first(page, per_page):\n    return page * per_page\n")
    git("add", "pager.py")
    res = CliRunner().invoke(main, [*argv[1:], "--repo", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 1 and "pager.py:2 (93%)" in res.stderr
