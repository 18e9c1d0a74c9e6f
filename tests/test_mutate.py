"""Mutation operators, table-driven over operators and languages: every mutant parses, differs from the
original only on its labeled line(s), and the label points at the edit."""

from __future__ import annotations

import pytest

from risk_core.candidates import candidate_mask
from risk_core.data.mutate import (
    OPERATORS,
    apply_edit,
    candidates_for,
    collect_sources,
    mutate_files,
    parses,
    snippets_for,
)

PY = '''\
def window_sum(values, lo, hi):
    """Sum values in [lo, hi) that pass the filter."""
    total = 0
    count = 0
    for i in range(lo, hi):
        if not values or i >= len(values):
            break
        v = values[i]
        if v > 0 and keep(v):
            total += v * 2
        count = count + 1
        items.append(v)
        out = pow(v, i)
    return total - max(count, 1)
'''

JAVA = """\
int windowSum(int[] values, int lo, int hi) {
    int total = 0;
    int count = 0;
    for (int i = lo; i < hi; i++) {
        if (!valid(values) || i >= values.length) {
            break;
        }
        int v = values[i];
        if (v > 0 && keep(v)) {
            total += v * 2;
        }
        count = count + 1;
        items.add(v);
        name = text.toLowerCase();
        Math.pow(v, i);
    }
    return total - count;
}
"""

JS = """\
function windowSum(values, lo, hi) {
  let total = 0;
  let count = 0;
  for (let i = lo; i < hi; i++) {
    if (!values || i >= values.length) {
      break;
    }
    const v = values[i];
    if (v > 0 && keep(v)) {
      total += v * 2;
    }
    count = count + 1;
    items.push(v);
    out = Math.max(v, i);
  }
  return total;
}
"""

GO = """\
func windowSum(values []int, lo int, hi int) int {
	total := 0
	count := 0
	for i := lo; i < hi; i++ {
		if !valid(values) || i >= len(values) {
			break
		}
		v := values[i]
		if v > 0 && keep(v) {
			total += v * 2
		}
		count = count + 1
		ok = strings.HasPrefix(name, "x")
		out = pow(v, i)
	}
	return total - count
}
"""

SOURCES = {"python": PY, "java": JAVA, "javascript": JS, "go": GO}
# Every operator must be exercised in every language, except where the language lacks the construct in
# the fixture (wrong_return of a compound expression has no safe typed replacement in Java/Go).
EXPECTED = {lang: set(OPERATORS) for lang in SOURCES}
EXPECTED["java"] -= {"wrong_return"}
EXPECTED["go"] -= {"wrong_return"}
CASES = [(lang, op) for lang in SOURCES for op in OPERATORS if op in EXPECTED[lang]]


@pytest.mark.parametrize("language,operator", CASES)
def test_operator_produces_parseable_mutant_with_right_label(language, operator):
    code = SOURCES[language]
    assert parses(code, language)
    edits = [e for e in candidates_for(code, language) if e.operator == operator]
    assert edits, f"{operator} found no site in the {language} fixture"
    orig = code.splitlines()
    checked = 0
    for e in edits:
        new, labels = apply_edit(code, e)
        if new == code:
            continue
        assert parses(new, language), f"{operator} broke the {language} syntax:\n{new}"
        lines = new.splitlines()
        if operator == "remove_statement":
            assert len(lines) < len(orig)
            # the labeled line is where the removed statement stood; the lines before it are intact
            assert lines[: labels[0] - 1] == orig[: labels[0] - 1]
        else:
            assert len(lines) == len(orig)
            changed = [i + 1 for i, (a, b) in enumerate(zip(orig, lines)) if a != b]
            assert changed and changed == labels, (changed, labels)  # every other line byte-identical
        checked += 1
    assert checked


@pytest.mark.parametrize("language", list(SOURCES))
def test_snippets_and_sampling(language, tmp_path):
    ext = {"python": ".py", "java": ".java", "javascript": ".js", "go": ".go"}[language]
    wrap = {"java": ("class A {\n", "}\n"), "go": ("package p\n\n", "")}.get(language, ("", ""))
    body = SOURCES[language]
    if language == "java":
        body = "".join("    " + ln if ln.strip() else ln for ln in body.splitlines(keepends=True))
    src = tmp_path / f"f{ext}"
    src.write_text(wrap[0] + body + wrap[1])
    snips = snippets_for(src.read_text(), language)
    assert len(snips) == 1 and parses(snips[0].code, language)
    a = mutate_files([src], per_file=4, seed=3, per_snippet=4)
    b = mutate_files([src], per_file=4, seed=3, per_snippet=4)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]  # seeded
    assert len(a) == 4 and len({s.code for s in a}) == 4
    for s in a:
        mask = candidate_mask(s.code, language)
        assert s.buggy_lines and all(mask[ln - 1] for ln in s.buggy_lines)
        assert s.operator in OPERATORS and s.language == language


def test_collect_sources_manifest_reserved_split(tmp_path):
    (tmp_path / "a.py").write_text(PY)
    (tmp_path / "b.py").write_text(PY)
    man = tmp_path / "manifest.jsonl"
    man.write_text('{"path": "a.py", "split": "train"}\n{"path": "b.py", "split": "reserved"}\n')
    assert [p.name for p in collect_sources([man])] == ["b.py"]
    assert sorted(p.name for p in collect_sources([tmp_path])) == ["a.py", "b.py"]


def test_corpus_directory_contributes_its_reserved_split_only(tmp_path):
    import hashlib
    import json

    from risk_core.data.mutate import load_sources, mutate_sources

    rows = []
    for i, (split, text) in enumerate([("train", PY), ("reserved", PY.replace("window_sum", "ws2"))]):
        sha = hashlib.sha256(text.encode()).hexdigest()
        (tmp_path / "blobs" / sha[:2]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "blobs" / sha[:2] / sha).write_text(text)
        rows.append({"id": i, "path": f"src/m{i}.py", "language": "python", "sha256": sha, "split": split})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_sources([tmp_path])
    assert [(p, lang) for p, lang, _ in items] == [("src/m1.py", "python")]
    samples = mutate_sources(items, per_file=2, seed=0, per_snippet=2)
    assert len(samples) == 2 and all(s.path == "src/m1.py" and "ws2" in s.code for s in samples)


def test_every_operator_of_the_table_has_one_function_per_language():
    from risk_core.data.mutate import OPERATOR_DOCS, PYTHON_OPERATORS, TREE_SITTER_OPERATORS

    assert tuple(PYTHON_OPERATORS) == OPERATORS == tuple(TREE_SITTER_OPERATORS) == tuple(OPERATOR_DOCS)
    assert all(callable(f) for f in (*PYTHON_OPERATORS.values(), *TREE_SITTER_OPERATORS.values()))


@pytest.mark.parametrize("lang", sorted(SOURCES))
def test_candidates_of_a_subset_are_the_operators_own(lang):
    code = snippets_for(SOURCES[lang], lang)[0].code
    everything = candidates_for(code, lang)
    only = candidates_for(code, lang, ["comparison", "negation"])
    assert only and {e.operator for e in only} == {"comparison", "negation"}
    assert only == [e for e in everything if e.operator in ("comparison", "negation")]


def test_a_named_file_in_a_language_without_operators_is_skipped(tmp_path):
    # It used to reach the tree-sitter table with language None (KeyError, a traceback).
    from risk_core.data.mutate import load_sources

    (tmp_path / "notes.txt").write_text("not code\n")
    (tmp_path / "lib.rs").write_text("fn main() {}\n")
    assert load_sources([tmp_path / "notes.txt", tmp_path / "lib.rs"]) == []
