"""bot.select: which added lines count as AI-written, and why."""

from __future__ import annotations

import subprocess

import pytest

from bot.config import ReviewConfig
from bot.diff import parse_diff
from bot.git_blame import GitBlame
from bot.select import AiRules, CommitInfo, classify_commit, select_lines, trailers

RULES = AiRules.from_config(ReviewConfig())


@pytest.mark.parametrize(
    "commit, expected",
    [
        (CommitInfo("a", author_login="copilot-swe-agent[bot]"), "author login"),
        (CommitInfo("a", author_name="Devin-AI-Integration[bot]"), "author name"),
        (CommitInfo("a", committer_email="123+claude@users.noreply.github.com"), "committer email"),
        (CommitInfo("a", message="Fix\n\nCo-authored-by: Claude <noreply@anthropic.com>\n"), "Co-authored-by"),
        (CommitInfo("a", message="Fix\n\nGenerated-by: some tool\n"), "trailer Generated-by"),
        (CommitInfo("a", message="Fix\n\nAssisted-by: Cursor\n"), "trailer Assisted-by"),
    ],
)
def test_ai_rules_match_and_say_why(commit, expected):
    assert expected in classify_commit(commit, RULES)


def test_human_commit_is_not_ai():
    human = CommitInfo(
        "a",
        author_name="Ada",
        author_email="ada@example.com",
        message="Fix\n\nCo-authored-by: Bob <bob@example.com>\nReviewed-by: Eve",
    )
    assert classify_commit(human, RULES) is None


def test_trailers_only_in_last_paragraph():
    assert trailers("Generated-by: x\n\nbody") == []
    assert trailers("subject\n\nbody\n\nA-b: c\nD: e") == [("A-b", "c"), ("D", "e")]


DIFF = "--- a/m.py\n+++ b/m.py\n@@ -1,1 +1,3 @@\n a\n+b\n+c\n"


class FakeAuthorship:
    def __init__(self, commits):
        self.commits = commits

    def commits_for(self, path, lines):
        return {n: self.commits.get(n) for n in lines}


def test_select_ai_lines_only_with_rule_recorded():
    changes = parse_diff(DIFF).files
    auth = FakeAuthorship({2: CommitInfo("c0ffee", author_login="copilot"), 3: CommitInfo("beef", author_name="Ada")})
    sel = select_lines(changes, "ai", RULES, auth)
    assert sel.lines == {"m.py": [2]}
    assert "copilot" in sel.rules[("m.py", 2)] and "c0ffee" in sel.rules[("m.py", 2)]
    assert sel.not_ai == {"m.py": 1}


def test_pr_label_selects_everything():
    sel = select_lines(parse_diff(DIFF).files, "ai", RULES, None, pr_labels=["AI-Generated"])
    assert sel.lines == {"m.py": [2, 3]} and "PR label" in sel.rules[("m.py", 3)]


def test_all_needs_no_authorship():
    assert select_lines(parse_diff(DIFF).files, "all", RULES).lines == {"m.py": [2, 3]}


def _git(repo, *args, env=None):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def test_git_blame_finds_the_commit_of_each_line(tmp_path):
    import os

    base = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    _git(tmp_path, "init", "-q")
    (tmp_path / "m.py").write_text("a\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-qm", "init", env=base)
    (tmp_path / "m.py").write_text("a\nb\n")
    _git(
        tmp_path,
        "-c",
        "user.name=Ada",
        "-c",
        "user.email=ada@example.com",
        "commit",
        "-qam",
        "add b\n\nCo-authored-by: Copilot <copilot@users.noreply.github.com>",
        env=base,
    )
    (tmp_path / "m.py").write_text("a\nb\nc\n")  # not committed yet
    commits = GitBlame(tmp_path).commits_for("m.py", [2, 3])
    assert commits[3] is None
    assert commits[2].author_name == "Ada"
    sel = select_lines(parse_diff(DIFF).files, "ai", RULES, GitBlame(tmp_path))
    assert sel.lines == {"m.py": [2]} and "Co-authored-by" in sel.rules[("m.py", 2)]
    (tmp_path / "new.py").write_text("x\n")  # untracked: no commit, not AI, not an error
    assert GitBlame(tmp_path).commits_for("new.py", [1]) == {1: None}
