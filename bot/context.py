"""New-side file contents for the lines chosen to score, one request per file.

The model needs each changed line in its file's context, so each touched file is read once (the
working tree for local diffs, the PR head for GitHub) and sent as one `FileToScore` carrying all of
its target lines: one encoding per file, however many lines it has.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.diff import FileChange, decode
from risk_core.types import FileToScore

SourceReader = Callable[[str], "bytes | None"]
"""path (repo-relative, '/'-separated) -> new-side bytes, or None when the file does not exist."""


def working_tree_reader(repo: str | Path) -> SourceReader:
    """Read new-side files from a directory (the working tree of a local checkout)."""
    root = Path(repo).resolve()

    def read(path: str) -> bytes | None:
        target = (root / path).resolve()
        # A diff is untrusted input: never read outside the repository (../../etc/passwd).
        if root not in target.parents and target != root:
            return None
        try:
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    return read


def path_matches(path: str, pattern: str) -> bool:
    """gitattributes-style match: a pattern without '/' matches the basename at any depth;
    one with '/' matches from the repository root; '**' and a trailing '/' (a directory) work."""
    pattern = pattern.strip()
    if not pattern:
        return False
    if pattern.endswith("/"):
        pattern += "**"
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    pattern = pattern.lstrip("/")
    if fnmatch.fnmatchcase(path, pattern):
        return True
    # "a/**/b" should also match "a/b".
    return "**/" in pattern and fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


@dataclass
class GitAttributes:
    """The linguist-generated / linguist-vendored rules of a root .gitattributes (last match wins)."""

    rules: list[tuple[str, str, bool]]  # (pattern, attribute, set?)

    @classmethod
    def parse(cls, text: str) -> GitAttributes:
        rules: list[tuple[str, str, bool]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, *attrs = line.split()
            for attr in attrs:
                value = True
                if attr.startswith(("-", "!")):
                    attr, value = attr[1:], False
                elif "=" in attr:
                    attr, raw = attr.split("=", 1)
                    value = raw.lower() not in ("false", "0", "no")
                if attr in ("linguist-generated", "linguist-vendored"):
                    rules.append((pattern, attr, value))
        return cls(rules)

    def flag(self, path: str) -> str | None:
        state: dict[str, bool] = {}
        for pattern, attr, value in self.rules:
            if path_matches(path, pattern):
                state[attr] = value
        for attr in ("linguist-generated", "linguist-vendored"):
            if state.get(attr):
                return attr
        return None


def skip_reason(path: str, skip_globs: Iterable[str], attributes: GitAttributes | None) -> str | None:
    """Why a path is generated/vendored and not scored, or None."""
    for g in skip_globs:
        if path_matches(path, g):
            return f"generated/vendored path (matches {g!r})"
    if attributes is not None:
        flag = attributes.flag(path)
        if flag:
            return f"marked {flag} in .gitattributes"
    return None


@dataclass
class Context:
    requests: list[FileToScore]
    skipped: list[tuple[str, str]]
    warnings: list[str]
    texts: dict[str, list[str]]
    """path -> new-side lines, for reports that show the code around a finding."""


def build_requests(
    changes: list[FileChange], selected: dict[str, list[int]], read: SourceReader, max_file_bytes: int = 0
) -> Context:
    """Read each file that has selected lines once and build one scoring request for it.

    A file is skipped with a reason, never dropped silently, when it is missing, too large, or its
    content disagrees with what the diff says the added lines hold (a stale checkout would
    otherwise get scores for the wrong lines).
    """
    ctx = Context([], [], [], {})
    for change in changes:
        lines = selected.get(change.path)
        if not lines:
            continue
        data = read(change.path)
        if data is None:
            ctx.skipped.append((change.path, "new-side file not found (is the diff applied to --repo?)"))
            continue
        if max_file_bytes and len(data) > max_file_bytes:
            ctx.skipped.append((change.path, f"file is {len(data)} bytes, over the limit of {max_file_bytes} bytes"))
            continue
        if b"\0" in data[:8000]:
            ctx.skipped.append((change.path, "binary content in the working tree"))
            continue
        text, warnings = decode(data, change.path)
        ctx.warnings += warnings
        file_lines = [l.rstrip("\r") for l in text.split("\n")]
        if file_lines and file_lines[-1] == "" and text.endswith("\n"):
            file_lines.pop()
        mismatch = next(
            (
                n
                for n in lines
                if n > len(file_lines) or file_lines[n - 1] != change.added_text.get(n, file_lines[n - 1])
            ),
            None,
        )
        if mismatch is not None:
            ctx.skipped.append(
                (change.path, f"file content differs from the diff at line {mismatch} (is the diff applied to --repo?)")
            )
            continue
        ctx.texts[change.path] = file_lines
        ctx.requests.append(FileToScore(change.path, text, sorted(lines)))
    return ctx
