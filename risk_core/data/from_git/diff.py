"""Unified diffs of a fix commit: hunks, the parent lines a fix changed, and line mapping across them."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


# --- diff --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int

    @property
    def old_end(self) -> int:
        """Last parent line removed; for an insertion, the line it goes after."""
        return self.old_start + self.old_count - 1 if self.old_count else self.old_start

    @property
    def delta(self) -> int:
        return self.new_count - self.old_count


def parse_hunks(diff: str) -> dict[str, list[Hunk]]:
    """{path in the parent: hunks} of a ``--unified=0`` diff (added files are left out)."""
    out: dict[str, list[Hunk]] = {}
    path = None
    for line in diff.splitlines():
        if line.startswith("--- "):
            path = line[4:].strip()
            path = None if path == "/dev/null" else path.removeprefix("a/")
        elif line.startswith("@@") and path is not None:
            m = _HUNK.match(line)
            if m:
                out.setdefault(path, []).append(
                    Hunk(
                        int(m.group(1)),
                        int(m.group(2) or 1) if m.group(2) != "0" else 0,
                        int(m.group(3)),
                        int(m.group(4) or 1) if m.group(4) != "0" else 0,
                    )
                )
    return out


def changed_parent_lines(diff: str) -> dict[str, list[int]]:
    """{path in the parent: 1-based parent lines the diff removed/replaced (or where it inserted)}."""
    out: dict[str, list[int]] = {}
    for path, hunks in parse_hunks(diff).items():
        for h in hunks:
            lines = list(range(h.old_start, h.old_start + h.old_count)) if h.old_count else [h.old_start + 1]
            out.setdefault(path, []).extend(lines)
    return out


def map_line(line: int, hunks: list[Hunk]) -> int | None:
    """The child line of an unchanged parent line (None when the line was removed)."""
    shift = 0
    for h in hunks:
        if h.old_count and h.old_start <= line <= h.old_end:
            return None
        if line > h.old_end:
            shift += h.delta
    return line + shift


# --- a bug and its fix, as mined -----------------------------------------------------------------------

FixKind = Literal["replace", "insert", "mixed"]
FIX_KINDS: tuple[FixKind, ...] = ("replace", "insert", "mixed")


def line_opcodes(buggy_code: str, fixed_code: str) -> list[tuple[str, int, int, int, int]]:
    """difflib's non-equal opcodes from a buggy window's lines to its fixed version's (0-based, end-exclusive)."""
    a, b = buggy_code.splitlines(), fixed_code.splitlines()
    return [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]


def fix_kind(buggy_code: str, fixed_code: str, buggy_lines: list[int]) -> FixKind:
    """What the fix did to a bug's labeled lines: ``replace`` (it changed or deleted every one), ``insert``
    (none: the fix only added code, and the label marks where it goes, see the package docstring) or
    ``mixed``. Read from the two windows, so a line git's whole-file diff changed and difflib pairs as
    equal counts as an insertion point."""
    ops = line_opcodes(buggy_code, fixed_code)
    touched = {n for tag, i1, i2, _, _ in ops if tag != "insert" for n in range(i1 + 1, i2 + 1)}
    labeled = set(buggy_lines)
    if labeled <= touched:
        return "replace"
    return "mixed" if labeled & touched else "insert"
