"""bot.rank + bot.config: threshold, merging, caps, and the .pttrust.yml validation."""

from __future__ import annotations

import pytest
from review_doubles import FakeFileScores, FakeLineRisk

from bot.config import ReviewConfig, load_config
from bot.context import GitAttributes, path_matches, skip_reason
from bot.rank import rank
from risk_core.errors import UsageError


def fs(path, risks):
    return FakeFileScores(path, [FakeLineRisk(path, n, r, f"line {n}") for n, r in risks.items()])


def test_adjacent_risky_lines_merge_into_one_finding():
    r = rank([fs("a.py", {1: 0.9, 2: 0.7, 3: 0.2, 4: 0.8, 9: 0.6})], threshold=0.5)
    spans = [(f.start_line, f.end_line, f.risk) for f in r.findings]
    assert spans == [(1, 2, 0.9), (4, 4, 0.8), (9, 9, 0.6)]
    assert r.findings[0].peak.line == 1 and r.findings[0].is_multiline


def test_caps_per_file_and_total_are_counted():
    scores = [fs("a.py", {1: 0.9, 3: 0.8, 5: 0.7}), fs("b.py", {1: 0.95, 3: 0.6})]
    r = rank(scores, threshold=0.5, max_comments=2, max_comments_per_file=2)
    assert [(f.path, f.start_line) for f in r.findings] == [("b.py", 1), ("a.py", 1)]
    assert r.candidates == 5 and r.over_file_cap == 0 and r.over_total_cap == 3
    assert [(f.path, f.start_line, f.dropped_by) for f in r.dropped] == [
        ("a.py", 3, "max_comments"),
        ("a.py", 5, "max_comments"),
        ("b.py", 3, "max_comments"),
    ]


def test_caps_never_hide_a_finding_riskier_than_one_shown():
    # a.py's third finding (0.7) is riskier than b.py's only one (0.6): the per-file cap of 2 must not
    # leave 0.7 out while 0.6 is shown. The cut is a prefix of the ranking.
    scores = [fs("a.py", {1: 0.9, 3: 0.8, 5: 0.7}), fs("b.py", {1: 0.6})]
    r = rank(scores, threshold=0.5, max_comments_per_file=2)
    shown = min(f.risk for f in r.findings)
    assert all(d.risk <= shown for d in r.dropped)
    assert [(f.path, f.start_line) for f in r.findings] == [("a.py", 1), ("a.py", 3)]
    assert [(f.path, f.start_line, f.dropped_by) for f in r.dropped] == [
        ("a.py", 5, "max_comments_per_file"),
        ("b.py", 1, "max_comments_per_file"),
    ]
    assert r.over_file_cap == 2 and r.candidates == 4


def test_threshold_is_strict():
    assert rank([fs("a.py", {1: 0.5})], threshold=0.5).findings == []


def test_generated_and_vendored_paths():
    attrs = GitAttributes.parse("gen/** linguist-generated\n*.js linguist-vendored=true\nkeep.js -linguist-vendored\n")
    assert "generated" in skip_reason("gen/x.py", [], attrs)
    assert "linguist-vendored" in skip_reason("web/a.js", [], attrs)
    assert skip_reason("keep.js", [], attrs) is None
    assert "matches 'vendor/**'" in skip_reason("vendor/lib/x.py", ReviewConfig().skip_paths, None)
    assert path_matches("a/b/c_pb2.py", "*_pb2.py") and not path_matches("src/x.py", "vendor/")


def test_config_file_with_line_numbered_errors(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("threshold: 0.7\nmax_comments: 4\nai_pr_labels: [bot-made]\n")
    cfg = load_config(good)
    assert (cfg.threshold, cfg.max_comments, cfg.ai_pr_labels) == (0.7, 4, ["bot-made"])
    assert cfg.replace(threshold=0.2, max_comments=None).max_comments == 4

    for text, message in [
        ("threshold: 0.5\n\nthreshhold: 0.2\n", ":3: unknown key 'threshhold'"),
        ("max_comments: 3\nthreshold: high\n", ":2: threshold must be a number"),
        ("threshold: 1.5\n", ":1: threshold must be between 0 and 1"),
        ("skip_paths: vendor\n", ":1: skip_paths must be a list of strings"),
        ("a: [\n", "invalid YAML"),
    ]:
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(UsageError) as info:
            load_config(bad)
        assert message in str(info.value), str(info.value)


def test_config_fields_have_docstrings():
    import ast
    import inspect

    import bot.config

    tree = ast.parse(inspect.getsource(bot.config.ReviewConfig))
    body = tree.body[0].body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            nxt = body[i + 1]
            assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), node.target.id
