"""The mutation operators for Java, JavaScript and Go, via tree-sitter.

One function per operator, keyed by the operator table in ``TREE_SITTER_OPERATORS``; each walks the
wrapped snippet's tree in document order and returns the edits it can make there (offsets into the
snippet itself, not the wrapper).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from risk_core.data.mutate.edits import MAX_LINES, MIN_LINES, Edit, Snippet, dedent, line_of, line_starts, removal_label
from risk_core.data.mutate.table import OPERATORS, SIMILAR_METHOD
from risk_core.errors import UsageError
from risk_core.languages import TREE_SITTER_GRAMMARS

if TYPE_CHECKING:
    from tree_sitter import Node, Parser

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
# Binary operator token → (its replacement, the operator of the table that makes the swap).
_SWAPS = {
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
_parsers: dict[str, Parser] = {}


def _ts_parser(language: str) -> Parser:
    if language not in _parsers:
        try:
            import tree_sitter

            mod = importlib.import_module(TREE_SITTER_GRAMMARS[language][0])
            _parsers[language] = tree_sitter.Parser(tree_sitter.Language(mod.language()))
        except ImportError as err:
            raise UsageError(f"{language} mutation needs tree-sitter grammars ({err.name} is not installed)") from None
    return _parsers[language]


def _text(node: Node) -> str:
    # A node of a tree parsed from bytes always has its text; None is for trees parsed by callback.
    return (node.text or b"").decode()


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _ts_wrap_for(code: str, language: str) -> tuple[str, str] | None:
    for pre, post in _TS_WRAPS[language]:
        if not _ts_parser(language).parse((pre + code + post).encode()).root_node.has_error:
            return pre, post
    return None


def ts_parses(code: str, language: str) -> bool:
    """True when the snippet parses without ERROR/MISSING nodes (inside its wrapper)."""
    return _ts_wrap_for(code, language) is not None


def ts_snippets(source: str, language: str) -> list[Snippet]:
    tree = _ts_parser(language).parse(source.encode())
    data = source.encode()
    out: list[Snippet] = []
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
        body = dedent(text.splitlines())
        if body is None:
            continue
        code = "\n".join(body) + "\n"
        if not ts_parses(code, language):
            continue
        name_node = node.child_by_field_name("name")
        name = _text(name_node) if name_node is not None else "anon"
        out.append(Snippet(code, name, node.start_point[0] + 1))
    return out


@dataclass
class TsContext:
    """What the operators read of one snippet: its wrapped tree and the function's declared names."""

    code: str
    language: str
    data: bytes
    """The wrapped snippet's bytes (the tree's offsets index these)."""
    shift: int
    """Bytes of the wrapper before the snippet."""
    nodes: list[Node]
    """Every node of the wrapped tree, in document order."""
    declared: set[str]
    """Names declared in the snippet (variables, parameters), minus those it calls."""

    @classmethod
    def of(cls, code: str, language: str) -> TsContext | None:
        wrap = _ts_wrap_for(code, language)
        if wrap is None:
            return None
        pre, post = wrap
        data = (pre + code + post).encode()
        nodes = list(_walk(_ts_parser(language).parse(data).root_node))
        declared: set[str] = set()
        for n in nodes:
            if n.type in ("variable_declarator", "formal_parameter", "parameter_declaration", "required_parameter"):
                nm = n.child_by_field_name("name")
                if nm is not None and nm.type == "identifier":
                    declared.add(_text(nm))
            elif n.type == "formal_parameters" and language == "javascript":
                declared.update(_text(c) for c in n.named_children if c.type == "identifier")
            elif n.type in ("short_var_declaration", "range_clause") and language == "go":
                left = n.child_by_field_name("left")
                if left is not None:
                    declared.update(_text(c) for c in left.named_children if c.type == "identifier")
        called: set[str] = set()
        for n in nodes:
            if n.type in ("call_expression", "method_invocation"):
                f = n.child_by_field_name("function") or n.child_by_field_name("name")
                if f is not None and f.type == "identifier":
                    called.add(_text(f))
        return cls(code, language, data, len(pre.encode()), nodes, declared - called)

    def edit(self, edits: list[Edit], a: int, b: int, text: str, op: str, label: int | None = None) -> None:
        """Add the edit of wrapped bytes [a, b) when it lies inside the snippet."""
        if a >= self.shift and b <= self.shift + len(self.code.encode()):
            edits.append(Edit(a - self.shift, b - self.shift, text, op, label))


