"""Which lines can carry risk, and the definition around a line: one answer for review, bind, eval, explain.

A line is a *candidate* when it holds at least one token that is neither inside a string literal nor a
comment and is not only brackets/punctuation. Everything else (blank lines, comments, docstrings,
prose in a trailing module string, the inside of a multi-line string argument, ``#if 0`` regions) gets
no risk at all: the probe was never trained to read prose, and a number there would be noise.

Python is read with its own tokenizer (exact for valid code, and it follows f-string expressions on
3.12+); where the tokenizer gives up (a window cut from inside a function, an unclosed bracket) the
tree-sitter grammar takes over. Every other language is read with its tree-sitter grammar. A language
without a grammar has no candidate lines.
"""

from __future__ import annotations

import functools
import importlib
import io
import tokenize
from collections.abc import Iterator
from typing import Any

from risk_core.languages import TREE_SITTER_GRAMMARS as _GRAMMARS

SUPPORTED_LANGUAGES = tuple(_GRAMMARS)

# Punctuation that cannot hold a bug on its own: a line of only these is structure, not logic.
_PUNCTUATION = frozenset("()[]{},;:")
# Node types (besides any type containing "string" or "comment") whose text is literal content.
_LITERAL_TYPES = frozenset(
    {
        "text_block",
        "char_literal",
        "character_literal",
        "rune_literal",
        "escape_sequence",
        "raw_string_literal",
        "heredoc_body",
    }
)
# Code inside a literal: template substitutions (JS/TS), f-string interpolations (Python).
_CODE_IN_LITERAL = ("substitution", "interpolation")

# Definitions a line can sit in, per grammar; arrow functions and function expressions count only when
# they are named through a declaration/assignment (a three-line callback is not the context we want).
_DEFINITIONS = {
    "python": {"function_definition"},
    "java": {"method_declaration", "constructor_declaration", "compact_constructor_declaration"},
    "javascript": {"function_declaration", "generator_function_declaration", "method_definition"},
    "typescript": {"function_declaration", "generator_function_declaration", "method_definition"},
    "go": {"function_declaration", "method_declaration"},
    "rust": {"function_item"},
    "c": {"function_definition"},
    "cpp": {"function_definition"},
}
_NAMED_BY_PARENT = {"arrow_function", "function_expression", "function"}
_NAMING_PARENTS = {
    "variable_declarator",
    "assignment_expression",
    "pair",
    "public_field_definition",
    "field_definition",
}


@functools.cache
def _parser(language: str) -> Any:
    """A tree-sitter parser for ``language`` (None when the grammar is not installed)."""
    spec = _GRAMMARS.get(language)
    if spec is None:
        return None
    try:
        import tree_sitter

        module = importlib.import_module(spec[0])
    except ImportError:
        return None
    return tree_sitter.Parser(tree_sitter.Language(getattr(module, spec[1])()))


def has_grammar(language: str) -> bool:
    """Whether candidate lines of ``language`` can be decided (its parser is installed)."""
    return _parser(language) is not None


def candidate_mask(code: str, language: str) -> list[bool]:
    """True for each line of ``code.splitlines()`` that is a scoring candidate (see module doc)."""
    n_lines = len(code.splitlines())
    if n_lines == 0:
        return []
    if language == "python":
        mask = _python_token_mask(code, n_lines)
        if mask is not None:
            return mask
    parser = _parser(language)
    if parser is None:
        return [False] * n_lines
    tree = parser.parse(code.encode("utf-8"))
    mask = [False] * n_lines
    for node in _code_leaves(tree.root_node):
        if node.type in _PUNCTUATION or node.start_byte == node.end_byte:
            continue
        for row in range(node.start_point[0], min(node.end_point[0], n_lines - 1) + 1):
            mask[row] = True
    return mask


def _python_token_mask(code: str, n_lines: int) -> list[bool] | None:
    """The candidate mask from Python's tokenizer; None when the text does not tokenize."""
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
        tokenize.STRING,
    }
    # 3.12+: f-strings come as START/MIDDLE/END around ordinary tokens for their expressions.
    skip |= {
        getattr(tokenize, name)
        for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END", "TSTRING_START", "TSTRING_MIDDLE", "TSTRING_END")
        if hasattr(tokenize, name)
    }
    mask = [False] * n_lines
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in skip or (tok.type == tokenize.OP and tok.string in _PUNCTUATION):
                continue
            if tok.type == tokenize.ERRORTOKEN and not tok.string.strip():
                continue
            for row in range(tok.start[0] - 1, min(tok.end[0], n_lines)):
                mask[row] = True
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return mask


