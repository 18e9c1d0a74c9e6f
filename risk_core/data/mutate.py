"""Single-bug mutants of function-sized snippets, the bulk of Stage 2's labeled lines.

Every mutant is one text edit made at a syntax node's byte offsets, so every other line of the snippet
stays byte-identical (no ``ast.unparse`` round trip that would reformat the code and leak a signal), and
the result is re-parsed: Python with ``ast``, Java/JavaScript/Go with tree-sitter (no ERROR nodes).

Operators (the names recorded in ``Sample.operator``):
  comparison     < <-> <=, > <-> >=            arithmetic   + <-> -, * <-> /, // <-> /
  off_by_one     integer constant +-1          index_shift  x[i] -> x[i + 1]
  bool_op        and <-> or, && <-> ||         negation     drop a `not`/`!`, or add one to a condition
  wrong_variable another local of the function swap_args    first two call arguments swapped
  wrong_return   return value changed          remove_statement  a statement/guard line removed
  wrong_method   similarly named method/builtin (append->extend, startswith->endswith, min->max ...)

``remove_statement`` labels the line that now stands where the removed one was (the reader sees the
gap there); every other operator labels the line(s) its edit touched.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from risk_core.data.jsonl import Sample
from risk_core.errors import UsageError
from risk_core.languages import MUTATION_LANGUAGES, TREE_SITTER_GRAMMARS
from risk_core.languages import language_of as _language_of

OPERATORS = (
    "comparison",
    "arithmetic",
    "off_by_one",
    "index_shift",
    "bool_op",
    "negation",
    "wrong_variable",
    "swap_args",
    "wrong_return",
    "remove_statement",
    "wrong_method",
)

MIN_LINES, MAX_LINES = 6, 40
MIN_CODE_LINES = 4

# Similar names a hurried author (or model) confuses; both directions are used.
_METHOD_PAIRS = [
    ("append", "extend"),
    ("startswith", "endswith"),
    ("lstrip", "rstrip"),
    ("find", "rfind"),
    ("index", "rindex"),
    ("keys", "values"),
    ("items", "values"),
    ("get", "pop"),
    ("lower", "upper"),
    ("split", "rsplit"),
    ("remove", "discard"),
    ("min", "max"),
    ("any", "all"),
    ("add", "update"),
    ("startsWith", "endsWith"),
    ("indexOf", "lastIndexOf"),
    ("push", "unshift"),
    ("pop", "shift"),
    ("substring", "substr"),
    ("floor", "ceil"),
    ("trimStart", "trimEnd"),
    ("isEmpty", "isBlank"),
    ("HasPrefix", "HasSuffix"),
    ("TrimLeft", "TrimRight"),
    ("Index", "LastIndex"),
    ("Min", "Max"),
    ("addFirst", "addLast"),
    ("removeFirst", "removeLast"),
    ("peekFirst", "peekLast"),
    ("ToLower", "ToUpper"),
    ("toLowerCase", "toUpperCase"),
    ("containsKey", "containsValue"),
]
SIMILAR_METHOD: dict[str, str] = {}
for _a, _b in _METHOD_PAIRS:
    SIMILAR_METHOD.setdefault(_a, _b)
    SIMILAR_METHOD.setdefault(_b, _a)


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


# ---------------------------------------------------------------------------------------------------
# shared helpers


def _line_starts(data: bytes) -> list[int]:
    starts = [0]
    for i, ch in enumerate(data):
        if ch == 10:
            starts.append(i + 1)
    return starts


def _line_of(starts: list[int], offset: int) -> int:
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
    starts = _line_starts(new)
    if edit.label_line is not None:
        return new.decode(), [edit.label_line]
    first = _line_of(starts, edit.start)
    last = _line_of(starts, max(edit.start, edit.start + len(edit.text.encode()) - 1))
    return new.decode(), list(range(first, last + 1))


def _dedent(lines: list[str]) -> list[str] | None:
    """Remove the first line's indentation from every line (None if some code line is indented less)."""
    first = lines[0]
    indent = first[: len(first) - len(first.lstrip())]
    out = []
    for ln in lines:
        if ln.startswith(indent):
            out.append(ln[len(indent) :])
        elif not ln.strip():
            out.append(ln.strip(" \t"))
        else:
            return None
    return out


