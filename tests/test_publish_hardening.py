"""Hardening of the GitHub half (issue 14): whose markers count, a publish that fails midway, GitHub's
size limits. Against the validating loopback server, with the same test double as test_github_publish
(`DeterministicTestScorer`: every added line holding RISKY gets risk 0.9; not a model)."""

from __future__ import annotations

import re

import github
import pytest

from bot import github_client as gc
from bot.diff import DiffFilter
from bot.github_source import PullRequestReader
from bot.publish import github as gp
from bot.publish import markers as gmark
from bot.publish import publication as gpub
from risk_core.errors import PttrustError

try:
    from tests.github_server import github_server, make_github_server  # noqa: F401
    from tests.test_action import BASE, _env, _run, read_outputs, server  # noqa: F401
    from tests.test_github_publish import FAST, make_pr, review_comments, run_once
except ModuleNotFoundError:  # pytest puts tests/ (not the repo root) on sys.path
    from github_server import github_server, make_github_server  # noqa: F401
    from test_action import BASE, _env, _run, read_outputs, server  # noqa: F401
    from test_github_publish import FAST, make_pr, review_comments, run_once


def client(server, token):
    return github.Github(auth=github.Auth.Token(token), base_url=server.base_url, retry=None)


def bot_comments(repo, login="pttrust-bot[bot]"):
    return [c for c in review_comments(repo) if c["_login"] == login]


# -- 1. markers count only from the bot's own comments, and carry an HMAC ------------------------------


def test_a_second_user_pasting_markers_steers_nothing(github_server):
    repo = make_pr(github_server, n_risky=2)
    # The finding ids are public (a hash of path, line text, kind): an intruder can write them, and can
    # copy any signature the bot has posted elsewhere.
    fids = gpub.finding_ids(
        [gpub.InlineFinding("app.py", 3 + i, None, 0.9, f"x{i} = eval('RISKY {i}')", "") for i in range(2)]
    )
    intruder = client(github_server, github_server.add_token("mallory"))
    pull = intruder.get_repo("octo/demo").get_pull(1)
    head = intruder.get_repo("octo/demo").get_commit(repo.pulls[1].head_sha)
    pull.create_review(
        commit=head,
        body="lgtm",
        event="COMMENT",
        comments=[
            {"path": "app.py", "line": 3, "side": "RIGHT", "body": f"fine <!-- pttrust:finding={fids[0]} -->"},
            {"path": "app.py", "line": 5, "side": "RIGHT", "body": "<!-- pttrust:finding=0123456789abcdef0123 -->"},
        ],
    )
    pull.create_issue_comment("<!-- pttrust:summary head=x check=y run= -->\nmine now")

    res = run_once(github_server)
    # Nothing suppressed: both findings are posted by the bot although "marked" by mallory.
    assert len(res.posted) == 2 and res.already_commented == []
    # mallory's comment with an unknown id was not "resolved" (rewritten) by the bot.
    mine = [c for c in review_comments(repo) if c["_login"] == "mallory"]
    assert len(mine) == 2 and not any(c["body"].startswith("**Resolved**") for c in mine)
    assert res.resolved_comment_ids == []
    # mallory's issue comment was not adopted as the summary: the bot made its own.
    assert res.summary_action == "created"
    bodies = {c["_login"]: c["body"] for c in repo.issue_comments.values()}
    assert bodies["mallory"].endswith("mine now") and "pttrust:summary" in bodies["pttrust-bot[bot]"]

    # mallory copies the bot's own (signed) marker into her comment: still hers, still ignored.
    bot_marker = next(c["body"] for c in bot_comments(repo)).rsplit("\n", 1)[-1]
    assert " sig=" in bot_marker
    pull.create_review(
        commit=head,
        body="x",
        event="COMMENT",
        comments=[{"path": "app.py", "line": 1, "side": "RIGHT", "body": bot_marker}],
    )
    res2 = run_once(github_server)
    assert res2.posted == [] and len(res2.already_commented) == 2 and res2.resolved_comment_ids == []
    assert res2.summary_action == "unchanged"
    assert all(not c["body"].startswith("**Resolved**") for c in review_comments(repo))
    github_server.assert_no_violations()


def test_an_actions_token_without_get_user_is_github_actions_bot(github_server):
    """GET /user answers an Actions GITHUB_TOKEN 403: its comments are github-actions[bot]'s."""
    make_pr(github_server, n_risky=2)
    token = github_server.add_token("github-actions[bot]", user_api=False)
    first = run_once(github_server, env={"GITHUB_TOKEN": token})
    assert len(first.posted) == 2
    # A new run gets a new token (same identity): it recognises its comments and posts nothing.
    again = run_once(
        github_server, env={"GITHUB_TOKEN": github_server.add_token("github-actions[bot]", user_api=False)}
    )
    assert again.posted == [] and len(again.already_commented) == 2 and again.summary_action == "unchanged"
    assert github_server.calls_to("users/get-authenticated")[-1].status == 403


