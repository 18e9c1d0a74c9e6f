"""Sampling mutants of one snippet: pick an operator of the table, then a site, until enough parse."""

from __future__ import annotations

import random
from collections.abc import Iterable

from risk_core.data.mutate.edits import Edit, Snippet, apply_edit
from risk_core.data.mutate.python_ops import python_candidates, python_parses, python_snippets
from risk_core.data.mutate.table import OPERATORS
from risk_core.data.mutate.tree_sitter_ops import ts_candidates, ts_parses, ts_snippets


def snippets_for(source: str, language: str) -> list[Snippet]:
    return python_snippets(source) if language == "python" else ts_snippets(source, language)


def candidates_for(code: str, language: str, operators: Iterable[str] = OPERATORS) -> list[Edit]:
    """Every edit the given operators can make in the snippet, operator by operator in table order."""
    return python_candidates(code, operators) if language == "python" else ts_candidates(code, language, operators)


def parses(code: str, language: str) -> bool:
    return python_parses(code) if language == "python" else ts_parses(code, language)


def _relabel_to_code(code: str, language: str, lines: list[int]) -> list[int]:
    """Move a label that landed on a non-candidate line (blank, comment, lone brace) to the nearest code line."""
    from risk_core.candidates import candidate_mask

    mask = candidate_mask(code, language)
    out: list[int] = []
    for ln in lines:
        if 1 <= ln <= len(mask) and mask[ln - 1]:
            out.append(ln)
            continue
        after = [i + 1 for i in range(ln, len(mask)) if mask[i]]
        before = [i + 1 for i in range(min(ln - 1, len(mask)) - 1, -1, -1) if mask[i]]
        pick = after[0] if after else (before[0] if before else None)
        if pick is not None and pick not in out:
            out.append(pick)
    return sorted(set(out))


def mutate_snippet(
    snippet: Snippet, language: str, rng: random.Random, n: int, operators: Iterable[str] | None = None
) -> list[tuple[str, list[int], str]]:
    """Up to ``n`` distinct mutants of one snippet: (code, buggy_lines, operator).

    The operator is drawn uniformly among those applicable (so rare operators are not drowned by
    wrong_variable/off_by_one, which have many sites), then a site uniformly within it.
    """
    allowed = [op for op in OPERATORS if op in set(operators or OPERATORS)]
    by_op: dict[str, list[Edit]] = {}
    for e in candidates_for(snippet.code, language, allowed):
        by_op.setdefault(e.operator, []).append(e)
    out: list[tuple[str, list[int], str]] = []
    seen: set[str] = set()
    tries = 0
    while by_op and len(out) < n and tries < 20 * n:
        tries += 1
        op = rng.choice(sorted(by_op))
        e = rng.choice(by_op[op])
        new, lines = apply_edit(snippet.code, e)
        if new == snippet.code or new in seen or not parses(new, language):
            by_op[op].remove(e)
            if not by_op[op]:
                del by_op[op]
            continue
        lines = _relabel_to_code(new, language, lines)
        if not lines:
            continue
        seen.add(new)
        out.append((new, lines, op))
    return out