def _binary_swap(ctx: TsContext, operator: str) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type != "binary_expression":
            continue
        op = n.child_by_field_name("operator")
        if op is None or op.type not in _SWAPS:
            continue
        new, name = _SWAPS[op.type]
        if name != operator:
            continue
        left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
        is_str = any(x is not None and "string" in x.type for x in (left, right))
        if not (is_str and name == "arithmetic"):
            ctx.edit(edits, op.start_byte, op.end_byte, new, name)
    return edits


def comparison(ctx: TsContext) -> list[Edit]:
    return _binary_swap(ctx, "comparison")


def arithmetic(ctx: TsContext) -> list[Edit]:
    return _binary_swap(ctx, "arithmetic")


def bool_op(ctx: TsContext) -> list[Edit]:
    return _binary_swap(ctx, "bool_op")


def negation(ctx: TsContext) -> list[Edit]:
    """Drop a ``!``, or negate a one-line ``if``/``while`` condition that has none."""
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type == "unary_expression":
            op = n.child_by_field_name("operator")
            if op is not None and op.type == "!":
                ctx.edit(edits, op.start_byte, op.end_byte, "", "negation")
        elif n.type in ("if_statement", "while_statement"):
            cond = n.child_by_field_name("condition")
            if cond is not None and cond.start_point[0] == cond.end_point[0]:
                if cond.type == "parenthesized_expression":  # java/js: `if (c)` -> `if (!(c))`
                    inner = cond.named_children[0] if cond.named_children else None
                    if inner is not None and inner.type != "unary_expression":
                        ctx.edit(edits, inner.start_byte, inner.end_byte, "!(" + _text(inner) + ")", "negation")
                elif cond.type != "unary_expression":  # go: `if c {`
                    ctx.edit(edits, cond.start_byte, cond.end_byte, "!(" + _text(cond) + ")", "negation")
    return edits


def off_by_one(ctx: TsContext) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type in _TS_INT[ctx.language]:
            s = _text(n)
            if s.isdigit():
                v = int(s)
                ctx.edit(edits, n.start_byte, n.end_byte, str(v + 1), "off_by_one")
                if v > 0:
                    ctx.edit(edits, n.start_byte, n.end_byte, str(v - 1), "off_by_one")
    return edits


def index_shift(ctx: TsContext) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type in ("array_access", "subscript_expression", "index_expression"):
            idx = n.child_by_field_name("index")
            if idx is not None and idx.type == "identifier":
                ctx.edit(edits, idx.start_byte, idx.end_byte, _text(idx) + " + 1", "index_shift")
    return edits


def wrong_variable(ctx: TsContext) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type != "identifier" or _text(n) not in ctx.declared:
            continue
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
            for o in sorted(ctx.declared - {_text(n)})[:3]:
                ctx.edit(edits, n.start_byte, n.end_byte, o, "wrong_variable")
    return edits


def swap_args(ctx: TsContext) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type != _TS_ARGS[ctx.language]:
            continue
        args = n.named_children
        if len(args) >= 2 and n.start_point[0] == n.end_point[0] and args[0].text != args[1].text:
            a0, a1 = args[0], args[1]
            middle = ctx.data[a0.end_byte : a1.start_byte].decode()
            ctx.edit(edits, a0.start_byte, a1.end_byte, _text(a1) + middle + _text(a0), "swap_args")
    return edits


