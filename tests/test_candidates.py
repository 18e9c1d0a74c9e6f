"""Candidate lines are code, decided by a parser, in every supported language."""

import pytest

from risk_core.candidates import candidate_mask, definition_spans, enclosing_definition, has_grammar


def marked(code: str, language: str) -> list[str]:
    """The candidate lines' stripped text, for readable assertions."""
    return [ln.strip() for ln, c in zip(code.splitlines(), candidate_mask(code, language)) if c]


def test_every_supported_language_has_its_grammar_installed():
    for lang in ("python", "java", "javascript", "typescript", "go", "rust", "c", "cpp"):
        assert has_grammar(lang), lang


def test_python_trailing_module_string_is_prose():
    code = 'def f(x):\n    return x + 1\n\n\nUSAGE = """\nOutput:\n  Examples:\nf(1) -> 2\n"""\n'
    assert marked(code, "python") == ["def f(x):", "return x + 1", 'USAGE = """']


def test_python_bare_trailing_string_and_docstrings_are_prose():
    code = 'def f(x):\n    """Add one.\n\n    Returns: x + 1\n    """\n    return x + 1\n\n"""\nOutput: 3\n"""\n'
    assert marked(code, "python") == ["def f(x):", "return x + 1"]


def test_python_multiline_string_argument_and_fstrings():
    code = (
        'raise ValueError(\n    "first part "\n    f"value {x} "\n    "end"\n)\nmsg = f"{a}"\n'
        'y = call(\n    """\n    text\n    """,\n    z,\n)\n'
    )
    assert marked(code, "python") == ["raise ValueError(", 'msg = f"{a}"', "y = call(", "z,"]


def test_python_comments_and_bracket_lines_are_not_candidates():
    code = "x = [\n    1,\n    2,\n]  # done\n# note\n"
    assert marked(code, "python") == ["x = [", "1,", "2,"]


def test_python_window_cut_from_inside_a_function_still_parses():
    code = "        if x:\n            return 1\n    y = 'text'\n    # c\n"
    assert marked(code, "python") == ["if x:", "return 1", "y = 'text'"]


def test_javascript_template_literal_and_block_comment():
    code = "const a = `line one\nline two ${b}\nline three`;\n/* block\n   comment */\nfoo(1); // c\n}\n"
    assert marked(code, "javascript") == ["const a = `line one", "line two ${b}", "foo(1); // c"]


def test_typescript_types_and_template():
    code = "function f(x: number): string {\n  return `\n  ${x}`;\n}\n// end\n"
    assert marked(code, "typescript") == ["function f(x: number): string {", "return `", "${x}`;"]


def test_java_text_block_and_javadoc():
    code = (
        'class A {\n  /**\n   * Docs.\n   */\n  String s = """\n      Output:\n      text\n      """;\n'
        "  int f() { return 1; }\n}\n"
    )
    assert marked(code, "java") == ["class A {", 'String s = """', "int f() { return 1; }"]


def test_go_raw_string():
    code = "package m\n\nvar usage = `\nUsage: tool [flags]\n`\n\nfunc f() int {\n\treturn 1\n}\n"
    assert marked(code, "go") == ["package m", "var usage = `", "func f() int {", "return 1"]


def test_c_if_zero_region_is_dead_text():
    code = "#if 0\nint dead = 1;\n#else\nint live = 2;\n#endif\n/* c */\nint g(void) { return 0; }\n"
    assert marked(code, "c") == ["#if 0", "#else", "int live = 2;", "#endif", "int g(void) { return 0; }"]


def test_language_without_grammar_has_no_candidates():
    assert candidate_mask("Some prose.\nMore prose.\n", "markdown") == [False, False]
    assert candidate_mask("", "python") == []


@pytest.mark.parametrize(
    "language,code,line,span",
    [
        ("python", "class A:\n    @dec\n    def f(self):\n        return 1\n\nx = 1\n", 4, (2, 4)),
        ("python", "def f():\n    def g():\n        return 1\n    return g\n", 3, (2, 3)),
        ("java", "class A {\n  int f() {\n    return 1;\n  }\n}\n", 3, (2, 4)),
        ("javascript", "const f = (a) => {\n  return a;\n};\nfoo(() => 1);\n", 2, (1, 3)),
        ("typescript", "class A {\n  m(): number {\n    return 1;\n  }\n}\n", 3, (2, 4)),
        ("go", "package m\nfunc (r *R) F() int {\n\treturn 1\n}\n", 3, (2, 4)),
    ],
)
def test_enclosing_definition(language, code, line, span):
    assert enclosing_definition(code, language, line) == span


def test_no_enclosing_definition_at_module_level():
    assert enclosing_definition("x = 1\ndef f():\n    pass\n", "python", 1) is None
    assert definition_spans("x = 1\n", "markdown") == []


def test_blank_comment_docstring_and_brace_lines_are_not_candidates():
    py = 'def f(x):\n    """Doc\n    more."""\n    # note\n\n    return x\n'
    assert candidate_mask(py, "python") == [True, False, False, False, False, True]
    java = "int f() {\n  // c\n  /* a\n   b */\n  return 1;\n}\n"
    assert candidate_mask(java, "java") == [True, False, False, False, True, False]


def test_scoring_window_is_the_definition_or_a_bounded_part_of_it():
    from risk_core.candidates import scoring_window

    spans = [(1, 10), (20, 200), (30, 40)]
    assert scoring_window(spans, 500, 5) == (1, 10)  # whole short function
    assert scoring_window(spans, 500, 35) == (30, 40)  # innermost
    assert scoring_window(spans, 500, 50) == (20, 79)  # long function, line among its first 60
    assert scoring_window(spans, 500, 150) == (140, 199)  # the function's 60-line block holding it
    assert scoring_window(spans, 500, 199) == (140, 199)  # the same block: lines share windows
    assert scoring_window(spans, 500, 200) == (141, 200)  # the last block ends at the function's end
    # outside every definition: the run of lines between definitions that holds the line (a class
    # header and its fields, the imports), in 60-line blocks when long; never a definition's lines
    assert scoring_window(spans, 500, 15) == (11, 19)
    assert scoring_window(spans, 500, 210) == (201, 260)  # the run after the long function: its blocks
    assert scoring_window(spans, 500, 300) == (261, 320)
    assert scoring_window(spans, 500, 500) == (441, 500)
    assert scoring_window([(3, 8)], 8, 1) == (1, 2)  # before the first definition
    assert scoring_window([], 12, 3) == (1, 12)  # a short file is its own window
    assert scoring_window([], 500, 2) == (1, 60)