# ---------------------------------------------------------------------------------------------------
# Python, via ast (col offsets are UTF-8 byte offsets, which is what the edits use)


class _PyOffsets:
    def __init__(self, code: str):
        self.data = code.encode()
        self.starts = _line_starts(self.data)

    def at(self, lineno: int, col: int) -> int:
        return self.starts[lineno - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset)

    def text(self, a: int, b: int) -> str:
        return self.data[a:b].decode()


def _find_op(off: _PyOffsets, left: ast.AST, right: ast.AST, ops: Iterable[str]) -> tuple[int, int, str] | None:
    """Locate an operator token between two operands (skipping parentheses/whitespace)."""
    a = off.at(left.end_lineno, left.end_col_offset)
    b = off.at(right.lineno, right.col_offset)
    between = off.data[a:b].decode()
    for op in sorted(ops, key=len, reverse=True):
        pat = r"(?<![<>=!*/])" + re.escape(op) + r"(?![<>=*/])" if not op.isalpha() else r"\b" + op + r"\b"
        m = re.search(pat, between)
        if m:
            return a + len(between[: m.start()].encode()), a + len(between[: m.end()].encode()), op
    return None


def _single_line(node: ast.AST) -> bool:
    return node.lineno == node.end_lineno


def python_candidates(code: str) -> list[Edit]:
    """Every edit any operator can make in this snippet (callers sample one)."""
    tree = ast.parse(code)
    off = _PyOffsets(code)
    edits: list[Edit] = []
    cmp_swap = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">")}
    arith = {
        ast.Add: ("+", "-"),
        ast.Sub: ("-", "+"),
        ast.Mult: ("*", "/"),
        ast.Div: ("/", "*"),
        ast.FloorDiv: ("//", "/"),
    }
    fn = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    local_names: set[str] = set()
    called: set[str] = set()
    if fn is not None:
        for a in fn.args.args + fn.args.kwonlyargs + fn.args.posonlyargs:
            local_names.add(a.arg)
        for n in ast.walk(fn):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                local_names.add(n.id)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                called.add(n.func.id)
    local_names -= called | {"self", "cls"}
    docstring_nodes = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            docstring_nodes.add(id(body[0].value))

    # Before Python 3.12 the positions of nodes inside f-strings are unreliable: never edit there.
    in_fstring = {id(n) for js in ast.walk(tree) if isinstance(js, ast.JoinedStr) for n in ast.walk(js)}
    for node in ast.walk(tree):
        if id(node) in in_fstring:
            continue
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                if type(op) in cmp_swap:
                    old, new = cmp_swap[type(op)]
                    hit = _find_op(off, left, right, [old])
                    if hit and hit[2] == old:
                        edits.append(Edit(hit[0], hit[1], new, "comparison"))
                left = right
        elif isinstance(node, ast.BinOp) and type(node.op) in arith:
            if any(
                isinstance(s, (ast.JoinedStr,)) or (isinstance(s, ast.Constant) and isinstance(s.value, (str, bytes)))
                for s in (node.left, node.right)
            ):
                continue  # "a" - "b" is a type error nobody would write
            old, new = arith[type(node.op)]
            hit = _find_op(off, node.left, node.right, [old])
            if hit and hit[2] == old:
                edits.append(Edit(hit[0], hit[1], new, "arithmetic"))
        elif isinstance(node, ast.BoolOp):
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            hit = _find_op(off, node.values[0], node.values[1], [old])
            if hit:
                edits.append(Edit(hit[0], hit[1], new, "bool_op"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            a, _ = off.span(node)
            b = off.at(node.operand.lineno, node.operand.col_offset)
            edits.append(Edit(a, b, "", "negation"))
        elif (
            isinstance(node, (ast.If, ast.While)) and not isinstance(node.test, ast.UnaryOp) and _single_line(node.test)
        ):
            a, b = off.span(node.test)
            t = off.text(a, b)
            wrap = isinstance(node.test, (ast.BoolOp, ast.Compare, ast.IfExp, ast.NamedExpr, ast.Lambda))
            edits.append(Edit(a, b, f"not ({t})" if wrap else f"not {t}", "negation"))
        elif isinstance(node, ast.Constant) and type(node.value) is int and id(node) not in docstring_nodes:
            a, b = off.span(node)
            if off.text(a, b).isdigit():
                v = node.value
                edits.append(Edit(a, b, str(v + 1), "off_by_one"))
                if v > 0:
                    edits.append(Edit(a, b, str(v - 1), "off_by_one"))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and _single_line(node.slice):
            a, b = off.span(node.slice)
            edits.append(Edit(a, b, off.text(a, b) + " + 1", "index_shift"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in local_names:
            others = sorted(local_names - {node.id})
            if others:
                a, b = off.span(node)
                for o in others[:3]:
                    edits.append(Edit(a, b, o, "wrong_variable"))
        elif isinstance(node, ast.Call):
            pos = [x for x in node.args if not isinstance(x, ast.Starred)]
            if len(pos) >= 2 and len(pos) == len(node.args) and _single_line(node):
                a0, b0 = off.span(pos[0])
                a1, b1 = off.span(pos[1])
                t0, t1 = off.text(a0, b0), off.text(a1, b1)
                if t0 != t1:
                    edits.append(Edit(a0, b1, t1 + off.text(b0, a1) + t0, "swap_args"))
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in SIMILAR_METHOD:
                _, b = off.span(f)
                edits.append(Edit(b - len(f.attr.encode()), b, SIMILAR_METHOD[f.attr], "wrong_method"))
            elif isinstance(f, ast.Name) and f.id in ("min", "max", "any", "all"):
                a, b = off.span(f)
                edits.append(Edit(a, b, SIMILAR_METHOD[f.id], "wrong_method"))
        elif isinstance(node, ast.Return) and node.value is not None and _single_line(node.value):
            a, b = off.span(node.value)
            v = node.value
            if isinstance(v, ast.Constant) and isinstance(v.value, bool):
                repl = str(not v.value)
            elif isinstance(v, ast.Constant) and v.value is None:
                continue
            elif isinstance(v, ast.Constant) and type(v.value) is int:
                repl = str(v.value + 1) if v.value in (0, -1) else "0"
            elif isinstance(v, ast.Name) and local_names - {v.id}:
                repl = sorted(local_names - {v.id})[0]
            else:
                repl = "None"
            edits.append(Edit(a, b, repl, "wrong_return"))

    # remove_statement: a whole single-line statement, or a two-line guard `if c:\n    return/raise/...`
    lines = code.splitlines(keepends=True)
    for node in ast.walk(tree):
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if not isinstance(body, list) or len(body) < 2:
                continue
            for st in body:
                if (
                    isinstance(st, (ast.Expr, ast.Assign, ast.AugAssign))
                    and _single_line(st)
                    and not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant))
                ):
                    first, last = st.lineno, st.end_lineno
                elif (
                    isinstance(st, ast.If)
                    and not st.orelse
                    and len(st.body) == 1
                    and isinstance(st.body[0], (ast.Return, ast.Raise, ast.Continue, ast.Break))
                    and st.end_lineno - st.lineno <= 1
                ):
                    first, last = st.lineno, st.end_lineno
                else:
                    continue
                # Only whole lines that hold nothing but this statement.
                a = off.at(first, 0)
                b = off.starts[last] if last < len(off.starts) else len(off.data)
                if off.text(a, b).strip() != off.text(*off.span(st)).strip():
                    continue
                # After removal the next line moves up to `first`; label it (or the one above at the end).
                n_after = len(lines) - (last - first + 1)
                label = first if first <= n_after else max(1, first - 1)
                edits.append(Edit(a, b, "", "remove_statement", label_line=label))
    return edits


def python_snippets(source: str) -> list[Snippet]:
    """Functions and methods of 6-40 lines (decorators excluded), dedented so they parse alone."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        n = node.end_lineno - node.lineno + 1
        if not (MIN_LINES <= n <= MAX_LINES):
            continue
        body = _dedent(lines[node.lineno - 1 : node.end_lineno])
        if body is None:
            continue
        code = "\n".join(body) + "\n"
        try:
            ast.parse(code)
        except SyntaxError:
            continue
        out.append(Snippet(code, node.name, node.lineno))
    return out


def python_parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------------
# Java / JavaScript / Go, via tree-sitter

# Snippets are methods; wrapping them in a class makes them a parseable compilation unit.
# Tried in order; the first under which the snippet parses is used.
_TS_WRAPS = {
    "java": [("class W {\n", "}\n")],
    "javascript": [("", ""), ("class W {\n", "}\n")],
    "go": [("package p\n", "")],
}
_TS_FUNCS = {
    "java": {"method_declaration", "constructor_declaration"},
    "javascript": {"method_definition", "function_declaration"},
    "go": {"function_declaration", "method_declaration"},
}
_TS_INT = {"java": {"decimal_integer_literal"}, "javascript": {"number"}, "go": {"int_literal"}}
_TS_ARGS = {"java": "argument_list", "javascript": "arguments", "go": "argument_list"}
_TS_BLOCK = {"java": {"block"}, "javascript": {"statement_block"}, "go": {"block", "statement_list"}}
_TS_STMT = {
    "java": {"expression_statement", "local_variable_declaration"},
    "javascript": {"expression_statement", "lexical_declaration", "variable_declaration"},
    "go": {
        "expression_statement",
        "short_var_declaration",
        "assignment_statement",
        "inc_statement",
        "dec_statement",
        "call_expression",
    },
}
_TS_EXIT = {"return_statement", "throw_statement", "break_statement", "continue_statement"}
_parsers: dict[str, object] = {}


def _ts_parser(language: str):
    if language not in _parsers:
        try:
            import importlib

            import tree_sitter

            mod = importlib.import_module(TREE_SITTER_GRAMMARS[language][0])
            _parsers[language] = tree_sitter.Parser(tree_sitter.Language(mod.language()))
        except ImportError as err:
            raise UsageError(f"{language} mutation needs tree-sitter grammars ({err.name} is not installed)") from None
    return _parsers[language]


def _ts_wrap_for(code: str, language: str) -> tuple[str, str] | None:
    for pre, post in _TS_WRAPS[language]:
        if not _ts_parser(language).parse((pre + code + post).encode()).root_node.has_error:
            return pre, post
    return None


def ts_parses(code: str, language: str) -> bool:
    """True when the snippet parses without ERROR/MISSING nodes (inside its wrapper)."""
    return _ts_wrap_for(code, language) is not None


def _walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def ts_snippets(source: str, language: str) -> list[Snippet]:
    tree = _ts_parser(language).parse(source.encode())
    data = source.encode()
    out = []
    for node in _walk(tree.root_node):
        if node.type not in _TS_FUNCS[language]:
            continue
        n = node.end_point[0] - node.start_point[0] + 1
        if not (MIN_LINES <= n <= MAX_LINES):
            continue
        line_start = data.rfind(b"\n", 0, node.start_byte) + 1
        # Only functions that begin their line (keeps the dedent exact).
        if data[line_start : node.start_byte].strip():
            continue
        text = data[line_start : node.end_byte].decode(errors="replace")
        body = _dedent(text.splitlines())
        if body is None:
            continue
        code = "\n".join(body) + "\n"
        if not ts_parses(code, language):
            continue
        name_node = node.child_by_field_name("name")
        name = name_node.text.decode() if name_node is not None else "anon"
        out.append(Snippet(code, name, node.start_point[0] + 1))
    return out


def ts_candidates(code: str, language: str) -> list[Edit]:
    wrap = _ts_wrap_for(code, language)
    if wrap is None:
        return []
    pre, post = wrap
    shift = len(pre.encode())
    data = (pre + code + post).encode()
    tree = _ts_parser(language).parse(data)
    edits: list[Edit] = []

    def add(a: int, b: int, text: str, op: str, label: int | None = None):
        if a >= shift and b <= shift + len(code.encode()):
            edits.append(Edit(a - shift, b - shift, text, op, label))

    swaps = {
        "<": ("<=", "comparison"),
        "<=": ("<", "comparison"),
        ">": (">=", "comparison"),
        ">=": (">", "comparison"),
        "+": ("-", "arithmetic"),
        "-": ("+", "arithmetic"),
        "*": ("/", "arithmetic"),
        "/": ("*", "arithmetic"),
        "&&": ("||", "bool_op"),
        "||": ("&&", "bool_op"),
    }
    declared: set[str] = set()
    for n in _walk(tree.root_node):
        if n.type in ("variable_declarator", "formal_parameter", "parameter_declaration", "required_parameter"):
            nm = n.child_by_field_name("name")
            if nm is not None and nm.type == "identifier":
                declared.add(nm.text.decode())
        elif n.type == "formal_parameters" and language == "javascript":
            declared.update(c.text.decode() for c in n.named_children if c.type == "identifier")
        elif n.type in ("short_var_declaration", "range_clause") and language == "go":
            left = n.child_by_field_name("left")
            if left is not None:
                declared.update(c.text.decode() for c in left.named_children if c.type == "identifier")
    called = set()
    for n in _walk(tree.root_node):
        if n.type in ("call_expression", "method_invocation"):
            f = n.child_by_field_name("function") or n.child_by_field_name("name")
            if f is not None and f.type == "identifier":
                called.add(f.text.decode())
    declared -= called

    for n in _walk(tree.root_node):
        t = n.type
        if t == "binary_expression":
            op = n.child_by_field_name("operator")
            if op is not None and op.type in swaps:
                left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
                is_str = any(x is not None and "string" in x.type for x in (left, right))
                new, name = swaps[op.type]
                if not (is_str and name == "arithmetic"):
                    add(op.start_byte, op.end_byte, new, name)
        elif t == "unary_expression":
            op = n.child_by_field_name("operator")
            if op is not None and op.type == "!":
                add(op.start_byte, op.end_byte, "", "negation")
        elif t in ("if_statement", "while_statement"):
            cond = n.child_by_field_name("condition")
            if cond is not None and cond.start_point[0] == cond.end_point[0]:
                if cond.type == "parenthesized_expression":  # java/js: `if (c)` -> `if (!(c))`
                    inner = cond.named_children[0] if cond.named_children else None
                    if inner is not None and inner.type != "unary_expression":
                        add(inner.start_byte, inner.end_byte, "!(" + inner.text.decode() + ")", "negation")
                elif cond.type != "unary_expression":  # go: `if c {`
                    add(cond.start_byte, cond.end_byte, "!(" + cond.text.decode() + ")", "negation")
        elif t in _TS_INT[language]:
            s = n.text.decode()
            if s.isdigit():
                v = int(s)
                add(n.start_byte, n.end_byte, str(v + 1), "off_by_one")
                if v > 0:
                    add(n.start_byte, n.end_byte, str(v - 1), "off_by_one")
        elif t in ("array_access", "subscript_expression", "index_expression"):
            idx = n.child_by_field_name("index")
            if idx is not None and idx.type == "identifier":
                add(idx.start_byte, idx.end_byte, idx.text.decode() + " + 1", "index_shift")
        elif t == "identifier" and n.text.decode() in declared:
            p = n.parent
            is_decl = p is not None and (
                p.child_by_field_name("name") == n
                or p.type in ("formal_parameters", "expression_list")
                and p.parent is not None
                and p.parent.type in ("short_var_declaration", "range_clause")
                and p.parent.child_by_field_name("left") == p
            )
            if p is not None and p.type in ("formal_parameters",):
                is_decl = True
            if not is_decl:
                others = sorted(declared - {n.text.decode()})
                for o in others[:3]:
                    add(n.start_byte, n.end_byte, o, "wrong_variable")
        elif t == _TS_ARGS[language]:
            args = n.named_children
            if len(args) >= 2 and n.start_point[0] == n.end_point[0] and args[0].text != args[1].text:
                a0, a1 = args[0], args[1]
                middle = data[a0.end_byte : a1.start_byte].decode()
                add(a0.start_byte, a1.end_byte, a1.text.decode() + middle + a0.text.decode(), "swap_args")
        elif t in ("method_invocation", "call_expression"):
            name = None
            if t == "method_invocation":
                name = n.child_by_field_name("name")
            else:
                f = n.child_by_field_name("function")
                if f is not None and f.type in ("member_expression", "selector_expression"):
                    name = f.child_by_field_name("property") or f.child_by_field_name("field")
            if name is not None and name.text.decode() in SIMILAR_METHOD:
                add(name.start_byte, name.end_byte, SIMILAR_METHOD[name.text.decode()], "wrong_method")
        elif t == "return_statement":
            vals = [c for c in n.named_children if c.type not in ("comment",)]
            if len(vals) == 1 and vals[0].start_point[0] == vals[0].end_point[0]:
                v = vals[0]
                if v.type == "expression_list":  # go: `return a, b`
                    continue
                s = v.text.decode()
                if s in ("true", "false"):
                    repl = "false" if s == "true" else "true"
                elif v.type in _TS_INT[language] and s.isdigit():
                    repl = "1" if s == "0" else "0"
                elif v.type == "identifier" and declared - {s}:
                    repl = sorted(declared - {s})[0]
                elif language == "javascript":
                    repl = "null" if s != "null" else "undefined"
                else:
                    continue  # java/go: no untyped "nothing" value that always compiles
                add(v.start_byte, v.end_byte, repl, "wrong_return")

    # remove_statement: a one-line statement or guard alone on its lines, inside a block with >= 2 of them.
    code_b = code.encode()
    starts = _line_starts(code_b)
    n_lines = len(code.splitlines())
    for n in _walk(tree.root_node):
        if n.type not in _TS_BLOCK[language]:
            continue
        stmts = [c for c in n.named_children if c.type != "comment"]
        if len(stmts) < 2:
            continue
        for st in stmts:
            ok = st.type in _TS_STMT[language] and st.start_point[0] == st.end_point[0]
            if st.type == "if_statement" and st.child_by_field_name("alternative") is None:
                cons = st.child_by_field_name("consequence")
                inner = (
                    [c for c in cons.named_children]
                    if cons is not None and cons.type in _TS_BLOCK[language]
                    else [cons]
                )
                ok = (
                    len(inner) == 1
                    and inner[0] is not None
                    and inner[0].type in _TS_EXIT
                    and st.end_point[0] - st.start_point[0] <= 2
                )
            if not ok or st.start_byte < shift:
                continue
            a, b = st.start_byte - shift, st.end_byte - shift
            first = _line_of(starts, a)
            last = _line_of(starts, max(a, b - 1))
            la = starts[first - 1]
            lb = starts[last] if last < len(starts) else len(code_b)
            if code_b[la:a].strip() or code_b[b:lb].strip():
                continue  # something else shares the line
            n_after = n_lines - (last - first + 1)
            label = first if first <= n_after else max(1, first - 1)
            add(la + shift, lb + shift, "", "remove_statement", label)
    return edits


# ---------------------------------------------------------------------------------------------------
# driver


def snippets_for(source: str, language: str) -> list[Snippet]:
    return python_snippets(source) if language == "python" else ts_snippets(source, language)


def candidates_for(code: str, language: str) -> list[Edit]:
    return python_candidates(code) if language == "python" else ts_candidates(code, language)


def parses(code: str, language: str) -> bool:
    return python_parses(code) if language == "python" else ts_parses(code, language)


def _relabel_to_code(code: str, language: str, lines: list[int]) -> list[int]:
    """Move a label that landed on a non-candidate line (blank, comment, lone brace) to the nearest code line."""
    from risk_core.candidates import candidate_mask

    mask = candidate_mask(code, language)
    out = []
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
    allowed = set(operators or OPERATORS)
    by_op: dict[str, list[Edit]] = {}
    for e in candidates_for(snippet.code, language):
        if e.operator in allowed:
            by_op.setdefault(e.operator, []).append(e)
    out, seen = [], set()
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


def language_of(path: str | Path) -> str | None:
    """The file's language when the mutation operators handle it, else None."""
    lang = _language_of(path)
    return lang if lang in MUTATION_LANGUAGES else None


def collect_sources(sources: Iterable[str | Path], languages: set[str] | None = None) -> list[Path]:
    """Files from paths and directories (recursive), or a JSON/JSONL list of file paths (rows may carry a
    ``split``: only ``reserved`` rows are used). A corpus directory is read by ``load_sources``."""
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and language_of(f)))
        elif p.is_file() and p.suffix in (".json", ".jsonl") and p.name != "package.json":
            out.extend(_manifest_files(p))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    if languages:
        out = [f for f in out if language_of(f) in languages]
    return out


