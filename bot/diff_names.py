"""File names in diff headers as git writes them: C-quoted names, names holding spaces or `` b/``,
the tab git appends to a name with a space. `normalize_headers` swaps every header name for a plain
token before unidiff reads the diff (`bot.diff.parse_diff`), and `real_name` swaps it back, so that
unidiff never mis-splits or keeps quoted a name it cannot read."""

from __future__ import annotations

import re

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


def normalize_headers(text: str) -> tuple[str, dict[str, str]]:
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


def real_name(name: str | None, names: dict[str, str]) -> str | None:
    if name is None or name == _DEV_NULL:
        return name
    m = re.fullmatch(r"([a-z0-9]/)?(__pttrust_\d+__)", name)
    return (m.group(1) or "") + names[m.group(2)] if m and m.group(2) in names else name