def wrong_method(ctx: TsContext) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        name = None
        if n.type == "method_invocation":
            name = n.child_by_field_name("name")
        elif n.type == "call_expression":
            f = n.child_by_field_name("function")
            if f is not None and f.type in ("member_expression", "selector_expression"):
                name = f.child_by_field_name("property") or f.child_by_field_name("field")
        if name is not None and _text(name) in SIMILAR_METHOD:
            ctx.edit(edits, name.start_byte, name.end_byte, SIMILAR_METHOD[_text(name)], "wrong_method")
    return edits


def wrong_return(ctx: TsContext) -> list[Edit]:
    edits: list[Edit] = []
    for n in ctx.nodes:
        if n.type != "return_statement":
            continue
        vals = [c for c in n.named_children if c.type not in ("comment",)]
        if len(vals) == 1 and vals[0].start_point[0] == vals[0].end_point[0]:
            v = vals[0]
            if v.type == "expression_list":  # go: `return a, b`
                continue
            s = _text(v)
            if s in ("true", "false"):
                repl = "false" if s == "true" else "true"
            elif v.type in _TS_INT[ctx.language] and s.isdigit():
                repl = "1" if s == "0" else "0"
            elif v.type == "identifier" and ctx.declared - {s}:
                repl = sorted(ctx.declared - {s})[0]
            elif ctx.language == "javascript":
                repl = "null" if s != "null" else "undefined"
            else:
                continue  # java/go: no untyped "nothing" value that always compiles
            ctx.edit(edits, v.start_byte, v.end_byte, repl, "wrong_return")
    return edits


def remove_statement(ctx: TsContext) -> list[Edit]:
    """A one-line statement or guard alone on its lines, inside a block with >= 2 of them."""
    edits: list[Edit] = []
    lang, shift = ctx.language, ctx.shift
    code_b = ctx.code.encode()
    starts = line_starts(code_b)
    n_lines = len(ctx.code.splitlines())
    for n in ctx.nodes:
        if n.type not in _TS_BLOCK[lang]:
            continue
        stmts = [c for c in n.named_children if c.type != "comment"]
        if len(stmts) < 2:
            continue
        for st in stmts:
            ok = st.type in _TS_STMT[lang] and st.start_point[0] == st.end_point[0]
            if st.type == "if_statement" and st.child_by_field_name("alternative") is None:
                cons = st.child_by_field_name("consequence")
                inner = list(cons.named_children) if cons is not None and cons.type in _TS_BLOCK[lang] else [cons]
                first_inner = inner[0] if len(inner) == 1 else None
                ok = (
                    first_inner is not None
                    and first_inner.type in _TS_EXIT
                    and st.end_point[0] - st.start_point[0] <= 2
                )
            if not ok or st.start_byte < shift:
                continue
            a, b = st.start_byte - shift, st.end_byte - shift
            first = line_of(starts, a)
            last = line_of(starts, max(a, b - 1))
            la = starts[first - 1]
            lb = starts[last] if last < len(starts) else len(code_b)
            if code_b[la:a].strip() or code_b[b:lb].strip():
                continue  # something else shares the line
            ctx.edit(edits, la + shift, lb + shift, "", "remove_statement", removal_label(first, last, n_lines))
    return edits


TREE_SITTER_OPERATORS: dict[str, Callable[[TsContext], list[Edit]]] = {
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
"""Operator name → the function that finds its edits in a Java/JavaScript/Go snippet."""


def ts_candidates(code: str, language: str, operators: Iterable[str] = OPERATORS) -> list[Edit]:
    """Every edit the given operators (all by default) can make in this snippet (callers sample one)."""
    ctx = TsContext.of(code, language)
    if ctx is None:
        return []
    return [e for name in operators for e in TREE_SITTER_OPERATORS[name](ctx)]
