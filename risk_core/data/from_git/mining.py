"""Mining fix commits into (buggy, fixed) sample pairs: the parser checks and the window of a fix."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from risk_core import candidates
from risk_core.data.from_git.diff import Hunk, map_line, parse_hunks
from risk_core.data.from_git.git import Git, open_repo
from risk_core.data.from_git.rules import (
    EXTENSIONS,
    GENERATED_MARK,
    IMPORT_LINE,
    Rules,
    is_fix_message,
    source_file_of,
)
from risk_core.data.jsonl import Sample
from risk_core.errors import UsageError

# --- parsing -----------------------------------------------------------------------------------------


def _tree(code: str, language: str) -> Any:
    parser = candidates._parser(language)
    return None if parser is None else parser.parse(code.encode("utf-8"))


def _definitions_at(tree: Any, code_lines: list[str], language: str, line: int) -> list[tuple[int, int]]:
    """Spans (1-based, inclusive, decorators included) of the definitions around ``line``, innermost
    first: the same definitions as :func:`risk_core.candidates.enclosing_definition`, found by walking up
    from the line instead of over the whole file."""
    text = code_lines[line - 1]
    col = len(text) - len(text.lstrip())
    end_col = len(text.rstrip().encode("utf-8"))
    start_col = len(text[:col].encode("utf-8"))
    node = tree.root_node.descendant_for_point_range((line - 1, start_col), (line - 1, max(start_col, end_col - 1)))
    kinds = candidates._DEFINITIONS.get(language, set())
    spans = []
    while node is not None:
        if candidates._is_definition(node, kinds):
            outer = node.parent if node.parent is not None and node.parent.type == "decorated_definition" else node
            spans.append((outer.start_point[0] + 1, node.end_point[0] + 1))
        node = node.parent
    return spans


def _code_tokens(code: str, language: str) -> list[bytes]:
    """The text with whitespace and comments stripped: its leaf tokens (a string literal as one token)."""
    tree = _tree(code, language)
    if tree is None:
        return [t.encode() for t in code.split()]
    out: list[bytes] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        kind = node.type
        if "comment" in kind:
            continue
        if not node.children or "string" in kind or kind in candidates._LITERAL_TYPES:
            if node.end_byte > node.start_byte:
                out.append(node.text)
            continue
        stack.extend(reversed(node.children))
    return out


def _dedent(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(lines) + "\n")


# --- mining ------------------------------------------------------------------------------------------


@dataclass
class FixCandidate:
    sha: str
    parent: str
    path: str
    language: str


def iter_fix_commits(git: Git, rev: str, rules: Rules, stats: Counter | None = None) -> Iterator[FixCandidate]:
    """Commits reachable from ``rev`` (newest first) that pass the message and the file rules."""
    stats = Counter() if stats is None else stats
    log = git.run(
        "log",
        "--no-merges",
        "--no-renames",
        f"-n{rules.max_commits}",
        "--format=%x1e%H%x00%P%x00%B%x00",
        "--name-only",
        rev,
    )
    for rec in log.split("\x1e"):
        if not rec.strip():
            continue
        parts = rec.split("\x00")
        if len(parts) < 4:
            continue
        sha, parents, message, names = parts[0].strip(), parts[1].split(), parts[2], parts[3]
        stats["commits"] += 1
        if len(parents) != 1:
            stats["skip:not-one-parent"] += 1
            continue
        if not is_fix_message(message):
            stats["skip:message"] += 1
            continue
        paths = [ln for ln in names.strip().splitlines() if ln.strip()]
        path, why = source_file_of(paths)
        if path is None:
            stats[f"skip:{why}"] += 1
            continue
        stats["fix-message-one-source"] += 1
        yield FixCandidate(sha, parents[0], path, EXTENSIONS[Path(path).suffix.lower()])


def mine_fix(git: Git, cand: FixCandidate, rules: Rules, name: str) -> tuple[tuple[Sample, Sample] | None, str]:
    """(buggy, fixed) samples of one candidate fix commit, or None and the reason it was skipped."""
    ws = [] if cand.language == "python" else ["--ignore-all-space"]
    try:
        diff = git.run(
            "diff",
            "--unified=0",
            "--no-color",
            "--no-renames",
            "--no-ext-diff",
            "--ignore-blank-lines",
            *ws,
            cand.parent,
            cand.sha,
            "--",
            cand.path,
        )
    except UsageError:  # a blob the snapshot lacks
        return None, "git-error"
    hunks = parse_hunks(diff).get(cand.path, [])
    if not hunks:
        return None, "no-hunk"
    old = git.show(cand.parent, cand.path)
    new = git.show(cand.sha, cand.path)
    if not old or not new:
        return None, "added-or-binary"
    if GENERATED_MARK.search("\n".join(old.splitlines()[:8])):
        return None, "generated"
    old_lines, new_lines = old.splitlines(), new.splitlines()
    tree = _tree(old, cand.language)
    if tree is None:
        return None, "no-grammar"
    # The innermost definition that holds every hunk.
    first = hunks[0]
    anchor = first.old_start if first.old_count else max(1, first.old_start)
    if anchor > len(old_lines):
        return None, "outside-function"
    span = None
    for a, b in _definitions_at(tree, old_lines, cand.language, anchor):
        end_ok = b if cand.language == "python" else b - 1
        if all(a <= h.old_start and h.old_end <= b if h.old_count else a <= h.old_start <= end_ok for h in hunks):
            span = (a, b)
            break
    if span is None:
        return None, "outside-function"
    a, b = span
    a_new, b_new = a, b + sum(h.delta for h in hunks)
    new_tree = _tree(new, cand.language)
    if (
        a_new > len(new_lines)
        or b_new > len(new_lines)
        or b_new < a_new
        or (a_new, b_new) not in _definitions_at(new_tree, new_lines, cand.language, b_new)
    ):
        return None, "fixed-function-mismatch"
    func_old, func_new = old_lines[a - 1 : b], new_lines[a_new - 1 : b_new]
    if _code_tokens(_dedent(func_old), cand.language) == _code_tokens(_dedent(func_new), cand.language):
        return None, "cosmetic"
    mask_old = candidates.candidate_mask(_dedent(func_old), cand.language)
    mask_new = candidates.candidate_mask(_dedent(func_new), cand.language)

    def code_old(line: int) -> bool:
        return 0 <= line - a < len(mask_old) and mask_old[line - a]

    def code_new(line: int) -> bool:
        return 0 <= line - a_new < len(mask_new) and mask_new[line - a_new]

    labels: set[int] = set()
    changed_text: list[str] = []
    added_code = 0
    live: list[Hunk] = []
    for h in hunks:
        removed = [ln for ln in range(h.old_start, h.old_start + h.old_count) if code_old(ln)]
        added = [ln for ln in range(h.new_start, h.new_start + h.new_count) if code_new(ln)]
        if not removed and not added:
            continue  # a comment or blank-line hunk
        live.append(h)
        added_code += len(added)
        changed_text += [old_lines[ln - 1] for ln in removed] + [new_lines[ln - 1] for ln in added]
        if removed:
            labels.update(removed)
            continue
        # An addition: the code line that stands where it goes (the next one; the previous at the end).
        nxt = h.old_start + h.old_count if h.old_count else h.old_start + 1
        forward = [ln for ln in range(nxt, b + 1) if code_old(ln)]
        backward = [ln for ln in range(nxt - 1, a - 1, -1) if code_old(ln)]
        if forward:
            labels.add(forward[0])
        elif backward:
            labels.add(backward[0])
    if not live:
        return None, "cosmetic"
    if all(IMPORT_LINE.match(t) for t in changed_text):
        return None, "import-only"
    if not rules.min_changed_lines <= len(labels) <= rules.max_changed_lines:
        return None, "too-many-lines" if labels else "no-label"
    if added_code > rules.max_added_lines:
        return None, "too-much-added"
    # The window: the whole function, or max_window lines around the change inside it.
    lo_h = min(min(labels), min(h.old_start for h in live))
    hi_h = max(max(labels), max(h.old_end + (0 if h.old_count else 1) for h in live))
    if b - a + 1 <= rules.max_window:
        lo, hi = a, b
    elif hi_h - a < rules.max_window:
        lo, hi = a, a + rules.max_window - 1
    else:
        centre = (lo_h + hi_h) // 2
        hi = min(b, max(a, centre - rules.max_window // 2) + rules.max_window - 1)
        lo = max(a, hi - rules.max_window + 1)
    if not lo <= lo_h or not hi_h <= hi:
        return None, "change-too-spread"
    lo_new, hi_new = map_line(lo, hunks), map_line(hi, hunks)
    if (lo, hi) == (a, b):
        lo_new, hi_new = a_new, b_new
    if (
        lo_new is None
        or hi_new is None
        or any(lo < h.old_start <= hi < h.old_end or h.old_start < lo <= h.old_end for h in hunks)
    ):
        return None, "change-too-spread"
    win_old, win_new = old_lines[lo - 1 : hi], new_lines[lo_new - 1 : hi_new]
    if max(len(x) for x in win_old + win_new) > rules.max_line_chars:
        return None, "long-line"
    code, fixed_code = _dedent(win_old), _dedent(win_new)
    rel = sorted(ln - lo + 1 for ln in labels)
    mask = candidates.candidate_mask(code, cand.language)
    if not all(mask[r - 1] for r in rel):
        return None, "label-not-code"
    sid = f"{name}:{cand.sha[:12]}:{cand.path}"
    buggy = Sample(
        id=sid,
        language=cand.language,
        path=f"{name}:{cand.path}@{cand.parent[:12]}#L{lo}",
        code=code,
        buggy_lines=rel,
        operator="git-fix",
    )
    fixed = Sample(
        id=fixed_id(sid),
        language=cand.language,
        path=f"{name}:{cand.path}@{cand.sha[:12]}#L{lo_new}",
        code=fixed_code,
        buggy_lines=[],
        operator="git-fix-fixed",
    )
    return (buggy, fixed), "ok"


def fix_pairs(
    repo: str | Path,
    rules: Rules | None = None,
    languages: set[str] | None = None,
    rev: str = "HEAD",
    name: str | None = None,
    stats: Counter | None = None,
) -> list[tuple[Sample, Sample]]:
    """(buggy, fixed) sample pairs of the bug-fix commits reachable from ``rev``, deduplicated by code.
    ``name`` (default: the directory name) prefixes ids and paths; ``stats`` counts why commits were
    skipped."""
    rules = rules or Rules()
    stats = Counter() if stats is None else stats
    git = open_repo(repo)
    name = name or Path(repo).resolve().name
    pairs: list[tuple[Sample, Sample]] = []
    try:
        for cand in iter_fix_commits(git, rev, rules, stats):
            if languages and cand.language not in languages:
                stats["skip:language"] += 1
                continue
            pair, why = mine_fix(git, cand, rules, name)
            stats["ok" if pair else f"skip:{why}"] += 1
            if pair:
                pairs.append(pair)
    finally:
        git.close()
    return dedupe(pairs, stats)


def normalised(code: str) -> str:
    return "\n".join(ln.strip() for ln in code.splitlines() if ln.strip())


def fixed_id(bug_id: str) -> str:
    """The id of a mined bug's fixed version, the same window after the fix: ``<bug id>:fixed``."""
    return f"{bug_id}:fixed"