def _code_leaves(root: Any) -> Iterator[Any]:
    """Leaves of the tree that are code: not in a comment, not literal text, not in an ``#if 0`` body."""
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, in_literal = stack.pop()
        kind = node.type
        if "comment" in kind:
            continue
        if any(word in kind for word in _CODE_IN_LITERAL):
            in_literal = False
        elif "string" in kind or kind in _LITERAL_TYPES:
            in_literal = True
        children = node.children
        if not children:
            if not in_literal:
                yield node
            continue
        if kind in ("preproc_if", "preproc_elif") and _is_false_condition(node):
            # keep the directive lines and the #else branch; the dead body is text, not code
            keep = {
                (c.start_byte, c.end_byte)
                for c in (node.child_by_field_name("condition"), node.child_by_field_name("alternative"))
                if c
            }
            children = [c for c in children if c.type.startswith("#") or (c.start_byte, c.end_byte) in keep]
        stack.extend((c, in_literal) for c in reversed(children))


def _is_false_condition(node: Any) -> bool:
    condition = node.child_by_field_name("condition")
    return condition is not None and condition.type == "number_literal" and condition.text.strip() in (b"0", b"0L")


def definition_spans(code: str, language: str) -> list[tuple[int, int]]:
    """1-based inclusive line spans of every function/method definition in ``code`` (decorators and
    leading annotations included), outermost first where they nest."""
    parser = _parser(language)
    if parser is None:
        return []
    kinds = _DEFINITIONS.get(language, set())
    tree = parser.parse(code.encode("utf-8"))
    spans: list[tuple[int, int]] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if _is_definition(node, kinds):
            outer = node.parent if node.parent is not None and node.parent.type == "decorated_definition" else node
            spans.append((outer.start_point[0] + 1, node.end_point[0] + 1))
        stack.extend(reversed(node.children))
    return sorted(spans, key=lambda s: (s[0], -s[1]))


def _is_definition(node: Any, kinds: set[str]) -> bool:
    if node.type in kinds:
        return True
    return node.type in _NAMED_BY_PARENT and node.parent is not None and node.parent.type in _NAMING_PARENTS


def enclosing_definition(code: str, language: str, line: int) -> tuple[int, int] | None:
    """The 1-based inclusive span of the innermost function/method around ``line``; None outside any."""
    inside = [s for s in definition_spans(code, language) if s[0] <= line <= s[1]]
    return min(inside, key=lambda s: s[1] - s[0]) if inside else None


MAX_WINDOW_LINES = 60
"""Longest window a line is scored in: the binding data's windows (``data.from_git``) are the same."""


def scoring_window(
    spans: list[tuple[int, int]], n_lines: int, line: int, max_lines: int = MAX_WINDOW_LINES
) -> tuple[int, int]:
    """The 1-based inclusive span of lines that ``line`` is encoded and scored in: its innermost
    definition when that has at most ``max_lines`` lines; else the ``max_lines``-line block of the
    definition that holds it, blocks counted from the definition's first line, the last one ending at
    its last line. A line outside every definition (a class header and its fields, imports, module
    code) is read in the run of lines between the definitions around it, in the same blocks: it never
    pulls in a function's body, which is what the probe was bound on and is encoded for its own target
    lines. ``spans`` come from ``definition_spans``. Blocks are fixed, not centred on each line, so the
    target lines of a long function share windows: the cost of scoring is bounded by the lines scored,
    whatever the file."""
    inside = [s for s in spans if s[0] <= line <= s[1]]
    if inside:
        lo, hi = min(inside, key=lambda s: s[1] - s[0])
    else:
        lo = max((end for _, end in spans if end < line), default=0) + 1
        hi = min((start for start, _ in spans if start > line), default=n_lines + 1) - 1
    if hi - lo + 1 <= max_lines:
        return lo, hi
    start = lo + (line - lo) // max_lines * max_lines
    end = min(hi, start + max_lines - 1)
    return max(lo, end - max_lines + 1), end
