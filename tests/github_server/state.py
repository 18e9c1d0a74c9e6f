"""The loopback server's world: repositories, commits (as whole-tree snapshots), pull requests and
everything posted to them. Plain Python objects; the server turns them into GitHub's JSON.

Simplifications (deliberate, documented): a commit stores its full tree as ``{path: text}``; a pull
request's diff is taken against its base commit (no merge base); after a push a review comment whose
line no longer holds the same text becomes outdated (``line`` null) instead of being re-mapped.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field

_ids = itertools.count(1000)


def next_id() -> int:
    return next(_ids)


@dataclass
class Commit:
    sha: str
    parents: list[str]
    tree: dict[str, str]
    message: str
    author_login: str | None
    committer_login: str | None
    author_name: str
    author_email: str
    committer_name: str
    committer_email: str


@dataclass
class Pull:
    number: int
    id: int
    title: str
    body: str
    base_ref: str
    head_ref: str
    base_sha: str
    head_sha: str
    user_login: str
    labels: list[str]
    draft: bool = False


@dataclass
class Repo:
    owner: str
    name: str
    private: bool = False
    """A private repository answers 404 to anonymous reads."""
    id: int = field(default_factory=next_id)
    commits: dict[str, Commit] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # name -> description
    reviews: dict[int, dict] = field(default_factory=dict)
    review_comments: dict[int, dict] = field(default_factory=dict)
    issue_comments: dict[int, dict] = field(default_factory=dict)
    check_runs: dict[int, dict] = field(default_factory=dict)
    statuses: list[dict] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # -- building history (test setup) -------------------------------------------------------------
    def commit(
        self,
        files: dict[str, str | None],
        parent: str | None = None,
        message: str = "change",
        author_login: str | None = "octocat",
        committer_login: str | None = None,
        author_name: str = "Octo Cat",
        author_email: str = "octocat@example.com",
        committer_name: str | None = None,
        committer_email: str | None = None,
    ) -> str:
        """A new commit whose tree is ``parent``'s with ``files`` applied (None deletes a path)."""
        tree = dict(self.commits[parent].tree) if parent else {}
        for path, text in files.items():
            if text is None:
                tree.pop(path, None)
            else:
                tree[path] = text
        seed = f"{parent}|{message}|{sorted(tree.items())}|{next_id()}"
        sha = hashlib.sha1(seed.encode()).hexdigest()
        self.commits[sha] = Commit(
            sha,
            [parent] if parent else [],
            tree,
            message,
            author_login,
            committer_login if committer_login is not None else author_login,
            author_name,
            author_email,
            committer_name or author_name,
            committer_email or author_email,
        )
        return sha

    def open_pull(
        self,
        base_sha: str,
        head_sha: str,
        title: str = "A change",
        body: str = "",
        labels: list[str] = (),
        user_login: str = "octocat",
        base_ref: str = "main",
        head_ref: str = "feature",
    ) -> Pull:
        number = max(self.pulls, default=0) + 1
        for label in labels:
            self.labels.setdefault(label, "")
        pull = Pull(number, next_id(), title, body, base_ref, head_ref, base_sha, head_sha, user_login, list(labels))
        self.pulls[number] = pull
        return pull

    def push(
        self,
        number: int,
        files: dict[str, str | None],
        message: str = "push",
        author_login: str | None = "octocat",
        **kw,
    ) -> str:
        """A new commit on the pull request's head; outdates review comments whose line changed."""
        pull = self.pulls[number]
        pull.head_sha = self.commit(files, parent=pull.head_sha, message=message, author_login=author_login, **kw)
        head_tree = self.commits[pull.head_sha].tree
        for comment in self.review_comments.values():
            if comment["pull_number"] != number or comment["line"] is None:
                continue
            lines = head_tree.get(comment["path"], "").splitlines()
            still = 0 < comment["line"] <= len(lines) and lines[comment["line"] - 1] == comment["_line_text"]
            if not still:
                comment["line"] = None
                comment["start_line"] = None
        return pull.head_sha

    # -- derived views ------------------------------------------------------------------------------
    def pull_commits(self, pull: Pull) -> list[Commit]:
        """Commits reachable from head and not from base, oldest first (first parents only)."""
        out, sha = [], pull.head_sha
        while sha and sha != pull.base_sha:
            commit = self.commits[sha]
            out.append(commit)
            sha = commit.parents[0] if commit.parents else None
        return out[::-1]

    def pull_files(self, pull: Pull) -> list[dict]:
        base = self.commits[pull.base_sha].tree
        head = self.commits[pull.head_sha].tree
        files = []
        for path in sorted(set(base) | set(head)):
            old, new = base.get(path), head.get(path)
            if old == new:
                continue
            status = "added" if old is None else "removed" if new is None else "modified"
            patch = make_patch(old or "", new or "")
            adds = sum(1 for ln in patch.splitlines() if ln.startswith("+"))
            dels = sum(1 for ln in patch.splitlines() if ln.startswith("-"))
            files.append(
                {
                    "filename": path,
                    "status": status,
                    "patch": patch,
                    "additions": adds,
                    "deletions": dels,
                    "sha": blob_sha(new if new is not None else old),
                }
            )
        return files


def blob_sha(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_patch(old: str, new: str) -> str:
    """GitHub's ``patch`` field: the unified diff hunks without the ---/+++ header."""
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3))
    return "\n".join(lines[2:])


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def commentable_lines(patch: str) -> list[set[int]]:
    """Per hunk, the new-side (RIGHT) line numbers a review comment may target: added + context."""
    hunks: list[set[int]] = []
    line = 0
    for text in patch.splitlines():
        m = _HUNK.match(text)
        if m:
            line = int(m.group(1))
            hunks.append(set())
        elif hunks and text.startswith(("+", " ")):
            hunks[-1].add(line)
            line += 1
    return hunks


@dataclass
class TokenInfo:
    login: str
    checks_write: bool = True
    """Whether the token may create check runs (a GITHUB_TOKEN without ``checks: write`` may not)."""
    anonymous: bool = False
    """A request without a token (reads of public repositories only)."""
    user_api: bool = True
    """Whether GET /user answers (False: a GitHub App installation token or an Actions GITHUB_TOKEN,
    which GitHub answers 403 "Resource not accessible by integration")."""


class GitHubState:
    """All repositories plus the tokens the server accepts."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, TokenInfo] = {}
        self.lock = threading.RLock()

    def create_repo(self, owner: str = "octo", name: str = "demo") -> Repo:
        repo = Repo(owner, name)
        self.repos[repo.full_name] = repo
        return repo

    def repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get(f"{owner}/{name}")
