"""Data sources: the JSONL format, the HumanEval sandbox, bug fixes mined from a temp git repo."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import needs_isolation

from risk_core.data.from_git import changed_parent_lines, fix_samples, is_fix_message
from risk_core.data.humaneval import (
    build_test_program,
    load_problems,
    locate_bug_lines,
    run_sandboxed,
    truncate_completion,
)
from risk_core.data.jsonl import Sample, read_jsonl, write_jsonl
from risk_core.errors import UsageError


def test_jsonl_round_trip_and_errors(tmp_path):
    s = [Sample("a", "python", "x.py", "x = 1\n", [1], "off_by_one"), Sample("b", "go", "y", "y\n", [], passed=False)]
    write_jsonl(tmp_path / "d.jsonl", s)
    back = read_jsonl(tmp_path / "d.jsonl")
    assert back == s
    assert "operator" not in json.loads((tmp_path / "d.jsonl").read_text().splitlines()[1])
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(UsageError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


# --- sandbox ----------------------------------------------------------------------------------------


@needs_isolation
def test_sandbox_pass_and_fail():
    assert run_sandboxed("assert sum([1, 2]) == 3\n").status == "passed"
    r = run_sandboxed("def f():\n    return 1\nassert f() == 2, 'wrong'\n")
    assert not r.passed and r.status == "failed" and "AssertionError" in r.detail


@needs_isolation
def test_sandbox_hang_is_killed():
    t = time.time()
    r = run_sandboxed("while True:\n    pass\n", timeout=1.0)
    assert r.status == "timeout" and not r.passed
    assert time.time() - t < 10


@needs_isolation
def test_sandbox_refuses_fork_subprocess_and_network(tmp_path):
    marker = tmp_path / "forked"
    prog = f"import os\npid = os.fork()\nopen({str(marker)!r}, 'w').write('x')\n"
    r = run_sandboxed(prog)
    assert not r.passed and "PermissionError" in r.detail and not marker.exists()
    r = run_sandboxed("import subprocess\nsubprocess.run(['true'])\n")
    assert not r.passed and "PermissionError" in r.detail
    r = run_sandboxed("import socket\nsocket.create_connection(('127.0.0.1', 80))\n")
    assert not r.passed


@needs_isolation
def test_sandbox_memory_limit():
    r = run_sandboxed("x = bytearray(4 * 1024 ** 3)\n", memory_mb=512)
    assert not r.passed and "MemoryError" in r.detail


@needs_isolation
def test_sandbox_runs_in_temp_dir_with_empty_env():
    # Isolated, the private /tmp is the working directory (the host's temp dir is not even visible).
    r = run_sandboxed("import os\nassert 'HOME' not in os.environ\nassert os.getcwd() == '/tmp'\n")
    assert r.passed, r.detail


@needs_isolation
def test_humaneval_data_and_canonical_solutions():
    problems = load_problems(limit=3)
    assert len(problems) == 3 and {"prompt", "test", "entry_point", "canonical_solution"} <= set(problems[0])
    for p in problems:
        assert run_sandboxed(build_test_program(p, p["canonical_solution"])).passed
    assert not run_sandboxed(build_test_program(problems[0], "    return None\n")).passed


def test_locate_bug_lines_near_misses_only():
    prompt = 'def f(xs):\n    """Sum."""\n'  # 2 lines: completion line 1 is code line 3
    ref = "    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    off_by = "    total = 0\n    for x in xs[1:]:\n        total += x\n    return total\n"
    assert locate_bug_lines(prompt, off_by, [ref]) == [4]
    missing = "    total = 0\n    for x in xs:\n        pass\n    return total\n"
    assert locate_bug_lines(prompt, missing, [ref]) == [5]
    dropped = "    total = 0\n    for x in xs:\n    return total\n"  # the loop body is missing
    assert locate_bug_lines(prompt, dropped, [ref]) == [5]
    other = "    return sum(xs[1:])\n"  # another way entirely: the edit is too big to blame a line
    assert locate_bug_lines(prompt, other, [ref]) == []
    # a prompt without a final newline: the completion's first line is the prompt's last line
    assert locate_bug_lines(prompt.rstrip("\n"), off_by, [ref]) == [3]
    # the closest of several references wins
    assert locate_bug_lines(prompt, off_by, ["    return 0\n", ref]) == [4]


def test_truncate_completion_stops_at_next_top_level_block():
    assert truncate_completion("    return x\n\ndef other():\n    pass\n") == "    return x\n"


# --- git ---------------------------------------------------------------------------------------------


def _git(repo, *args):
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
            "PATH": "/usr/bin:/bin",
            "HOME": str(repo),
        },
    )


def test_from_git_labels_the_lines_each_fix_changed(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    buggy = (
        "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x >= hi:\n        return lo\n    return x\n"
    )
    (repo / "m.py").write_text(buggy)
    (repo / "README").write_text("hi\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "initial")
    fixed = buggy.replace("    if x >= hi:\n        return lo\n", "    if x > hi:\n        return hi\n")
    (repo / "m.py").write_text(fixed)
    _git(repo, "commit", "-qam", "Fix clamp upper bound (issue #12)")
    (repo / "m.py").write_text(fixed + "\n\ndef twice(x):\n    return 2 * x\n")
    _git(repo, "commit", "-qam", "Add twice")
    (repo / "m.py").write_text(fixed.replace("return x", "return int(x)") + "\n\ndef twice(x):\n    return 2 * x\n")
    _git(repo, "commit", "-qam", "fix typo in docs")  # not a logic fix by its subject
    samples = fix_samples(repo)
    assert len(samples) == 2 and samples[1].buggy_lines == [] and samples[1].id == samples[0].id + ":fixed"
    s = samples[0]
    assert s.code == buggy and s.buggy_lines == [4, 5] and s.language == "python" and s.operator == "git-fix"


def test_from_git_pure_insertion_and_messages():
    diff = "--- a/f.py\n+++ b/f.py\n@@ -3,0 +4,2 @@\n+    if x is None:\n+        return 0\n"
    assert changed_parent_lines(diff) == {"f.py": [4]}
    assert is_fix_message("Fix off-by-one in parser") and is_fix_message("closes #3\n\nbug in x")
    assert not is_fix_message("Add feature") and not is_fix_message("fix typo")


def test_from_git_not_a_repo(tmp_path):
    with pytest.raises(UsageError, match="not a git repository"):
        fix_samples(tmp_path)


@needs_isolation
def test_humaneval_samples_with_tiny_model(tiny_model_dir, tmp_path):
    """Greedy + temperature samples are generated in one batch, run, and recorded; a failure is labeled
    only at lines of its completion, and only when it is a small edit away from the canonical solution."""
    from click.testing import CliRunner

    from bot.cli import main

    out = tmp_path / "he.jsonl"
    r = CliRunner().invoke(
        main,
        [
            "data",
            "humaneval",
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--samples",
            "2",
            "--max-new-tokens",
            "8",
            "--limit",
            "3",
            "--batch-size",
            "2",
            "--timeout",
            "5",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    samples = read_jsonl(out)
    assert 3 <= len(samples) <= 6 and {s.path for s in samples} == {"HumanEval/0", "HumanEval/1", "HumanEval/2"}
    problems = {p["task_id"]: p for p in load_problems(limit=3)}
    for s in samples:
        prompt = problems[s.path]["prompt"]
        assert s.passed is False and s.code.startswith(prompt)
        assert all(prompt.count("\n") < ln <= s.code.count("\n") for ln in s.buggy_lines) and len(s.buggy_lines) <= 3
    # HumanEval/0's canonical body is 7 lines: 8 random tokens are never a 3-line edit of it
    assert all(s.buggy_lines == [] for s in samples if s.path == "HumanEval/0")
