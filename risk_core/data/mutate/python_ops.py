"""The mutation operators for Python, via ``ast`` (col offsets are UTF-8 byte offsets, what edits use).

One function per operator, keyed by the operator table in ``PYTHON_OPERATORS``; each walks the snippet's
nodes in ``ast.walk`` order and returns the edits it can make there.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from risk_core.data.mutate.edits import MAX_LINES, MIN_LINES, Edit, Snippet, dedent, line_starts, removal_label
from risk_core.data.mutate.table import OPERATORS, SIMILAR_METHOD


class _PyOffsets:
    def __init__(self, code: str):
        self.data = code.encode()
        self.starts = line_starts(self.data)

    def at(self, lineno: int, col: int) -> int:
        return self.starts[lineno - 1] + col

    def span(self, node: ast.expr | ast.stmt) -> tuple[int, int]:
        # Parsed nodes always carry end positions; the Optional in the stubs is for nodes built by hand.
        return self.at(node.lineno, node.col_offset), self.at(_end_line(node), _end_col(node))

    def text(self, a: int, b: int) -> str:
        return self.data[a:b].decode()


def _end_line(node: ast.expr | ast.stmt) -> int:
    return node.end_lineno if node.end_lineno is not None else node.lineno


def _end_col(node: ast.expr | ast.stmt) -> int:
    return node.end_col_offset if node.end_col_offset is not None else node.col_offset


def _single_line(node: ast.expr | ast.stmt) -> bool:
    return node.lineno == node.end_lineno


@dataclass
class PyContext:
    """What the operators read of one snippet: its tree, byte offsets, the function's locals."""

    code: str
    tree: ast.Module
    off: _PyOffsets
    local_names: set[str]
    """Names the function binds (arguments, assignments), minus those it calls and self/cls."""
    nodes: list[ast.AST] = field(default_factory=list)
    """Every node in ``ast.walk`` order, without those inside f-strings (positions unreliable < 3.12)."""
    docstrings: set[int] = field(default_factory=set)
    """ids of the Constant nodes that are docstrings."""

    @classmethod
    def of(cls, code: str) -> PyContext:
        tree = ast.parse(code)
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
        docstrings: set[int] = set()
        for n in ast.walk(tree):
            body = getattr(n, "body", None)
            if (
                isinstance(body, list)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                docstrings.add(id(body[0].value))
        # Before Python 3.12 the positions of nodes inside f-strings are unreliable: never edit there.
        in_fstring = {id(n) for js in ast.walk(tree) if isinstance(js, ast.JoinedStr) for n in ast.walk(js)}
        nodes = [n for n in ast.walk(tree) if id(n) not in in_fstring]
        return cls(code, tree, _PyOffsets(code), local_names, nodes, docstrings)

    def find_op(self, left: ast.expr, right: ast.expr, ops: Iterable[str]) -> tuple[int, int, str] | None:
        """Locate an operator token between two operands (skipping parentheses/whitespace)."""
        off = self.off
        a = off.at(_end_line(left), _end_col(left))
        b = off.at(right.lineno, right.col_offset)
        between = off.data[a:b].decode()
        for op in sorted(ops, key=len, reverse=True):
            pat = r"(?<![<>=!*/])" + re.escape(op) + r"(?![<>=*/])" if not op.isalpha() else r"\b" + op + r"\b"
            m = re.search(pat, between)
            if m:
                return a + len(between[: m.start()].encode()), a + len(between[: m.end()].encode()), op
        return None


_CMP_SWAP: dict[type[ast.cmpop], tuple[str, str]] = {
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
}
_ARITH: dict[type[ast.operator], tuple[str, str]] = {
    ast.Add: ("+", "-"),
    ast.Sub: ("-", "+"),
    ast.Mult: ("*", "/"),
    ast.Div: ("/", "*"),
    ast.FloorDiv: ("//", "/"),
}


def comparison(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                if type(op) in _CMP_SWAP:
                    old, new = _CMP_SWAP[type(op)]
                    hit = ctx.find_op(left, right, [old])
                    if hit and hit[2] == old:
                        edits.append(Edit(hit[0], hit[1], new, "comparison"))
                left = right
    return edits


def arithmetic(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if not (isinstance(node, ast.BinOp) and type(node.op) in _ARITH):
            continue
        if any(
            isinstance(s, ast.JoinedStr) or (isinstance(s, ast.Constant) and isinstance(s.value, (str, bytes)))
            for s in (node.left, node.right)
        ):
            continue  # "a" - "b" is a type error nobody would write
        old, new = _ARITH[type(node.op)]
        hit = ctx.find_op(node.left, node.right, [old])
        if hit and hit[2] == old:
            edits.append(Edit(hit[0], hit[1], new, "arithmetic"))
    return edits


def bool_op(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if isinstance(node, ast.BoolOp):
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            hit = ctx.find_op(node.values[0], node.values[1], [old])
            if hit:
                edits.append(Edit(hit[0], hit[1], new, "bool_op"))
    return edits


def negation(ctx: PyContext) -> list[Edit]:
    """Drop a ``not``, or negate a one-line ``if``/``while`` condition that has none."""
    edits: list[Edit] = []
    off = ctx.off
    for node in ctx.nodes:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
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
    return edits


def off_by_one(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if isinstance(node, ast.Constant) and type(node.value) is int and id(node) not in ctx.docstrings:
            a, b = ctx.off.span(node)
            if ctx.off.text(a, b).isdigit():
                v = node.value
                edits.append(Edit(a, b, str(v + 1), "off_by_one"))
                if v > 0:
                    edits.append(Edit(a, b, str(v - 1), "off_by_one"))
    return edits


def index_shift(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and _single_line(node.slice):
            a, b = ctx.off.span(node.slice)
            edits.append(Edit(a, b, ctx.off.text(a, b) + " + 1", "index_shift"))
    return edits


def wrong_variable(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in ctx.local_names:
            others = sorted(ctx.local_names - {node.id})
            if others:
                a, b = ctx.off.span(node)
                for o in others[:3]:
                    edits.append(Edit(a, b, o, "wrong_variable"))
    return edits


def swap_args(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    off = ctx.off
    for node in ctx.nodes:
        if not isinstance(node, ast.Call):
            continue
        pos = [x for x in node.args if not isinstance(x, ast.Starred)]
        if len(pos) >= 2 and len(pos) == len(node.args) and _single_line(node):
            a0, b0 = off.span(pos[0])
            a1, b1 = off.span(pos[1])
            t0, t1 = off.text(a0, b0), off.text(a1, b1)
            if t0 != t1:
                edits.append(Edit(a0, b1, t1 + off.text(b0, a1) + t0, "swap_args"))
    return edits


def wrong_method(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in SIMILAR_METHOD:
            _, b = ctx.off.span(f)
            edits.append(Edit(b - len(f.attr.encode()), b, SIMILAR_METHOD[f.attr], "wrong_method"))
        elif isinstance(f, ast.Name) and f.id in ("min", "max", "any", "all"):
            a, b = ctx.off.span(f)
            edits.append(Edit(a, b, SIMILAR_METHOD[f.id], "wrong_method"))
    return edits


def wrong_return(ctx: PyContext) -> list[Edit]:
    edits: list[Edit] = []
    for node in ctx.nodes:
        if not (isinstance(node, ast.Return) and node.value is not None and _single_line(node.value)):
            continue
        a, b = ctx.off.span(node.value)
        v = node.value
        if isinstance(v, ast.Constant) and isinstance(v.value, bool):
            repl = str(not v.value)
        elif isinstance(v, ast.Constant) and v.value is None:
            continue
        elif isinstance(v, ast.Constant) and type(v.value) is int:
            repl = str(v.value + 1) if v.value in (0, -1) else "0"
        elif isinstance(v, ast.Name) and ctx.local_names - {v.id}:
            repl = sorted(ctx.local_names - {v.id})[0]
        else:
            repl = "None"
        edits.append(Edit(a, b, repl, "wrong_return"))
    return edits


def remove_statement(ctx: PyContext) -> list[Edit]:
    """A whole single-line statement, or a two-line guard ``if c:\\n    return/raise/...``."""
    edits: list[Edit] = []
    off = ctx.off
    n_lines = len(ctx.code.splitlines(keepends=True))
    for node in ast.walk(ctx.tree):
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if not isinstance(body, list) or len(body) < 2:
                continue
            for st in body:
                if not isinstance(st, ast.stmt):
                    continue
                if (
                    isinstance(st, (ast.Expr, ast.Assign, ast.AugAssign))
                    and _single_line(st)
                    and not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant))
                ):
                    first, last = st.lineno, _end_line(st)
                elif (
                    isinstance(st, ast.If)
                    and not st.orelse
                    and len(st.body) == 1
                    and isinstance(st.body[0], (ast.Return, ast.Raise, ast.Continue, ast.Break))
                    and _end_line(st) - st.lineno <= 1
                ):
                    first, last = st.lineno, _end_line(st)
                else:
                    continue
                # Only whole lines that hold nothing but this statement.
                a = off.at(first, 0)
                b = off.starts[last] if last < len(off.starts) else len(off.data)
                if off.text(a, b).strip() != off.text(*off.span(st)).strip():
                    continue
                edits.append(Edit(a, b, "", "remove_statement", label_line=removal_label(first, last, n_lines)))
    return edits


PYTHON_OPERATORS: dict[str, Callable[[PyContext], list[Edit]]] = {
    "comparison": comparison,
    "arithmetic": arithmetic,
    "off_by_one": off_by_one,
    "index_shift": index_shift,
    "bool_op": bool_op,
    "negation": negation,
    "wrong_variable": wrong_variable,
    "swap_args": swap_args,
    "wrong_return": wrong_return,
    "remove_statement": remove_statement,
    "wrong_method": wrong_method,
}
"""Operator name → the function that finds its edits in a Python snippet."""


def python_candidates(code: str, operators: Iterable[str] = OPERATORS) -> list[Edit]:
    """Every edit the given operators (all by default) can make in this snippet (callers sample one)."""
    ctx = PyContext.of(code)
    return [e for name in operators for e in PYTHON_OPERATORS[name](ctx)]


def python_snippets(source: str) -> list[Snippet]:
    """Functions and methods of 6-40 lines (decorators excluded), dedented so they parse alone."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    out: list[Snippet] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        end = _end_line(node)
        n = end - node.lineno + 1
        if not (MIN_LINES <= n <= MAX_LINES):
            continue
        body = dedent(lines[node.lineno - 1 : end])
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
