"""bot.formats + bot.render: every output format from one report made through the real pipeline
(with the KeywordScorer test double standing in for the model)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
from review_doubles import KeywordScorer

from bot.config import ReviewConfig
from bot.context import working_tree_reader
from bot.formats import format_report
from bot.render import make_environment, render_check, render_comment, render_summary
from bot.review import review
from risk_core.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


@pytest.fixture()
def report():
    diff = (ROOT / "examples" / "example.diff").read_bytes()
    # A binary file and a vendored one ride along so "skipped" shows up in every format.
    diff += (
        b"diff --git a/examples/logo.png b/examples/logo.png\nnew file mode 100644\n"
        b"index 0000000..1111111\nBinary files /dev/null and b/examples/logo.png differ\n"
    )
    return review(
        diff, working_tree_reader(ROOT), KeywordScorer(), ReviewConfig(threshold=0.5), model_name="keyword-test-double"
    )


def test_pipeline_report(report):
    s = report.summary
    assert s.files_in_diff == 3 and s.files_scored == 2
    assert s.lines_scored == 13 and s.max_risk == 0.93
    top = report.findings[0]
    # line 18 (0.71) and line 19 (0.93) are adjacent: one finding whose peak is line 19
    assert (top.path, top.start_line, top.end_line, top.risk) == ("examples/pagination.py", 18, 19, 0.93)
    assert top.peak.line == 19
    assert [sk.path for sk in report.skipped] == ["examples/logo.png"]
    assert report.exceeds(0.9) and not report.exceeds(0.95)


def test_json(report):
    data = json.loads(format_report(report, "json", make_environment()))
    assert set(data) >= {"files", "summary", "skipped"}
    pag = next(f for f in data["files"] if f["path"] == "examples/pagination.py")
    line = next(l for l in pag["lines"] if l["line"] == 19)
    assert line["risk"] == 0.93 and line["latents"][0]["index"] == 7
    assert data["skipped"] == [{"path": "examples/logo.png", "reason": "binary file"}]
    assert data["summary"]["lines_scored"] == 13


def test_sarif_validates_against_the_2_1_0_schema(report):
    sarif = json.loads(format_report(report, "sarif", make_environment()))
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert len(results) == len(report.findings)
    region = results[0]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 18, "endLine": 19}
    assert "93%" in results[0]["message"]["text"]
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert "skipped: binary file" in notes[0]["message"]["text"]


def test_markdown_and_text(report):
    md = format_report(report, "markdown", make_environment())
    assert "## PtTrust risk review" in md and "`examples/pagination.py:18-19`" in md
    assert "skipped: binary file" in md
    text = format_report(report, "text", make_environment(), width=140)
    assert "examples/pagination.py:18-19" in text and "93%" in text
    assert "skipped: examples/logo.png: binary file" in text
    assert "\x1b[" not in text  # no colour codes unless asked


def test_comment_summary_check_templates(report):
    env = make_environment()
    comment = render_comment(env, report.findings[0], report)
    assert "high risk (93%)" in comment and "#7" in comment
    assert "93%" in render_summary(env, report)
    check = render_check(env, report, fail_above=0.9)
    assert check.conclusion == "failure" and "Gate failed" in check.summary
    assert "examples/pagination.py:18-19" in check.text
    assert render_check(env, report, fail_above=None).conclusion == "neutral"


def test_team_templates_override_and_fall_back(report, tmp_path):
    (tmp_path / "comment.md.j2").write_text("RISK {{ finding.risk | risk_pct }} AT {{ finding.start_line }}")
    env = make_environment(tmp_path)
    assert render_comment(env, report.findings[0]) == "RISK 93% AT 18"
    assert "## PtTrust risk review" in render_summary(env, report)  # packaged fallback
    (tmp_path / "summary.md.j2").write_text("{{ report.nope }}")
    with pytest.raises(UsageError, match="summary.md.j2"):
        render_summary(make_environment(tmp_path), report)


def test_html_is_self_contained_and_escaped(report):
    html = format_report(report, "html", make_environment())
    assert "<script" not in html and "http" not in html.split("<body>")[1]
    assert "test-double keyword &lt;b&gt;" in html  # latent labels are escaped
    assert 'data-line="19"' in html


def test_reasons_only_push_risk_up_and_have_a_description(report):
    for f in report.files:
        for line in f.lines:
            assert all(x.contribution > 0 and x.label for x in line.latents), line
    low = next(line for f in report.files for line in f.lines if line.risk == 0.1)
    assert low.latents == []  # #7 argues against its risk (-0.4) and #42 has no description
    comment = render_comment(make_environment(), report.findings[0], report)
    assert "#42" not in comment and "contribution (log-odds of risk)" in comment
    assert "**What to check:** test-double keyword &lt;b&gt;." in comment
    assert "the riskiest of 13 added lines scored in this change" in comment
    second = render_comment(make_environment(), report.findings[1], report)
    assert "the 2nd riskiest of 13" in second or "the 3rd riskiest of 13" in second


def test_summary_lists_what_the_caps_drop():
    diff = (ROOT / "examples" / "example.diff").read_bytes()
    capped = review(diff, working_tree_reader(ROOT), KeywordScorer(), ReviewConfig(threshold=0.5, max_comments=1))
    assert [f.path for f in capped.capped] == ["examples/format.js"]
    summary = render_summary(make_environment(), capped)
    assert "1 more finding(s) above the threshold not commented" in summary
    assert "- 62% `examples/format.js:9` (cut by max_comments)" in summary


def test_gate_acts_on_reported_findings_only():
    diff = (ROOT / "examples" / "example.diff").read_bytes()
    # nothing is above threshold 0.95, so nothing is reported and a gate at 0.05 cannot trip
    quiet = review(diff, working_tree_reader(ROOT), KeywordScorer(), ReviewConfig(threshold=0.95, fail_above=0.05))
    assert quiet.findings == [] and not quiet.exceeds(0.05)
    assert any("gate trips only on findings" in w for w in quiet.warnings)
    assert render_check(make_environment(), quiet, 0.05).conclusion == "success"


DOCS_SCHEMAS = ROOT / "docs" / "schemas"


def _gated():
    diff = (ROOT / "examples" / "example.diff").read_bytes()
    cfg = ReviewConfig(threshold=0.5, max_comments=1, fail_above=0.9)
    return review(diff, working_tree_reader(ROOT), KeywordScorer(candidates=True), cfg)


def test_rdjson_and_rdjsonl_validate_against_the_reviewdog_schema():
    schema = json.loads((DOCS_SCHEMAS / "rdjson.schema.json").read_text())
    report = _gated()
    rd = json.loads(format_report(report, "rdjson", make_environment()))
    jsonschema.Draft7Validator(schema).validate(rd)
    diags = rd["diagnostics"]
    assert [(d["location"]["path"], d["severity"]) for d in diags] == [
        ("examples/pagination.py", "ERROR"),  # 93% trips fail-above 0.9
        ("examples/format.js", "INFO"),  # left out by max_comments=1: listed, not commented
    ]
    assert diags[0]["location"]["range"]["start"] == {"line": 18, "column": 1}
    assert "riskiest of 12 added lines scored" in diags[0]["message"] and rd["severity"] == "ERROR"
    one = {"$ref": "#/definitions/Diagnostic", "definitions": schema["definitions"]}
    lines = format_report(report, "rdjsonl", make_environment()).splitlines()
    assert len(lines) == 2
    for line in lines:
        jsonschema.Draft7Validator(one).validate(json.loads(line))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({"diagnostics": [{"message": "x", "location": {"line": 1}}]})


def test_json_has_a_version_and_validates_against_the_published_schema(report):
    schema = json.loads((DOCS_SCHEMAS / "report.schema.json").read_text())
    for r in (report, _gated()):
        data = json.loads(format_report(r, "json", make_environment()))
        jsonschema.Draft7Validator(schema).validate(data)
        assert data["version"] == 2


def test_sarif_fingerprints_are_unique_and_levels_follow_threshold_and_gate(tmp_path):
    (tmp_path / "a.py").write_text("x = page * per_page\ny = 1\nx = page * per_page\n")
    diff = "--- /dev/null\n+++ b/a.py\n@@ -0,0 +1,3 @@\n+x = page * per_page\n+y = 1\n+x = page * per_page\n"
    cfg = ReviewConfig(threshold=0.5, merge_gap=1, fail_above=0.95)
    r = review(diff, working_tree_reader(tmp_path), KeywordScorer(), cfg)
    sarif = json.loads(format_report(r, "sarif", make_environment()))
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    results = sarif["runs"][0]["results"]
    fps = [res["partialFingerprints"]["pttrustCodeHash/v2"] for res in results]
    assert len(results) == 2 and len(set(fps)) == 2  # identical code, two findings, two alerts
    assert {res["level"] for res in results} == {"warning"}  # above threshold, below the gate
    gated = json.loads(format_report(_gated(), "sarif", make_environment()))["runs"][0]["results"]
    assert [res["level"] for res in gated] == ["error", "note"]


def test_lines_that_are_not_candidates_are_not_scored_in_every_format():
    report = _gated()
    pag = next(f for f in report.files if f.path == "examples/pagination.py")
    assert 26 not in pag.risk_by_line() and "not code" in pag.not_scored[26]  # the closing `)`
    env = make_environment()
    data = json.loads(format_report(report, "json", env))
    jpag = next(f for f in data["files"] if f["path"] == "examples/pagination.py")
    assert {"line": 26, "status": "not scored", "reason": pag.not_scored[26]} in jpag["not_scored"]
    assert 26 not in [line["line"] for line in jpag["lines"]]
    text = format_report(report, "text", env, width=140)
    assert any(row.split()[:3] == ["26", "not", "scored"] for row in text.splitlines())
    html = format_report(report, "html", env)
    row = html[html.index('id="f1-L26"') :].split("</tr>")[0]
    assert "unscored" in html[html.rindex("<tr", 0, html.index('id="f1-L26"')) :].split(">")[0]
    assert "not scored" in row and "%" not in row


def test_the_risk_is_described_as_what_the_probe_learned_never_as_a_verdict(report):
    # the probe learned where real fixes land; it scores a bug and the line that fixed it alike
    # (docs/realbugs-experiments.md, "Does a probe tell a bug from its own fix?"): no format may say the code is wrong
    first = report.findings[0]
    bare = dataclasses.replace(first, peak=dataclasses.replace(first.peak, latents=[]))
    comment = render_comment(make_environment(), bare, report)
    assert "resemble those it shows on lines that real bug fixes changed" in comment
    rule = json.loads(format_report(report, "sarif", make_environment()))["runs"][0]["tool"]["driver"]["rules"][0]
    assert "lines that real bug fixes changed" in rule["fullDescription"]["text"]
    for text in (comment, rule["fullDescription"]["text"]):
        assert "turned out to be wrong" not in text
