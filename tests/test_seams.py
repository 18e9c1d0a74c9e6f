"""The seams between the bot's pieces: one set of request/result types shared with the scorer (and its
test double), one diff model that says which lines can take a comment, and the blame replay reading
patches through that same model."""

from __future__ import annotations

import dataclasses

import pytest
from review_doubles import KeywordScorer

from bot.diff import DiffFilter, commentable_lines, parse_diff, parse_hunks
from bot.github_source import PullFile, apply_patch_origins, pull_diff
from risk_core.types import FileScores, FileToScore, LatentContribution, LineRisk, Scorer

TWO_HUNKS = (
    "--- a/m.py\n+++ b/m.py\n"
    "@@ -1,3 +1,4 @@\n a\n-b\n+B\n+C\n c\n"  # new side: 1 context, 2-3 added, 4 context
    "@@ -20,2 +21,2 @@\n x\n-y\n+Y\n"  # new side: 21 context, 22 added
)


def test_the_double_is_a_scorer_returning_the_real_types():
    double = KeywordScorer()
    assert isinstance(double, Scorer)
    (scores,) = double.score([FileToScore("a.py", "x = page * per_page\n", [1])])
    assert type(scores) is FileScores and type(scores.lines[0]) is LineRisk
    assert all(type(latent) is LatentContribution for latent in scores.lines[0].latents)


def test_a_factory_is_not_a_scorer():
    assert not isinstance(lambda: KeywordScorer(), Scorer)


def test_score_module_reexports_the_one_definition():
    score = pytest.importorskip("risk_core.score")
    assert score.FileToScore is FileToScore and score.LineRisk is LineRisk
    assert score.FileScores is FileScores and score.LatentContribution is LatentContribution


def test_renaming_a_field_would_break_the_bot():
    """The bot reads the fields by name (no getattr defaults): these are the ones it relies on."""
    assert [f.name for f in dataclasses.fields(LineRisk)] == ["path", "line", "risk", "text", "latents"]
    assert [f.name for f in dataclasses.fields(LatentContribution)] == ["index", "activation", "contribution", "label"]
    assert [f.name for f in dataclasses.fields(FileScores)] == ["path", "lines", "skipped"]


def test_commentable_lines_per_hunk_are_added_and_context_lines():
    (change,) = parse_diff(TWO_HUNKS).files
    assert commentable_lines(change) == [frozenset({1, 2, 3, 4}), frozenset({21, 22})]


@pytest.mark.parametrize(
    "path, line, start, why",
    [
        ("m.py", 3, None, None),
        ("m.py", 4, 2, None),  # context lines of a hunk take comments too
        ("m.py", 22, None, None),
        ("m.py", 10, None, "line 10 is not part of the diff"),
        ("m.py", 22, 3, "lines 3-22 span more than one hunk of the diff"),
        ("other.py", 1, None, "the file is not part of the pull request's diff"),
    ],
)
def test_diff_filter_says_where_a_comment_can_go(path, line, start, why):
    diff = DiffFilter.from_diff(parse_diff(TWO_HUNKS))
    assert diff.why_not(path, line, start) == why
    assert diff.should_report(path, line, start) is (why is None)


def test_a_file_without_hunks_takes_no_comment():
    parsed = pull_diff([PullFile("logo.png", "modified", None, None, "1" * 40)])
    assert "no diff" in (DiffFilter.from_diff(parsed).why_not("logo.png", 1) or "")


def test_parse_hunks_reads_a_github_patch_without_headers():
    (hunk,) = parse_hunks("@@ -1,2 +1,3 @@\n a\n+b\n c")
    assert (hunk.source_start, hunk.source_length, hunk.target_start) == (1, 2, 1)
    assert hunk.added_lines == [2]


def test_blame_replay_through_the_diff_model():
    origins: list[str | None] = ["base"] * 5
    after = apply_patch_origins(origins, "@@ -2,2 +2,3 @@\n 2\n-3\n+x\n+y\n", "c1")
    assert after == ["base", "base", "c1", "c1", "base", "base"]
    assert apply_patch_origins(after, "@@ -0,0 +1 @@\n+top\n", "c2") == ["c2", *after]


def test_review_flags_come_from_the_config_fields():
    """The review command's config flags take their choices and help from ReviewConfig, and default
    to "not given", so the default lives only on the dataclass."""
    import click

    from bot.cli.review import review
    from bot.config import CHOICES
    from bot.config_docs import field_docs

    params = {p.name: p for p in review.params}
    for name in ("threshold", "max_comments", "authored_by", "fail_above", "on_skip", "marker"):
        assert params[name].default is None, name
        assert field_docs()[name] in (params[name].help or ""), name
    on_skip = params["on_skip"].type
    assert isinstance(on_skip, click.Choice) and tuple(on_skip.choices) == CHOICES["on_skip"]


def test_a_bad_choice_names_its_line_in_the_config(tmp_path):
    from bot.config import ReviewConfig, load_config
    from risk_core.errors import UsageError

    cfg = tmp_path / ".pttrust.yml"
    cfg.write_text("threshold: 0.5\nfilter_mode: everything\n")
    with pytest.raises(UsageError, match=r"\.pttrust\.yml:2: filter_mode must be one of"):
        load_config(cfg)
    with pytest.raises(UsageError, match="authored_by must be 'ai' or 'all'"):
        ReviewConfig(authored_by="humans")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="marker must be letters"):
        ReviewConfig().replace(marker="x -->")


def test_cell_is_the_one_table_escaping():
    from bot.render import cell, make_environment

    assert cell("a|b <i>") == "a\\|b &lt;i&gt;"
    assert cell("  x = `a|b`  ", code=True) == "x = 'a\\|b'"
    env = make_environment()
    assert env.filters["md_escape"] is env.filters["cell"] is cell


def test_publisher_notes_and_review_body_are_templates(tmp_path):
    """A team's template replaces the notes the publisher appends to the summary comment."""
    from bot.publish.publication import InlineFinding, PublishResult, publication_notes, review_body
    from bot.render import make_environment

    f = InlineFinding("a.py", 5, 3, 0.9, "x", "body")
    result = PublishResult("abcdef123", rejected=[(f, "GitHub | said no")], resolved_comment_ids=[7])
    packaged = publication_notes(result, make_environment())
    assert "| 90% | `a.py:3-5` | GitHub \\| said no |" in packaged
    assert "1 earlier comment(s) marked resolved as of abcdef1." in packaged
    assert review_body([f], make_environment()).startswith("PtTrust flagged 1 line(s) in this push.")
    (tmp_path / "summary_notes.md.j2").write_text("{{ result.rejected | length }} not inline\n")
    assert publication_notes(result, make_environment(tmp_path)) == "1 not inline\n"


def test_actions_log_publisher_writes_one_warning_per_finding():
    import io

    from bot.config import ReviewConfig
    from bot.publish.actions_log import ActionsLogPublisher
    from bot.review import review

    diff = "--- a/m.py\n+++ b/m.py\n@@ -0,0 +1,2 @@\n+x = page * per_page\n+y = 1\n"
    files = {"m.py": b"x = page * per_page\ny = 1\n"}
    report = review(diff, files.get, KeywordScorer(), ReviewConfig(threshold=0.5))
    out = io.StringIO()
    ActionsLogPublisher(out).publish(report)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("::warning file=m.py,line=1,title=PtTrust risk 0.93::Risk 0.93")
