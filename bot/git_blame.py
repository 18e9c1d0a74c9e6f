"""`bot.select.LineAuthorship` for a local repository: ``git blame`` on its working tree, so that
``pttrust review --authored-by ai`` can tell AI-written lines of a local diff (the AI rules themselves
are in `bot.select`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bot.select import CommitInfo
from risk_core.errors import PttrustError


class GitBlame:
    """`LineAuthorship` from ``git blame --porcelain`` on the working tree of a local repository.

    One blame per file (all its ranges at once) and one ``git show`` per distinct commit, cached:
    a review touches few commits, and blame is the slow part.
    """

    def __init__(self, repo: str | Path):
        self.repo = Path(repo)
        self._messages: dict[str, str] = {}

    def _git(self, *args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", "-C", str(self.repo), *args], capture_output=True, text=True, errors="replace", check=False
            )
        except FileNotFoundError:
            raise PttrustError("git is not installed; --authored-by ai needs it for local diffs") from None
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["unknown error"])[0]
            raise PttrustError(f"git {args[0]} failed in {self.repo}: {first}")
        return proc.stdout

    def commits_for(self, path: str, lines: list[int]) -> dict[int, CommitInfo | None]:
        ranges: list[str] = []
        for start, end in _runs(sorted(set(lines))):
            ranges += ["-L", f"{start},{end}"]
        try:
            out = self._git("blame", "--porcelain", *ranges, "--", path)
        except PttrustError as err:
            if "no such path" in str(err):
                # A new file that is not committed yet: no commit, so no author to judge.
                return {n: None for n in lines}
            raise
        headers: dict[str, dict[str, str]] = {}
        line_sha: dict[int, str] = {}
        current: str | None = None
        final_line = 0
        for raw in out.splitlines():
            if raw.startswith("\t"):
                continue  # the line's content
            parts = raw.split(" ")
            if len(parts) >= 3 and re.fullmatch(r"[0-9a-f]{40}", parts[0]):
                current, final_line = parts[0], int(parts[2])
                headers.setdefault(current, {})
                line_sha[final_line] = current
            elif current is not None:
                key, _, value = raw.partition(" ")
                headers[current].setdefault(key, value)
        commits: dict[str, CommitInfo | None] = {}
        for sha, h in headers.items():
            if set(sha) == {"0"}:
                commits[sha] = None  # not committed yet: no author to judge
                continue
            commits[sha] = CommitInfo(
                sha=sha,
                author_name=h.get("author", ""),
                author_email=h.get("author-mail", "").strip("<>"),
                committer_name=h.get("committer", ""),
                committer_email=h.get("committer-mail", "").strip("<>"),
                message=self._message(sha),
            )
        wanted = set(lines)
        return {n: commits[sha] for n, sha in line_sha.items() if n in wanted}

    def _message(self, sha: str) -> str:
        if sha not in self._messages:
            self._messages[sha] = self._git("show", "-s", "--format=%B", sha)
        return self._messages[sha]


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs
