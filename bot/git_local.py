"""Local git shortcuts for `pttrust review --staged` (the pre-commit hook) and ``--base REF``.

``--staged`` reviews ``git diff --cached``; the new side is read from the index, so a partially
staged file is scored as it will be committed, not as it lies in the working tree. ``--base REF``
reviews ``git diff REF...HEAD`` (what a pull request of HEAD against REF would show: the changes
since their merge base), with the new side read from HEAD.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.context import SourceReader
from risk_core.errors import UsageError

_DIFF = ["diff", "--no-color", "--no-ext-diff", "--no-renames", "--src-prefix=a/", "--dst-prefix=b/", "-U3"]


def _git(repo: str | Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed") from None


def _check_repo(repo: str | Path) -> None:
    res = _git(repo, "rev-parse", "--git-dir")
    if res.returncode != 0:
        raise UsageError(f"{repo} is not a git repository")


def staged_diff(repo: str | Path) -> bytes:
    """The staged changes (``git diff --cached``)."""
    _check_repo(repo)
    res = _git(repo, *_DIFF, "--cached")
    if res.returncode != 0:
        raise UsageError(f"git diff --cached failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def base_diff(repo: str | Path, ref: str) -> bytes:
    """The changes of HEAD since its merge base with ``ref`` (``git diff REF...HEAD``)."""
    _check_repo(repo)
    if ref.startswith("-"):
        raise UsageError(f"--base: not a revision: {ref}")
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise UsageError(f"--base: unknown revision {ref!r}")
    res = _git(repo, *_DIFF, f"{ref}...HEAD", "--")
    if res.returncode != 0:
        raise UsageError(f"git diff {ref}...HEAD failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def revision_reader(repo: str | Path, rev: str) -> SourceReader:
    """New-side contents from git: ``rev=""`` reads the index (staged), else ``rev:path``."""

    def read(path: str) -> bytes | None:
        if path.startswith("/") or ".." in Path(path).parts:
            return None  # a diff is untrusted input: stay inside the repository
        res = _git(repo, "cat-file", "blob", f"{rev}:{path}")
        return res.stdout if res.returncode == 0 else None

    return read
