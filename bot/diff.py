"""Unified diff -> plain dataclasses (`FileChange`), the first step of `pttrust review`.

unidiff does the parsing; this module turns its objects into plain data that the rest of the
pipeline (and the GitHub half) can use without knowing unidiff, and it names every oddity that git
can put in a diff (binary files, mode changes, submodules, renames, CRLF, missing final newline,
undecodable bytes) so that later stages can say why a file was not scored instead of dropping it.
"""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from unidiff.constants import RE_HUNK_HEADER
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from bot.diff_names import normalize_headers, real_name
from risk_core.errors import UsageError

# Statuses a FileChange can have. "binary", "mode-change" and "submodule" win over the
# added/modified/renamed distinction because they decide whether there is any text to score.
STATUSES = ("added", "modified", "deleted", "renamed", "binary", "mode-change", "submodule")

_SUBPROJECT = re.compile(r"^Subproject commit ([0-9a-f]{7,64})\s*$")
_MODE = re.compile(r"^(old|new|new file|deleted file) mode (\d{6})\s*$", re.MULTILINE)


@dataclass
class Hunk:
    """One ``@@`` block; line numbers are 1-based on their side."""

    source_start: int
    source_length: int
    target_start: int
    target_length: int
    section_header: str
    lines: list[tuple[str, int | None, str]]
    """(kind, new-side line number or None for removed lines, text without line ending);
    kind is '+', '-' or ' '."""

    @property
    def added_lines(self) -> list[int]:
        return [n for kind, n, _ in self.lines if kind == "+" and n is not None]


@dataclass
class FileChange:
    """One file of a diff, as plain data."""

    path: str
    """New-side path (the old path for a deleted file), without the a/ b/ prefixes."""
    old_path: str | None
    """Old-side path; None for an added file."""
    status: str
    """One of STATUSES."""
    added_lines: list[int] = field(default_factory=list)
    """New-side 1-based numbers of the lines this diff adds."""
    added_text: dict[int, str] = field(default_factory=dict)
    """New-side line number -> the text the diff says it holds (used to check the context)."""
    hunks: list[Hunk] = field(default_factory=list)
    is_binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    no_newline_at_end: bool = False
    """The new side ends without a final newline ("\\ No newline at end of file")."""
    crlf: bool = False
    """Added lines end in CRLF."""
    submodule_commit: str | None = None
    """For a submodule change, the new commit it points to."""


@dataclass
class ParsedDiff:
    files: list[FileChange]
    warnings: list[str] = field(default_factory=list)
    """Things the user should know that do not stop the run (e.g. undecodable bytes)."""


def read_diff(source: str | Path) -> bytes:
    """Read a diff from a path or ``-`` (stdin), as bytes so that decoding stays ours."""
    if str(source) == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:  # `<&-`: Python has no stdin at all
            raise UsageError("--diff -: standard input is closed; pipe a diff in or pass a path")
        try:
            return stdin.read()
        except (OSError, ValueError) as err:
            raise UsageError(
                f"--diff -: cannot read standard input ({getattr(err, 'strerror', None) or err})"
            ) from None
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"diff not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"diff is a directory: {path}") from None
    except OSError as err:
        raise UsageError(f"cannot read diff {path}: {err.strerror}") from None


def printable_line(text: str, limit: int = 160) -> str:
    """``text`` as one printable line of at most ``limit`` characters: line breaks, tabs and other
    control or invisible characters escaped (so a diff's bytes cannot forge terminal output)."""
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    line = "".join(out)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def decode(data: bytes | str, what: str) -> tuple[str, list[str]]:
    """UTF-8 decode with replacement; a warning names how many bytes could not be decoded."""
    if isinstance(data, str):
        return data, []
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    warnings = [f"{what}: {bad} undecodable byte(s) replaced with U+FFFD"] if bad else []
    return text, warnings


def _strip_prefix(name: str | None) -> str | None:
    if name is None or name == "/dev/null":
        return None
    # git's default a/ b/ prefixes; `git diff --no-prefix` has none.
    if name.startswith(("a/", "b/")):
        return name[2:]
    return name


