"""Property-based fuzzing kept as tests (issue 14, beyond the list): diffs, GitHub file lists and
`.pttrust.yml`. The example count is bounded by the ``ci`` profile (tests/conftest.py); run
``HYPOTHESIS_PROFILE=dev`` (or ``fuzz``) for longer."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bot.config import load_config  # noqa: E402
from bot.diff import parse_diff, printable_line  # noqa: E402
from bot.diff_names import quote_path, unquote_path  # noqa: E402
from bot.github_source import PullFile, assemble_diff, pull_diff  # noqa: E402
from risk_core.errors import UsageError  # noqa: E402

# Names as GitHub and git allow them: any character but NUL, no empty or "."/".." segment.
_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
_tricky = st.sampled_from(["x b", "a b/c", " ", "\t", '"', "\\", "é", "語", "\n", "--- ", "+++ ", "@@ ", "b"])
names = st.lists(st.one_of(_segment, _tricky), min_size=1, max_size=4).map("/".join)
_line = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)


@st.composite
def patches(draw):
    """A well-formed hunk: context, removed and added lines with consistent counts."""
    body = draw(st.lists(st.tuples(st.sampled_from(" -+"), _line), min_size=1, max_size=12))
    if not any(k == "+" for k, _ in body):
        body.append(("+", "added"))
    old = sum(k in " -" for k, _ in body)
    new = sum(k in " +" for k, _ in body)
    text = "".join(f"{k}{t}\n" for k, t in body)
    added = [t for k, t in body if k == "+"]
    return f"@@ -1,{old} +1,{new} @@\n{text}", added


@st.composite
def pull_files(draw):
    n = draw(st.integers(1, 5))
    paths = draw(st.lists(names, min_size=n, max_size=n, unique=True))
    out = []
    for path in paths:
        status = draw(st.sampled_from(["modified", "added", "renamed", "copied", "changed"]))
        patch, added = draw(patches())
        previous = draw(names) if status in ("renamed", "copied") else None
        out.append((PullFile(path, status, previous, patch, "0" * 40), added))
    return out


@given(pull_files())
def test_github_file_lists_keep_their_names_and_lines(files):
    parsed = pull_diff([f for f, _ in files])
    assert [c.path for c in parsed.files] == [f.path for f, _ in files]
    for change, (f, added) in zip(parsed.files, files):
        assert [change.added_text[n] for n in change.added_lines] == added
        if f.previous_path and f.previous_path != f.path:
            assert change.old_path == f.previous_path


@given(pull_files())
def test_git_style_text_reads_back_to_the_same_files(files):
    """assemble_diff writes names the way git does; parse_diff reads them back."""
    parsed = parse_diff(assemble_diff([f for f, _ in files]))
    assert [c.path for c in parsed.files] == [f.path for f, _ in files]
    for change, (_, added) in zip(parsed.files, files):
        assert [change.added_text[n] for n in change.added_lines] == added


@given(names)
def test_quoting_round_trips(name):
    quoted = quote_path(name)
    assert (unquote_path(quoted)[0] if quoted.startswith('"') else quoted) == name
    assert "\n" not in quoted and "\t" not in quoted


_diff_line = st.one_of(
    st.sampled_from(["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1,2 +1,2 @@", "@@ -0,0 +1 @@", "\\ No newline"]),
    st.sampled_from(["new file mode 100644", "rename from a", "rename to b", "Binary files a/x and b/x differ"]),
    st.builds(lambda k, t: k + t, st.sampled_from(" +-"), _line),
    _line,
)


@given(st.lists(_diff_line, max_size=25).map(lambda ls: "\n".join(ls) + "\n"), st.sampled_from(["\n", "\r\n"]))
def test_any_diff_text_parses_or_is_one_printable_usage_line(text, eol):
    try:
        parse_diff(text.replace("\n", eol).encode("utf-8"))
    except UsageError as err:
        message = str(err)
        assert message.isprintable() and len(message) <= 240


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_one_usage_line(data):
    try:
        parse_diff(data)
    except UsageError as err:
        assert str(err).isprintable()


_yaml_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True), _line),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_line, inner, max_size=3)),
    max_leaves=6,
)
_keys = st.sampled_from(
    ["threshold", "max_comments", "fail_above", "on_skip", "authored_by", "skip_paths", "max_files", "templates"]
)


@given(st.dictionaries(st.one_of(_keys, _line), _yaml_value, max_size=4))
def test_any_config_loads_or_is_one_usage_line(tmp_path_factory, doc):
    import yaml

    path = tmp_path_factory.mktemp("cfg") / ".pttrust.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        load_config(path)
    except UsageError as err:
        assert "\n" not in str(err)


@given(st.text(max_size=300))
def test_printable_line_is_one_bounded_printable_line(text):
    line = printable_line(text)
    assert line.isprintable() and len(line) <= 160