def dedupe(
    pairs: Iterable[tuple[Sample, Sample]], stats: Counter | None = None, seen: set[str] | None = None
) -> list[tuple[Sample, Sample]]:
    """Pairs whose buggy and fixed code (whitespace-normalised) were not seen before (cherry-picks,
    back-ports, a fix reverted and re-applied), first come first kept; ``seen`` carries over calls."""
    seen = set() if seen is None else seen
    out = []
    for buggy, fixed in pairs:
        keys = {f"{buggy.language}\x00{normalised(buggy.code)}", f"{fixed.language}\x00{normalised(fixed.code)}"}
        if keys & seen:
            if stats is not None:
                stats["skip:duplicate"] += 1
                stats["ok"] -= 1
            continue
        seen |= keys
        out.append((buggy, fixed))
    return out


def fix_samples(
    repo: str | Path,
    max_commits: int = 20000,
    max_changed_lines: int = 3,
    languages: set[str] | None = None,
    rev: str = "HEAD",
    with_fixed: bool = True,
    name: str | None = None,
) -> list[Sample]:
    """Samples from the bug-fix commits reachable from ``rev``: each buggy function followed by its
    fixed version (a clean negative) unless ``with_fixed`` is False."""
    rules = Rules(max_commits=max_commits, max_changed_lines=max_changed_lines)
    out: list[Sample] = []
    for buggy, fixed in fix_pairs(repo, rules, languages, rev, name):
        out.append(buggy)
        if with_fixed:
            out.append(fixed)
    return out