def test_a_configured_bot_login_is_used_without_get_user(github_server, monkeypatch):
    make_pr(github_server, n_risky=1)
    token = github_server.add_token("my-app[bot]", user_api=False)
    monkeypatch.setenv(gmark.BOT_LOGIN_ENV, "my-app[bot]")
    assert len(run_once(github_server, env={"GITHUB_TOKEN": token}).posted) == 1
    assert run_once(github_server, env={"GITHUB_TOKEN": token}).posted == []
    assert github_server.calls_to("users/get-authenticated") == []


def test_with_a_secret_only_markers_it_signed_count(github_server, monkeypatch):
    """Code running as the same bot (another workflow with the same github-actions[bot]) cannot forge
    a marker without the secret: an unsigned or wrongly signed one is ignored."""
    repo = make_pr(github_server, n_risky=1)
    monkeypatch.setenv(gmark.MARKER_SECRET_ENV, "s3cret-one")
    assert len(run_once(github_server).posted) == 1
    assert run_once(github_server).posted == []  # same secret: recognised
    monkeypatch.setenv(gmark.MARKER_SECRET_ENV, "another-secret")
    res = run_once(github_server)  # a different key: the earlier markers are not this bot's
    assert len(res.posted) == 1 and res.resolved_comment_ids == [] and res.summary_action == "created"
    assert len(bot_comments(repo)) == 2


def test_a_long_lived_token_verifies_its_markers(github_server):
    """A PAT is stable, so its key is enforced: markers signed with another token's key do not count."""
    make_pr(github_server, n_risky=1)
    pat = github_server.add_token("pttrust-bot[bot]", prefix="ghp_")
    assert len(run_once(github_server, env={"GITHUB_TOKEN": pat}).posted) == 1
    assert run_once(github_server, env={"GITHUB_TOKEN": pat}).posted == []
    other = github_server.add_token("pttrust-bot[bot]", prefix="ghp_")
    assert len(run_once(github_server, env={"GITHUB_TOKEN": other}).posted) == 1


def test_identity_signature_is_bound_to_repo_pr_and_id():
    ident = gmark.BotIdentity("bot", b"k" * 32, strict=True)
    sig = ident.sign("o/r", 1, "finding", "ab")
    assert ident.verified("o/r", 1, "finding", "ab", sig)
    assert not ident.verified("o/r", 2, "finding", "ab", sig)
    assert not ident.verified("o/x", 1, "finding", "ab", sig)
    assert not ident.verified("o/r", 1, "finding", "ac", sig)
    assert not ident.verified("o/r", 1, "finding", "ab", None)
    assert "k" not in repr(ident).replace("key", "")


# -- 2. a 403 after some writes landed is an error listing them, not "no permission" -------------------


def test_403_after_the_review_is_an_error_listing_what_was_posted(github_server):
    repo = make_pr(github_server, n_risky=2)
    github_server.faults.forbidden("issues/create-comment")
    with pytest.raises(gp.PublishIncomplete) as caught:
        run_once(github_server)
    err = caught.value
    assert err.exit_code == 1 and "\n" not in str(err)
    assert "failed midway" in str(err) and "403" in str(err)
    (review_id,) = repo.reviews
    assert err.posted[0] == f"review {review_id} (2 comment(s))" and err.posted[1].startswith("check run ")
    assert err.not_posted == ["the summary comment"]
    assert len(repo.check_runs) == 1 and repo.issue_comments == {}


def test_403_on_the_first_write_is_posting_forbidden(github_server):
    repo = make_pr(github_server, n_risky=1)
    github_server.faults.forbidden("pulls/create-review")
    with pytest.raises(gp.PostingForbidden) as caught:
        run_once(github_server)
    assert "may not post" in str(caught.value) and caught.value.reason.startswith("HTTP 403")
    assert repo.reviews == {} and repo.check_runs == {} and repo.issue_comments == {}


def test_a_403_on_a_read_is_not_a_permission_fallback(github_server):
    make_pr(github_server, n_risky=1)
    github_server.faults.forbidden("pulls/list-review-comments")
    with pytest.raises(PttrustError) as caught:
        run_once(github_server)
    assert not isinstance(caught.value, (gp.PostingForbidden, gp.PublishIncomplete))


