"""`pttrust review --github` end to end against the loopback server, with the keyword TEST DOUBLE
scorer (tests/review_doubles.py), not a model."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner
from review_doubles import KeywordScorer

import bot.run as bot_run
from bot import github_client as gc
from bot.cli import main

try:
    from tests.github_server import github_server, make_github_server  # noqa: F401
except ModuleNotFoundError:
    from github_server import github_server, make_github_server  # noqa: F401


@pytest.fixture()
def wired(github_server, monkeypatch):
    monkeypatch.setattr(
        bot_run, "load_scorer", lambda model, bundle, device="auto", progress=None: (KeywordScorer(), "double", None)
    )
    monkeypatch.setattr(
        gc,
        "DEFAULT_SETTINGS",
        dataclasses.replace(
            gc.DEFAULT_SETTINGS,
            backoff_factor=0,
            secondary_rate_wait=0,
            seconds_between_requests=0,
            seconds_between_writes=0,
        ),
    )
    monkeypatch.setenv("GITHUB_API_URL", github_server.base_url)
    monkeypatch.setenv("GITHUB_TOKEN", github_server.token)
    repo = github_server.state.create_repo("octo", "demo")
    base = repo.commit({"p.py": "def page(items, page, per_page):\n    return items\n"})
    head = repo.commit(
        {
            "p.py": "def page(items, page, per_page):\n    start = page * per_page\n"
            "    return items[start:start + per_page]\n"
        },
        parent=base,
        author_login="copilot[bot]",
    )
    repo.open_pull(base, head)
    return repo


def test_cli_github_posts_then_is_idempotent(wired):
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(wired.reviews) == 1 and len(wired.issue_comments) == 1
    assert [c["line"] for c in wired.review_comments.values()] == [2]
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "-q"], catch_exceptions=False)
    assert res.exit_code == 0 and len(wired.reviews) == 1 and len(wired.issue_comments) == 1


def test_cli_bad_token_one_line(wired, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_wrongwrongwrong")
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "-q"])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [
        "error: reading octo/demo#1: GitHub rejected the token (401 Bad credentials)"
    ]
    assert "ghs_wrong" not in res.output and not wired.reviews


def test_cli_github_capped_finding_keeps_its_comment_until_fixed(wired):
    def push_and_review(text):
        wired.push(1, {"p.py": "def page(items, page, per_page):\n" + text}, author_login="copilot[bot]")
        res = CliRunner().invoke(
            main, ["review", "--github", "octo/demo#1", "-q", "--max-comments", "1"], catch_exceptions=False
        )
        assert res.exit_code == 0, res.output
        return wired.review_comments

    (first,) = push_and_review("    if page == 0:\n        return []\n    return items\n").values()
    assert first["_line_text"] == "    if page == 0:"
    # A riskier line takes the only slot; `page == 0` is still flagged, just over the cap.
    comments = push_and_review(
        "    if page == 0:\n        return []\n    start = page * per_page\n    return items[start:]\n"
    )
    assert len(comments) == 2 and not any("pttrust:resolved" in c["body"] for c in comments.values())
    comments = push_and_review("    start = page * per_page\n    return items[start:]\n")
    assert [c["id"] for c in comments.values() if "pttrust:resolved" in c["body"]] == [first["id"]]


def test_dry_run_on_a_public_repository_needs_no_token(wired, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("GH_TOKEN", raising=False)
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "--dry-run", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "p.py:2" in res.stdout and not wired.reviews
    # posting needs a token, and a private repository is not readable without one
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "-q"])
    assert res.exit_code == 2 and "GITHUB_TOKEN is not set" in res.stderr
    wired.private = True
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "--dry-run", "-q"])
    assert res.exit_code != 0 and res.stderr.startswith("error:") and "Traceback" not in res.output


def test_gh_token_is_read_like_github_token(wired, github_server, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("GH_TOKEN", github_server.token)
    res = CliRunner().invoke(main, ["review", "--github", "octo/demo#1", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(wired.reviews) == 1
