"""Which added lines to score: all of them, or only those an AI coding agent wrote.

A line is AI-written when the commit that introduced it matches one of the configured rules:
an author/committer login (or name, or email local part) glob such as ``copilot*``, a
``Co-authored-by:`` trailer naming a known agent, a ``Generated-by:``/``Assisted-by:`` trailer, or a
PR label such as ``ai-generated`` that covers the whole PR. The rule that matched travels with each
line to the report, so a reviewer can see why a line was considered AI-written.

Where the per-line commit comes from is the caller's business (`LineAuthorship`): `bot.git_blame.GitBlame`
for local diffs; the GitHub half supplies the PR's commits (`bot.github_source`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import ReviewConfig, authored_by_problem, is_authored_by
from bot.diff import FileChange
from risk_core.errors import PttrustError


@dataclass(frozen=True)
class CommitInfo:
    """What the AI rules look at in one commit. Logins are GitHub logins where known, else None."""

    sha: str
    author_name: str = ""
    author_email: str = ""
    author_login: str | None = None
    committer_name: str = ""
    committer_email: str = ""
    committer_login: str | None = None
    message: str = ""


class LineAuthorship(Protocol):
    """Maps added lines to the commits that introduced them."""

    def commits_for(self, path: str, lines: list[int]) -> dict[int, CommitInfo | None]:
        """New-side line -> its commit (None when unknown, e.g. not committed yet)."""
        ...


@dataclass(frozen=True)
class AiRules:
    author_globs: tuple[str, ...]
    coauthor_globs: tuple[str, ...]
    trailers: tuple[str, ...]
    pr_labels: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: ReviewConfig) -> AiRules:
        return cls(
            tuple(cfg.ai_author_globs), tuple(cfg.ai_coauthor_globs), tuple(cfg.ai_trailers), tuple(cfg.ai_pr_labels)
        )


_TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.+?)\s*$")


def trailers(message: str) -> list[tuple[str, str]]:
    """The ``Key: value`` lines of a commit message's last paragraph (git's trailer block)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    found = []
    for line in paragraphs[-1].splitlines():
        m = _TRAILER.match(line)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def glob_regex(glob: str) -> re.Pattern:
    """``*`` and ``?`` are wildcards; everything else is literal, so ``*[bot]`` means a name ending
    in "[bot]" (fnmatch would read [bot] as a character class). Case-insensitive: "Copilot" and
    "copilot" are the same agent to a reviewer."""
    body = re.escape(glob).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{body}$", re.IGNORECASE)


def _match(value: str | None, globs: Iterable[str]) -> str | None:
    if not value:
        return None
    for g in globs:
        if glob_regex(g).match(value):
            return g
    return None


def classify_commit(commit: CommitInfo, rules: AiRules) -> str | None:
    """The AI rule this commit matches, as a short human sentence, or None."""
    for role, login, name, email in (
        ("author", commit.author_login, commit.author_name, commit.author_email),
        ("committer", commit.committer_login, commit.committer_name, commit.committer_email),
    ):
        local = email.split("@", 1)[0] if email else ""
        # GitHub's noreply addresses look like 12345+copilot@users.noreply.github.com.
        local = local.split("+", 1)[-1]
        for what, value in (("login", login), ("name", name), ("email", local)):
            g = _match(value, rules.author_globs)
            if g:
                return f"{role} {what} {value!r} matches {g!r}"
    wanted = {t.lower() for t in rules.trailers}
    for key, value in trailers(commit.message):
        if key.lower() in wanted:
            return f"trailer {key}: {value}"
        if key.lower() == "co-authored-by":
            name, _, email = value.partition("<")
            for candidate in (name.strip(), email.rstrip(">").split("@", 1)[0].split("+", 1)[-1]):
                g = _match(candidate, rules.coauthor_globs)
                if g:
                    return f"trailer Co-authored-by: {value} matches {g!r}"
    return None


def classify_labels(labels: Iterable[str], rules: AiRules) -> str | None:
    wanted = {l.lower() for l in rules.pr_labels}
    for label in labels:
        if label.lower() in wanted:
            return f"PR label {label!r}"
    return None


@dataclass
class Selection:
    """Per file, the added lines chosen for scoring and why each counts as AI-written."""

    lines: dict[str, list[int]] = field(default_factory=dict)
    rules: dict[tuple[str, int], str] = field(default_factory=dict)
    """(path, line) -> the AI rule that matched (absent with --authored-by all)."""
    not_ai: dict[str, int] = field(default_factory=dict)
    """path -> number of added lines left out because no AI rule matched."""


def select_lines(
    changes: list[FileChange],
    authored_by: str,
    rules: AiRules,
    authorship: LineAuthorship | None = None,
    pr_labels: Iterable[str] = (),
) -> Selection:
    """Choose the added lines to score.

    ``authored_by="all"`` takes every added line. ``"ai"`` takes a line when the PR carries an AI
    label or the line's commit matches an AI rule; that needs `authorship` unless a label matched.
    """
    sel = Selection()
    if not is_authored_by(authored_by):
        raise PttrustError(f"--authored-by {authored_by_problem(authored_by)}", 2)
    label_rule = classify_labels(pr_labels, rules) if authored_by == "ai" else None
    for change in changes:
        if not change.added_lines:
            continue
        if authored_by == "all" or label_rule:
            sel.lines[change.path] = list(change.added_lines)
            if label_rule:
                sel.rules.update({(change.path, n): label_rule for n in change.added_lines})
            continue
        if authorship is None:
            raise PttrustError(
                "--authored-by ai needs commit information (a git repository "
                "via --repo, or a pull request); use --authored-by all",
                2,
            )
        commits = authorship.commits_for(change.path, change.added_lines)
        verdicts: dict[str, str | None] = {}
        chosen = []
        for n in change.added_lines:
            commit = commits.get(n)
            if commit is None:
                continue
            if commit.sha not in verdicts:
                verdicts[commit.sha] = classify_commit(commit, rules)
            rule = verdicts[commit.sha]
            if rule:
                chosen.append(n)
                sel.rules[(change.path, n)] = f"{rule} (commit {commit.sha[:10]})"
        if chosen:
            sel.lines[change.path] = chosen
        if len(chosen) < len(change.added_lines):
            sel.not_ai[change.path] = len(change.added_lines) - len(chosen)
    return sel
