"""File names as git and GitHub write them (issue 14 item 5): a name holding `` b/``, quoted names
(``"b/\\303\\251.py"``), tabs, quotes, backslashes, newlines. Table-driven: every name with every kind of
change, once as real `git diff` output (`bot.diff.parse_diff`) and once as GitHub's file list
(`bot.github_source.pull_diff`, which keeps the API's ``filename``)."""

from __future__ import annotations

import subprocess

import pytest

from bot.diff import parse_diff
from bot.diff_names import quote_path, unquote_path
from bot.github_source import PullFile, assemble_diff, pull_diff

NAMES = [
    "plain.py",
    "dir/sub/file.py",
    "with space.py",
    "x b/y.py",
    "a b/c d.py",
    "tab\there.py",
    'quo"te.py',
    "back\\slash.py",
    "é.py",
    "日本/語.py",
    "new\nline.py",
    "b/starts-with-b.py",
]
GITHUB_STATUSES = ["added", "removed", "modified", "renamed", "copied", "changed"]
PATCH = "@@ -1,2 +1,3 @@\n a = 1\n+b = 2\n c = 3\n"


def _github_file(name: str, status: str) -> PullFile:
    if status == "added":
        return PullFile(name, status, None, "@@ -0,0 +1,2 @@\n+a = 1\n+b = 2\n", "0" * 40)
    if status == "removed":
        return PullFile(name, status, None, "@@ -1,2 +0,0 @@\n-a = 1\n-b = 2\n", "0" * 40)
    if status in ("renamed", "copied"):
        return PullFile(name, status, "old/" + name, PATCH, "0" * 40)
    return PullFile(name, status, None, PATCH, "0" * 40)


@pytest.mark.parametrize("status", GITHUB_STATUSES)
@pytest.mark.parametrize("name", NAMES, ids=[ascii(n) for n in NAMES])
def test_github_file_names_are_taken_as_the_api_gives_them(name, status):
    """12 names x 6 statuses = the 72 cases; 10 raised and 1 was truncated before."""
    f = _github_file(name, status)
    (change,) = pull_diff([PullFile("other.py", "modified", None, PATCH, "1" * 40), f]).files[1:]
    assert change.path == name
    if status == "added":
        assert change.status == "added" and change.old_path is None and change.added_lines == [1, 2]
    elif status == "removed":
        assert change.status == "deleted" and change.old_path == name and change.added_lines == []
    elif status in ("renamed", "copied"):
        assert change.status == "renamed" and change.old_path == "old/" + name and change.added_lines == [2]
    else:
        assert change.status == "modified" and change.old_path == name and change.added_lines == [2]
    # The text form quotes like git, and reads back to the same names.
    (again,) = parse_diff(assemble_diff([f])).files
    assert (again.path, again.old_path, again.status, again.added_lines) == (
        change.path,
        change.old_path,
        change.status,
        change.added_lines,
    )


def _git(cwd, *args, input=None):
    return subprocess.run(
        ["git", "-c", "core.quotePath=true", *args], cwd=cwd, check=True, capture_output=True, input=input
    ).stdout


@pytest.fixture(scope="module")
def git_diffs(tmp_path_factory):
    """Real `git diff` output for every name: added, deleted, modified, renamed, copied, mode change."""
    root = tmp_path_factory.mktemp("names")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    for i, name in enumerate(NAMES):
        for kind in ("modified", "deleted", "renamed", "copied", "mode"):
            p = root / kind / str(i) / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"a = {i}\nc = 3\nd = 4\ne = 5\nkind = {kind!r}\n" + f"# {kind} {i}\n" * 8)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    for i, name in enumerate(NAMES):
        base = {
            k: f"a = {i}\nc = 3\nd = 4\ne = 5\nkind = {k!r}\n" + f"# {k} {i}\n" * 8
            for k in ("modified", "renamed", "copied")
        }
        (root / "modified" / str(i) / name).write_text(
            base["modified"].replace("a = ", "a = ", 1).replace("\nc = 3", "\nb = 2\nc = 3", 1)
        )
        (root / "deleted" / str(i) / name).unlink()
        new = root / "renamed" / str(i) / ("moved-" + name.replace("/", "_"))
        (root / "renamed" / str(i) / name).rename(new)
        new.write_text(base["renamed"].replace("e = 5\n", "e = 5\nf = 6\n"))
        copy = root / "copied" / str(i) / ("copy-" + name.replace("/", "_"))
        copy.write_text(base["copied"].replace("e = 5\n", "e = 5\ng = 7\n"))
        (root / "mode" / str(i) / name).chmod(0o755)
        added = root / "added" / str(i) / name
        added.parent.mkdir(parents=True, exist_ok=True)
        added.write_text("x = 1\ny = 2\n")
    _git(root, "add", "-A")
    data = _git(root, "diff", "--cached", "-M", "-C", "--find-copies-harder")
    return parse_diff(data)


@pytest.mark.parametrize("kind", ["added", "deleted", "modified", "renamed", "copied", "mode-change"])
@pytest.mark.parametrize("i", range(len(NAMES)), ids=[ascii(n) for n in NAMES])
def test_git_diff_names_are_read_as_git_writes_them(git_diffs, i, kind):
    name = NAMES[i]
    by_path = {c.path: c for c in git_diffs.files}
    if kind == "added":
        c = by_path[f"added/{i}/{name}"]
        assert (c.status, c.old_path, c.added_lines) == ("added", None, [1, 2])
    elif kind == "deleted":
        c = by_path[f"deleted/{i}/{name}"]
        assert (c.status, c.old_path) == ("deleted", f"deleted/{i}/{name}")
    elif kind == "modified":
        c = by_path[f"modified/{i}/{name}"]
        assert (c.status, c.old_path, c.added_lines) == ("modified", f"modified/{i}/{name}", [2])
        assert c.added_text[2] == "b = 2"
    elif kind == "renamed":
        c = by_path[f"renamed/{i}/moved-{name.replace('/', '_')}"]
        assert (c.status, c.old_path, c.added_lines) == ("renamed", f"renamed/{i}/{name}", [5])
    elif kind == "copied":
        c = by_path[f"copied/{i}/copy-{name.replace('/', '_')}"]
        assert c.added_lines == [5] and c.old_path == f"copied/{i}/{name}"
    else:
        c = by_path[f"mode/{i}/{name}"]
        assert (c.status, c.old_mode, c.new_mode) == ("mode-change", "100644", "100755")


def test_a_removed_line_reading_like_a_header_stays_a_line():
    diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n--- not a header\n+++ nor this\n a\n"
    (c,) = parse_diff(diff).files
    assert c.path == "x.py" and c.added_text == {1: "++ nor this"}


@pytest.mark.parametrize("name", NAMES, ids=[ascii(n) for n in NAMES])
def test_quote_round_trip(name):
    quoted = quote_path(name)
    assert (unquote_path(quoted)[0] if quoted.startswith('"') else quoted) == name
    assert quote_path("é.py") == '"\\303\\251.py"'
