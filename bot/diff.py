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

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

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


# -- file names as git writes them -----------------------------------------------------------------

_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_path(text: str) -> tuple[str, int]:
    """Git's C-style quoted name at the start of ``text`` (``"b/\\303\\251.py"``) -> (name, characters
    used). Octal escapes are bytes (UTF-8 for non-ASCII names); ValueError when it is not closed."""
    if not text.startswith('"'):
        raise ValueError("not a quoted name")
    out = bytearray()
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return out.decode("utf-8", errors="replace"), i + 1
        if c == "\\" and i + 1 < len(text):
            e = text[i + 1]
            if e in "01234567" and len(text) >= i + 4 and all(ch in "01234567" for ch in text[i + 1 : i + 4]):
                out.append(int(text[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
            out.append(_C_ESCAPES.get(e, ord(e)) if ord(e) < 128 else 0)
            if ord(e) >= 128:
                out[-1:] = e.encode()
            i += 2
            continue
        out += c.encode()
        i += 1
    raise ValueError("unterminated quoted name")


def quote_path(name: str) -> str:
    """``name`` as git writes it in a diff header: as is, or C-quoted when it holds a quote, a
    backslash, a control character or non-ASCII (core.quotePath)."""
    if not any(c in '"\\' or ord(c) < 32 or ord(c) >= 127 for c in name):
        return name
    back = {v: k for k, v in _C_ESCAPES.items()}
    out = []
    for byte in name.encode("utf-8", errors="surrogateescape"):
        if byte in back:
            out.append("\\" + back[byte])
        elif byte < 32 or byte >= 127:
            out.append(f"\\{byte:03o}")
        else:
            out.append(chr(byte))
    return '"' + "".join(out) + '"'


def _header_name(rest: str) -> str:
    """The name in a ``---``/``+++``/``rename from`` line's remainder: quoted, or up to a tab (git
    appends one to a name holding a space; ``diff -u`` puts the timestamp after one)."""
    rest = rest.rstrip("\r\n")
    if rest.startswith('"'):
        try:
            return unquote_path(rest)[0]
        except ValueError:
            pass
    return rest.split("\t", 1)[0]


def _git_header_names(rest: str) -> tuple[str, str] | None:
    """(old, new) from what follows ``diff --git `` (prefixes kept), or None when it cannot be split.

    Unquoted names are ambiguous (``a/x b/y b/x b/y``); git writes the same name on both sides unless
    the file is renamed, so the split whose sides agree wins, and for a rename (whose names also come
    from its ``rename from``/``---`` lines) the first `` b/``."""
    rest = rest.rstrip("\r\n")
    try:
        if rest.startswith('"'):
            a, used = unquote_path(rest)
            second = rest[used:].lstrip(" ")
            return a, (unquote_path(second)[0] if second.startswith('"') else second)
        if rest.endswith('"') and ' "' in rest:
            i = rest.index(' "')
            return rest[:i], unquote_path(rest[i + 1 :])[0]
    except ValueError:
        return None
    spaces = [i for i, c in enumerate(rest) if c == " "]
    for i in spaces:
        a, b = rest[:i], rest[i + 1 :]
        if a[2:] == b[2:] and a[:2] in ("a/", "c/", "i/", "o/", "w/", "1/") and b[:2] in ("b/", "w/", "i/", "2/"):
            return a, b
    for i in spaces:
        if rest[:i] == rest[i + 1 :]:  # --no-prefix
            return rest[:i], rest[i + 1 :]
    i = rest.find(" b/")
    if i > 0:
        return rest[:i], rest[i + 1 :]
    return (rest[: spaces[len(spaces) // 2]], rest[spaces[len(spaces) // 2] + 1 :]) if spaces else None


_PREFIX = re.compile(r"^[abciow12]/")
_HUNK_HEAD = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_DEV_NULL = "/dev/null"


def _normalize_headers(text: str) -> tuple[str, dict[str, str]]:
    """The diff with every file name in its headers replaced by a plain token (``a/__pttrust_3__``),
    and token -> real name (prefix kept). unidiff then never sees a name it would mis-split (one
    holding `` b/``), a quoted one it would keep quoted, or a tab. Hunk bodies pass through as they
    are: a removed line ``-- x`` reads ``--- x`` and must not be taken for a header."""
    names: dict[str, str] = {}
    tokens: dict[str, str] = {}

    def token(name: str | None) -> str:
        """``a/x b/y.py`` -> ``a/__pttrust_0__``: the prefix is kept apart, so that the same name on
        both sides gets the same token (unidiff tells renames by comparing them)."""
        if name is None or name == _DEV_NULL:
            return _DEV_NULL
        prefix, key = (name[:2], name[2:]) if _PREFIX.match(name) else ("", name)
        if key not in tokens:
            tokens[key] = f"__pttrust_{len(tokens)}__"
            names[tokens[key]] = key
        return prefix + tokens[key]

    lines = text.splitlines(keepends=True)
    out: list[str] = []
    old_left = new_left = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if old_left > 0 or new_left > 0:
            kind = line[:1]
            if kind in (" ", "\n", "\r"):
                old_left, new_left = old_left - 1, new_left - 1
            elif kind == "-":
                old_left -= 1
            elif kind == "+":
                new_left -= 1
            elif kind != "\\":
                old_left = new_left = 0  # a short hunk: unidiff will say so; read on as headers
                continue
            out.append(line)
            i += 1
            continue
        m = _HUNK_HEAD.match(line)
        if m:
            old_left = int(m.group(1)) if m.group(1) is not None else 1
            new_left = int(m.group(2)) if m.group(2) is not None else 1
            out.append(line)
            i += 1
            continue
        if line.startswith("diff --git "):
            # The header block: up to the first hunk or the next file.
            j = i + 1
            while j < len(lines) and not lines[j].startswith(("@@ ", "diff --git ")):
                j += 1
            block = lines[i + 1 : j]
            split = _git_header_names(line[len("diff --git ") :])
            old, new = split if split else (None, None)
            minus = plus = None
            for b in block:
                if b.startswith("rename from ") or b.startswith("copy from "):
                    old = _header_name(b.split(" from ", 1)[1])
                    old = old if old.startswith("a/") else "a/" + old
                elif b.startswith("rename to ") or b.startswith("copy to "):
                    new = _header_name(b.split(" to ", 1)[1])
                    new = new if new.startswith("b/") else "b/" + new
                elif b.startswith("--- "):
                    minus = _header_name(b[4:])
                elif b.startswith("+++ "):
                    plus = _header_name(b[4:])
            old = minus if minus not in (None, _DEV_NULL) else old
            new = plus if plus not in (None, _DEV_NULL) else new
            if old is None or new is None:
                out.append(line)  # unidiff will have its say
                i += 1
                continue
            end = "\r\n" if line.endswith("\r\n") else "\n"
            out.append(f"diff --git {token(old)} {token(new)}{end}")
            for b in block:
                bend = "\r\n" if b.endswith("\r\n") else "\n"
                if b.startswith("--- "):
                    out.append(f"--- {token(None if minus == _DEV_NULL else old)}{bend}")
                elif b.startswith("+++ "):
                    out.append(f"+++ {token(None if plus == _DEV_NULL else new)}{bend}")
                elif b.startswith("Binary files "):
                    src = _DEV_NULL if " /dev/null and " in f" {b}" or b.startswith("Binary files /dev/null") else None
                    dst = _DEV_NULL if b.rstrip().endswith("and /dev/null differ") else None
                    out.append(f"Binary files {src or token(old)} and {dst or token(new)} differ{bend}")
                elif b.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
                    continue  # the names are in the tokens; unidiff does not read these lines
                else:
                    out.append(b)
            i = j
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            # A plain `diff -u` file header (no diff --git before it).
            minus, plus = _header_name(line[4:]), _header_name(lines[i + 1][4:])
            end = "\r\n" if line.endswith("\r\n") else "\n"
            out.append(f"--- {token(minus)}{end}")
            out.append(f"+++ {token(plus)}{end}")
            i += 2
            continue
        out.append(line)
        i += 1
    return "".join(out), names


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
    normalized, names = _normalize_headers(text)
    try:
        # newline="" keeps CRLF inside values; we strip it ourselves and remember it.
        patch = PatchSet(io.StringIO(normalized, newline=""))
    except UnidiffParseError as err:
        raise UsageError(f"malformed diff: {printable_line(str(err))}") from None
    if not len(patch):
        raise UsageError("not a unified diff: no file headers (---/+++ or diff --git) found")
    return ParsedDiff([_file_change(pf, names) for pf in patch], warnings)


def _real_name(name: str | None, names: dict[str, str]) -> str | None:
    if name is None or name == _DEV_NULL:
        return name
    m = re.fullmatch(r"([a-z0-9]/)?(__pttrust_\d+__)", name)
    return (m.group(1) or "") + names[m.group(2)] if m and m.group(2) in names else name


def _file_change(pf, names: dict[str, str] | None = None) -> FileChange:
    names = names or {}
    old = _strip_prefix(_real_name(pf.source_file, names))
    new = _strip_prefix(_real_name(pf.target_file, names))
    info = str(pf.patch_info or "")
    modes = dict((m.group(1), m.group(2)) for m in _MODE.finditer(info))
    change = FileChange(
        path=new or old or _strip_prefix(_real_name(pf.path, names)) or pf.path,
        old_path=None if pf.is_added_file else (old or _strip_prefix(_real_name(pf.path, names)) or pf.path),
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