def load_sources(sources: Iterable[str | Path], languages: set[str] | None = None) -> list[tuple[str, str, str]]:
    """(path label, language, text) of every source. A ``pttrust corpus build`` directory (it holds
    manifest.jsonl) contributes its ``reserved`` split only: files the SAE never trained on."""
    out: list[tuple[str, str, str]] = []
    plain: list[str | Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir() and (p / "manifest.jsonl").is_file():
            from risk_core.corpus import Corpus

            corpus = Corpus(p)
            for f in corpus.split("reserved"):
                if f.language in MUTATION_LANGUAGES and (not languages or f.language in languages):
                    try:
                        out.append((f.path, f.language, corpus.read_text(f)))
                    except Exception:  # an unreadable blob is skipped like an undecodable file
                        continue
        else:
            plain.append(src)
    for f in collect_sources(plain, languages) if plain else []:
        try:
            out.append((f.as_posix(), language_of(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out


def _manifest_files(path: Path) -> list[Path]:
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)
        if isinstance(records, dict):
            records = records.get("files", records.get("reserved", []))
    except json.JSONDecodeError:
        records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    files = []
    for r in records:
        if isinstance(r, str):
            files.append(Path(r))
        elif isinstance(r, dict) and r.get("split", "reserved") == "reserved":
            files.append(Path(r.get("path") or r.get("file")))
    base = path.parent
    return [f if f.is_absolute() else base / f for f in files if f.is_file() or (base / f).is_file()]


def mutate_sources(
    items: list[tuple[str, str, str]],
    per_file: int,
    seed: int,
    per_snippet: int = 1,
    operators: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Mutants of the functions in (path, language, text) items: up to ``per_file`` per file,
    ``per_snippet`` per function. Deterministic for a seed: each file gets its own RNG seeded from
    (seed, path), so adding files does not reshuffle the others' mutants."""
    from risk_core.candidates import candidate_mask

    samples: list[Sample] = []
    for i, (path, lang, source) in enumerate(items):
        digest = hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()
        rng = random.Random(int(digest[:16], 16))
        # A function that is mostly docstring has too few candidate lines to locate anything in.
        snips = [sn for sn in snippets_for(source, lang) if sum(candidate_mask(sn.code, lang)) >= MIN_CODE_LINES]
        rng.shuffle(snips)
        made = 0
        for sn in snips:
            if made >= per_file:
                break
            for k, (code, lines, op) in enumerate(
                mutate_snippet(sn, lang, rng, min(per_snippet, per_file - made), operators)
            ):
                samples.append(
                    Sample(
                        id=f"{path}:{sn.first_line}:{sn.name}:{op}:{k}",
                        language=lang,
                        path=path,
                        code=code,
                        buggy_lines=lines,
                        operator=op,
                    )
                )
                made += 1
        if progress:
            progress(i + 1, len(items))
    return samples


def mutate_files(
    files: list[Path],
    per_file: int,
    seed: int,
    per_snippet: int = 1,
    operators: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """``mutate_sources`` over files on disk (language from the extension; unreadable files skipped)."""
    items = []
    for f in files:
        lang = language_of(f)
        if lang is None:
            continue
        try:
            items.append((f.as_posix(), lang, f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return mutate_sources(items, per_file, seed, per_snippet, operators, progress)