def parse_diff(data: bytes | str | ParsedDiff) -> ParsedDiff:
    """Parse a unified diff (git's or plain ``diff -u``) into FileChanges.

    File names are read as git writes them (C-quoted names, names holding spaces or `` b/``, the tab
    git appends to a name with a space). A ParsedDiff (the GitHub half builds one from the API's file
    names, `bot.github_source`) is returned as it is.
    Raises UsageError with one line for a malformed diff or for text that holds no diff at all.
    """
    if isinstance(data, ParsedDiff):
        return data
    text, warnings = decode(data, "diff")
    if not text.strip():
        return ParsedDiff([], warnings)
    normalized, names = normalize_headers(text)
    try:
        # newline="" keeps CRLF inside values; we strip it ourselves and remember it.
        patch = PatchSet(io.StringIO(normalized, newline=""))
    except UnidiffParseError as err:
        raise UsageError(f"malformed diff: {printable_line(str(err))}") from None
    if not len(patch):
        raise UsageError("not a unified diff: no file headers (---/+++ or diff --git) found")
    bad_header = _bad_hunk_header(normalized)
    if bad_header is not None:
        raise UsageError(f"malformed diff: not a hunk header of a file (---/+++): {printable_line(bad_header)}")
    return ParsedDiff([_file_change(pf, names) for pf in patch], warnings)


def _bad_hunk_header(text: str) -> str | None:
    """The first line after the first file header that starts like a hunk header (``@@``) but is not
    one, or is one with no ``---``/``+++`` header in its file's section (git writes a ``diff --git``
    section without them only for mode, rename and binary changes, which have no hunks): unidiff skips
    such a line with the hunk under it, so the diff would read as changing nothing. (Inside a hunk
    every line starts with a space, ``+``, ``-`` or ``\\``, so ``@@`` is a header.)"""
    in_files = has_file_header = False
    for line in text.splitlines():
        if line.startswith("diff --git "):
            in_files, has_file_header = True, False
        elif line.startswith("--- "):
            in_files = has_file_header = True
        elif in_files and line.startswith("@@") and not (RE_HUNK_HEADER.match(line) and has_file_header):
            return line
    return None


def _file_change(pf, names: dict[str, str] | None = None) -> FileChange:
    names = names or {}
    old = _strip_prefix(real_name(pf.source_file, names))
    new = _strip_prefix(real_name(pf.target_file, names))
    info = str(pf.patch_info or "")
    modes = dict((m.group(1), m.group(2)) for m in _MODE.finditer(info))
    change = FileChange(
        path=new or old or _strip_prefix(real_name(pf.path, names)) or pf.path,
        old_path=None if pf.is_added_file else (old or _strip_prefix(real_name(pf.path, names)) or pf.path),
        status="modified",
        is_binary=bool(pf.is_binary_file),
        old_mode=modes.get("old") or modes.get("deleted file"),
        new_mode=modes.get("new") or modes.get("new file"),
    )
    for h in pf:
        lines: list[tuple[str, int | None, str]] = []
        for ln in h:
            value = ln.value
            if ln.line_type == "\\":
                # "\ No newline at end of file" belongs to the line before it; it only matters
                # for the new side when that line is added or context.
                if lines and lines[-1][0] in "+ ":
                    change.no_newline_at_end = True
                continue
            if value.endswith("\r\n"):
                if ln.line_type == "+":
                    change.crlf = True
                value = value[:-2]
            elif value.endswith("\n"):
                value = value[:-1]
            lines.append((ln.line_type, ln.target_line_no if ln.line_type != "-" else None, value))
        hunk = Hunk(h.source_start, h.source_length, h.target_start, h.target_length, h.section_header or "", lines)
        change.hunks.append(hunk)
        for kind, n, value in lines:
            if kind == "+" and n is not None:
                change.added_lines.append(n)
                change.added_text[n] = value

    sub = _submodule_commit(change)
    # git marks a gitlink with mode 160000 on its index line; the hunk body says the same.
    if sub is not None or re.search(r"^index \S+ 160000$", info, re.MULTILINE):
        change.status = "submodule"
        change.submodule_commit = sub
        change.added_lines, change.added_text = [], {}
    elif change.is_binary:
        change.status = "binary"
    elif pf.is_added_file:
        change.status = "added"
    elif pf.is_removed_file:
        change.status = "deleted"
    elif pf.is_rename:
        change.status = "renamed"
    elif not change.hunks and change.old_mode and change.new_mode and change.old_mode != change.new_mode:
        change.status = "mode-change"
    return change


