"""Single-bug mutants of function-sized snippets, the bulk of Stage 2's labeled lines.

Every mutant is one text edit made at a syntax node's byte offsets, so every other line of the snippet
stays byte-identical (no ``ast.unparse`` round trip that would reformat the code and leak a signal), and
the result is re-parsed: Python with ``ast``, Java/JavaScript/Go with tree-sitter (no ERROR nodes).

The package, one job a module:
  table.py            the operator table (names recorded in ``Sample.operator``) and the method pairs
  edits.py            Edit, Snippet, applying an edit, line arithmetic
  python_ops.py       one function per operator for Python (``PYTHON_OPERATORS``)
  tree_sitter_ops.py  one function per operator for Java/JavaScript/Go (``TREE_SITTER_OPERATORS``)
  driver.py           sampling mutants of a snippet (operator first, then site)
  sources.py          files, manifests and corpus directories in, labeled samples out

``remove_statement`` labels the line that now stands where the removed one was (the reader sees the
gap there); every other operator labels the line(s) its edit touched.
"""

from risk_core.data.mutate.driver import candidates_for, mutate_snippet, parses, snippets_for
from risk_core.data.mutate.edits import MAX_LINES, MIN_LINES, Edit, Snippet, apply_edit
from risk_core.data.mutate.python_ops import PYTHON_OPERATORS, python_candidates, python_parses, python_snippets
from risk_core.data.mutate.sources import (
    MIN_CODE_LINES,
    collect_sources,
    language_of,
    load_sources,
    mutate_files,
    mutate_sources,
)
from risk_core.data.mutate.table import OPERATOR_DOCS, OPERATORS, SIMILAR_METHOD
from risk_core.data.mutate.tree_sitter_ops import TREE_SITTER_OPERATORS, ts_candidates, ts_parses, ts_snippets

__all__ = [
    "MAX_LINES",
    "MIN_CODE_LINES",
    "MIN_LINES",
    "OPERATORS",
    "OPERATOR_DOCS",
    "PYTHON_OPERATORS",
    "SIMILAR_METHOD",
    "TREE_SITTER_OPERATORS",
    "Edit",
    "Snippet",
    "apply_edit",
    "candidates_for",
    "collect_sources",
    "language_of",
    "load_sources",
    "mutate_files",
    "mutate_snippet",
    "mutate_sources",
    "parses",
    "python_candidates",
    "python_parses",
    "python_snippets",
    "snippets_for",
    "ts_candidates",
    "ts_parses",
    "ts_snippets",
]
