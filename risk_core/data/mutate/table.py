"""The operator table: the names recorded in ``Sample.operator``, what each does, and the name pairs
``wrong_method`` swaps. Each language module implements every operator as one function keyed by these names.
"""

from __future__ import annotations

OPERATOR_DOCS: dict[str, str] = {
    "comparison": "< <-> <=, > <-> >=",
    "arithmetic": "+ <-> -, * <-> /, // <-> /",
    "off_by_one": "an integer constant +-1",
    "index_shift": "x[i] -> x[i + 1]",
    "bool_op": "and <-> or, && <-> ||",
    "negation": "drop a `not`/`!`, or add one to a condition",
    "wrong_variable": "another local of the function",
    "swap_args": "the first two call arguments swapped",
    "wrong_return": "the returned value changed",
    "remove_statement": "a statement or guard line removed (the line now standing there is labeled)",
    "wrong_method": "a similarly named method/builtin (append->extend, startswith->endswith, min->max ...)",
}
"""Operator name → what it does to the snippet (the order is the table's order everywhere)."""

OPERATORS = tuple(OPERATOR_DOCS)
"""The operator names, in table order."""

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
"""Method/builtin name → the similar name ``wrong_method`` puts in its place."""
for _a, _b in _METHOD_PAIRS:
    SIMILAR_METHOD.setdefault(_a, _b)
    SIMILAR_METHOD.setdefault(_b, _a)
