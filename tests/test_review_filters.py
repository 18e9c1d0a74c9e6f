"""`paths` and `filter_mode` (config keys and Action inputs): which files and which lines are scored."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_doubles import KeywordScorer

from bot.config import ReviewConfig
from bot.context import working_tree_reader
from bot.review import review
from risk_core.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
DIFF = (ROOT / "examples" / "example.diff").read_bytes()


def targets(scorer):
    (call,) = scorer.calls
    return {r.path: list(r.target_lines) for r in call}


def test_paths_limit_the_review_and_say_why():
    scorer = KeywordScorer()
    r = review(DIFF, working_tree_reader(ROOT), scorer, ReviewConfig(paths=["*.js"]))
    assert set(targets(scorer)) == {"examples/format.js"}
    assert [(s.path, s.reason) for s in r.skipped] == [("examples/pagination.py", "outside paths (*.js)")]


def test_filter_mode_added_context_and_file():
    by_mode = {}
    for mode in ("added", "diff_context", "file"):
        scorer = KeywordScorer()
        review(DIFF, working_tree_reader(ROOT), scorer, ReviewConfig(filter_mode=mode))
        by_mode[mode] = targets(scorer)["examples/format.js"]
    assert by_mode["added"] == [9, 10]
    assert by_mode["diff_context"] == [6, 7, 8, 9, 10, 11]  # the hunk's context lines too
    n_lines = len((ROOT / "examples" / "format.js").read_text().splitlines())
    assert by_mode["file"] == list(range(1, n_lines + 1))
    with pytest.raises(UsageError, match="filter_mode must be one of"):
        ReviewConfig().replace(filter_mode="everything")