def _submodule_commit(change: FileChange) -> str | None:
    """A submodule bump is a one-line hunk of ``Subproject commit <sha>`` lines."""
    if len(change.hunks) != 1:
        return None
    body = change.hunks[0].lines
    if not body or not all(_SUBPROJECT.match(text) for _, _, text in body):
        return None
    added = [text for kind, _, text in body if kind == "+"]
    m = _SUBPROJECT.match(added[-1]) if added else None
    return m.group(1) if m else ""


def apply_limits(
    diff: ParsedDiff, max_files: int, max_added_lines: int
) -> tuple[list[FileChange], list[tuple[str, str]]]:
    """Keep files in diff order until a limit is hit; the rest get a "skipped: why" entry.

    Returns (kept files, [(path, reason)]). A limit of 0 means no limit. The added-line budget is
    spent file by file: a file that would overflow it is skipped whole rather than cut in half,
    since scoring half a change would hide its other half silently.
    """
    kept: list[FileChange] = []
    skipped: list[tuple[str, str]] = []
    budget = max_added_lines
    for change in diff.files:
        if max_files and len(kept) >= max_files:
            skipped.append((change.path, f"over the limit of {max_files} files"))
            continue
        n = len(change.added_lines)
        if max_added_lines and n > budget:
            skipped.append(
                (change.path, f"{n} added lines would exceed the limit of {max_added_lines} added lines per review")
            )
            continue
        budget -= n
        kept.append(change)
    return kept, skipped


@dataclass(frozen=True)
class DiffFilter:
    """Which new-side lines of a diff can take a review comment: the added and context lines of its
    hunks, a multi-line comment within one hunk (GitHub rejects any other). Computed once from the
    parsed hunks, for every place that asks (reviewdog's ``filter.DiffFilter.ShouldReport``)."""

    hunks: dict[str, list[frozenset[int]]]
    """path -> per hunk, the new-side lines it shows (a file with no hunks maps to [])."""

    @classmethod
    def from_diff(cls, diff: ParsedDiff) -> DiffFilter:
        return cls({change.path: commentable_lines(change) for change in diff.files})

    def why_not(self, path: str, line: int, start_line: int | None = None) -> str | None:
        """Why a comment on ``start_line..line`` of ``path`` cannot be placed; None when it can."""
        if path not in self.hunks:
            return "the file is not part of the pull request's diff"
        hunks = self.hunks[path]
        if not hunks:
            return "GitHub shows no diff for this file (binary or too large)"
        hunk = next((h for h in hunks if line in h), None)
        if hunk is None:
            return f"line {line} is not part of the diff"
        if start_line is not None and start_line not in hunk:
            return f"lines {start_line}-{line} span more than one hunk of the diff"
        return None

    def should_report(self, path: str, line: int, start_line: int | None = None) -> bool:
        return self.why_not(path, line, start_line) is None


def commentable_lines(change: FileChange) -> list[frozenset[int]]:
    """Per hunk of ``change``, the new-side lines a comment may target (added and context lines)."""
    return [frozenset(n for kind, n, _ in h.lines if kind in "+ " and n is not None) for h in change.hunks]


def parse_hunks(patch: str) -> list[Hunk]:
    """The hunks of one file's patch (GitHub's ``patch``: hunks without file headers)."""
    parsed = parse_diff("--- a/file\n+++ b/file\n" + (patch if patch.endswith("\n") else patch + "\n"))
    return parsed.files[0].hunks if parsed.files else []