def test_action_403_midway_exits_1_and_lists_what_was_posted(server, tmp_path):
    server.faults.forbidden("issues/create-comment")
    with pytest.raises(gp.PublishIncomplete) as caught:  # entry.main prints it as one line, exit 1
        _run(_env(server, tmp_path, "pull_request.opened.json"))
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert message.startswith("publishing to octo/demo#42: failed midway") and "not posted: the summary" in message
    summary = (tmp_path / "summary.md").read_text()
    assert "Posting failed midway" in summary and "pull-requests: write" not in summary
    assert "Posted to the PR: no" in summary
    assert read_outputs(tmp_path / "output.txt")["can-write"] == "true"
    repo = server.state.repo("octo", "demo")
    assert len(repo.reviews) == 1 and len(repo.check_runs) == 1 and repo.issue_comments == {}


# -- 3. every body within GitHub's size limits, with an explicit "N more" line -------------------------


def test_a_1500_file_pr_keeps_every_body_within_githubs_limits(github_server):
    repo = github_server.state.create_repo("octo", "demo")
    n = 1500
    base = repo.commit({f"pkg/module_{i:04d}.py": "x = 1\n" for i in range(n)})
    head = repo.commit(
        {f"pkg/module_{i:04d}.py": f"x = 1\ny = eval('RISKY {i}')\n" for i in range(n)},
        parent=base,
        author_login="copilot[bot]",
    )
    repo.open_pull(base, head)
    gh = gc.connect(
        gc.GitHubSettings(**{**FAST.__dict__, "base_url": github_server.base_url}),
        {"GITHUB_TOKEN": github_server.token},
    )
    ghrepo = gh.get_repo("octo/demo")
    pull = ghrepo.get_pull(1)
    reader = PullRequestReader(ghrepo, pull)
    assert len(reader.data.files) == n
    rows = "\n".join(f"| 0.90 | `pkg/module_{i:04d}.py:2` | `y = eval('RISKY {i}')` |" for i in range(n))
    summary = f"## PtTrust\n\n| risk | where | line |\n| --- | --- | --- |\n{rows}\n"
    assert len(summary) > 90_000
    findings = [
        gpub.InlineFinding(f"pkg/module_{i:04d}.py", 2, None, 0.9, f"y = eval('RISKY {i}')", "risky") for i in range(60)
    ]
    pub = gpub.Publication(findings, summary, "neutral", "1500 findings", summary, summary)
    diff = DiffFilter.from_diff(reader.parsed_diff())
    res = gp.publish(ghrepo, pull, pub, reader.data.head_sha, diff, FAST)
    assert res.summary_action == "created" and res.check_action == "check-run"
    (comment,) = repo.issue_comments.values()
    assert len(comment["body"]) <= gpub.BODY_LIMIT
    assert re.search(r"… \d+ more line\(s\) not shown: GitHub allows 65,536 characters", comment["body"])
    (run,) = repo.check_runs.values()
    for key in ("summary", "text"):
        assert len(run["output"][key]) <= gpub.CHECK_OUTPUT_LIMIT and "more line(s) not shown" in run["output"][key]
    # Rows kept + rows cut = every row: nothing is dropped silently.
    kept = comment["body"].count("| 0.90 |")
    cut = int(re.search(r"… (\d+) more line", comment["body"]).group(1))
    assert kept + cut == n
    github_server.assert_no_violations()


def test_cap_text_cuts_at_lines_and_says_how_many():
    text = "".join(f"line {i}\n" for i in range(1000))
    out = gpub.cap_text(text, 500, "here")
    assert len(out) <= 500 and out.endswith("the full report has them.\n")
    shown = [l for l in out.splitlines() if l.startswith("line ")]
    assert f"… {1000 - len(shown)} more line(s)" in out
    assert gpub.cap_text("short", 500) == "short"
    assert len(gpub.cap_text("x" * 10_000, 300)) <= 300  # one overlong line


# -- 7. the Action's gate does not pass a PR whose files it skipped ------------------------------------


@pytest.mark.parametrize("on_skip, code", [("", 1), ("fail", 1), ("warn", 0)])
def test_action_gate_with_every_file_over_the_limit(server, tmp_path, on_skip, code):
    server.state.repo("octo", "demo").commits[BASE].tree[".pttrust.yml"] = "max_file_bytes: 10\n"
    got, out, err = _run(_env(server, tmp_path, "pull_request.opened.json", fail_above="0", on_skip=on_skip))
    assert got == code, err
    level = "error" if code else "warning"
    assert f"{level}: the gate (fail-above 0) did not look at " in err and "over the limit of 10 bytes" in err
    assert "did not look at" in (tmp_path / "summary.md").read_text()
