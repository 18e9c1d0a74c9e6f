"""The one table of source languages: file suffix → language, and what each part of PtTrust does with them.

Torch-free and dependency-free, so serving, the corpus builder, the mutator and the fix miner all read
the same answer to "which language is this file" without importing one another.
"""

from __future__ import annotations

import os

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".java": "java",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".ipp": "cpp",
    ".inl": "cpp",
}
"""File suffix (lower case, with the dot) → language name."""

# Typescript declaration files are mostly generated API surface, not code; minified bundles are not
# code a person wrote.
GENERATED_SUFFIXES = (".d.ts", ".min.js", ".min.mjs", ".bundle.js")
"""Suffixes of files that are never read as source, whatever their extension says."""

TREE_SITTER_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "java": ("tree_sitter_java", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}
"""Language → (grammar module, function returning its language pointer): candidate lines and definitions."""

MUTATION_LANGUAGES = frozenset({"python", "java", "javascript", "go"})
"""Languages the mutation operators are written for (``risk_core.data.mutate``)."""

MINED_LANGUAGES = MUTATION_LANGUAGES | {"typescript"}
"""Languages whose bug-fix commits are mined (``risk_core.data.from_git``)."""


def language_of(path: str | os.PathLike[str]) -> str | None:
    """The language of a file from its name, or None (unknown suffix, or generated/minified)."""
    low = os.fspath(path).lower()
    if low.endswith(GENERATED_SUFFIXES):
        return None
    return EXTENSIONS.get(os.path.splitext(low)[1])
