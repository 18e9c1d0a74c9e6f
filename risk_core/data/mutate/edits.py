"""Edits, snippets and the line arithmetic every operator shares (language-independent)."""

from __future__ import annotations

from dataclasses import dataclass

MIN_LINES, MAX_LINES = 6, 40
"""Function sizes (lines, inclusive) taken as snippets."""


@dataclass
class Edit:
    """Replace bytes [start, end) of the snippet with ``text``; ``label`` overrides the buggy lines."""

    start: int
    end: int
    text: str
    operator: str
    label_line: int | None = None  # 1-based; None -> the lines the edit touched


@dataclass
class Snippet:
    code: str  # dedented function text, ends with "\n"
    name: str  # function name (for ids)
    first_line: int  # 1-based line of the snippet in its source file


def line_starts(data: bytes) -> list[int]:
    """Byte offset of the start of every line of ``data``."""
    starts = [0]
    for i, ch in enumerate(data):
        if ch == 10:
            starts.append(i + 1)
    return starts


def line_of(starts: list[int], offset: int) -> int:
    """1-based line holding byte ``offset``."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo + 1


def apply_edit(code: str, edit: Edit) -> tuple[str, list[int]]:
    """Apply one edit; returns (new code, 1-based buggy lines in the new code)."""
    data = code.encode()
    new = data[: edit.start] + edit.text.encode() + data[edit.end :]
    starts = line_starts(new)
    if edit.label_line is not None:
        return new.decode(), [edit.label_line]
    first = line_of(starts, edit.start)
    last = line_of(starts, max(edit.start, edit.start + len(edit.text.encode()) - 1))
    return new.decode(), list(range(first, last + 1))


def dedent(lines: list[str]) -> list[str] | None:
    """Remove the first line's indentation from every line (None if some code line is indented less)."""
    first = lines[0]
    indent = first[: len(first) - len(first.lstrip())]
    out: list[str] = []
    for ln in lines:
        if ln.startswith(indent):
            out.append(ln[len(indent) :])
        elif not ln.strip():
            out.append(ln.strip(" \t"))
        else:
            return None
    return out


def removal_label(first: int, last: int, n_lines: int) -> int:
    """The line a ``remove_statement`` labels: after removing lines first..last the next line moves up to
    ``first``; at the end of the snippet, the line above."""
    n_after = n_lines - (last - first + 1)
    return first if first <= n_after else max(1, first - 1)
