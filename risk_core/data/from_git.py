"""Real bugs from history: bug-fix commits of a git repository, labeled at the lines each fix changed.

For a fix commit C with parent P, the sample is (a window of) the file as it was in P, the buggy
version, and its buggy lines are the P-side lines the fix deleted or replaced. A fix that only adds
lines (a missing guard) labels the P line that stands where the addition goes, the same convention as
the ``remove_statement`` mutant.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from risk_core.data.jsonl import Sample
from risk_core.data.mutate import EXTENSIONS
from risk_core.errors import UsageError

FIX_PATTERN = re.compile(
    r"\b(fix(e[sd])?|bug(fix)?|hotfix|issue\s*#?\d+|closes\s+#\d+|resolves\s+#\d+|fault|defect|crash|"
    r"regression|off[- ]by[- ]one|wrong|incorrect)\b",
    re.IGNORECASE,
)
# Commits that say "fix" but do not fix program logic.
NOT_A_FIX = re.compile(
    r"\b(typo|docs?|documentation|readme|changelog|lint|format(ting)?|whitespace|"
    r"spelling|comment|ci|test(s)?)\b",
    re.IGNORECASE,
)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _git(repo: Path, *args: str) -> str:
    try:
        res = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120, errors="replace"
        )
    except FileNotFoundError:
        raise UsageError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {args[0]} timed out in {repo}") from None
    if res.returncode != 0:
        why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode
        raise UsageError(f"git {args[0]} failed in {repo}: {why}")
    return res.stdout


def is_fix_message(message: str) -> bool:
    subject = message.strip().splitlines()[0] if message.strip() else ""
    return bool(FIX_PATTERN.search(message)) and not NOT_A_FIX.search(subject)


def changed_parent_lines(diff: str) -> dict[str, list[int]]:
    """{path in the parent: 1-based parent lines the diff removed/replaced (or where it inserted)}."""
    out: dict[str, list[int]] = {}
    path = None
    for line in diff.splitlines():
        if line.startswith("--- "):
            path = line[4:].strip()
            path = None if path == "/dev/null" else path[2:] if path.startswith("a/") else path
        elif line.startswith("@@") and path is not None:
            m = _HUNK.match(line)
            if not m:
                continue
            start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
            lines = list(range(start, start + count)) if count > 0 else [start + 1]
            out.setdefault(path, []).extend(lines)
    return out


def _window(text: str, lines: list[int], context: int, max_lines: int) -> tuple[str, list[int], int]:
    """Cut ``text`` to the changed lines +- context (whole file when short); returns (code, relabeled, first)."""
    all_lines = text.splitlines()
    n = len(all_lines)
    lines = [min(max(1, ln), n) for ln in lines]
    if n <= max_lines:
        return "\n".join(all_lines) + "\n", sorted(set(lines)), 1
    lo = max(1, min(lines) - context)
    hi = min(n, max(lines) + context)
    code = "\n".join(all_lines[lo - 1 : hi]) + "\n"
    return code, sorted({ln - lo + 1 for ln in lines}), lo


def fix_samples(
    repo: str | Path,
    max_commits: int = 1000,
    max_changed_lines: int = 6,
    context: int = 20,
    max_lines: int = 80,
    languages: set[str] | None = None,
    rev: str = "HEAD",
) -> list[Sample]:
    """Samples from the bug-fix commits reachable from ``rev`` (newest first, at most ``max_commits``
    commits looked at). Fixes that touch more than ``max_changed_lines`` parent lines of a file are
    skipped (a refactor, not a localised bug); test files are skipped."""
    repo = Path(repo)
    if not (repo / ".git").exists() and not _is_repo(repo):
        raise UsageError(f"{repo}: not a git repository")
    log = _git(repo, "log", "--no-merges", f"-n{max_commits}", "--format=%H%x00%P%x00%B%x1e", rev)
    samples: list[Sample] = []
    for rec in log.split("\x1e"):
        rec = rec.strip("\n")
        if not rec:
            continue
        sha, parents, message = (rec.split("\x00") + ["", ""])[:3]
        parents = parents.split()
        if len(parents) != 1 or not is_fix_message(message):
            continue
        parent = parents[0]
        diff = _git(repo, "diff", "--unified=0", "--no-color", "--no-renames", parent, sha)
        for path, lines in changed_parent_lines(diff).items():
            lang = EXTENSIONS.get(Path(path).suffix.lower())
            if lang is None or (languages and lang not in languages):
                continue
            if re.search(r"(^|/)(tests?|testing)/|(^|/)test_|_test\.|Test\.java$|\.test\.js$", path):
                continue
            if len(set(lines)) > max_changed_lines:
                continue
            try:
                text = _git(repo, "show", f"{parent}:{path}")
            except UsageError:
                continue
            if not text.strip():
                continue
            code, labels, first = _window(text, lines, context, max_lines)
            samples.append(
                Sample(
                    id=f"{repo.name}:{sha[:12]}:{path}",
                    language=lang,
                    path=f"{repo.name}:{path}@{parent[:12]}#L{first}",
                    code=code,
                    buggy_lines=labels,
                    operator="git-fix",
                    passed=None,
                )
            )
    return samples


def _is_repo(path: Path) -> bool:
    try:
        return _git(path, "rev-parse", "--is-inside-work-tree").strip() == "true"
    except UsageError:
        return False
