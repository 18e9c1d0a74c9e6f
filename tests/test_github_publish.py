"""Publishing through PyGithub against the validating loopback server.

Findings come from `DeterministicTestScorer`, a TEST DOUBLE (not a model): every added line holding
the word RISKY gets risk 0.9. The real-Scorer end-to-end test is wired separately.
"""

from __future__ import annotations

import logging
import time

import pytest

from bot import github_client as gc
from bot.diff import DiffFilter
from bot.github_source import PullRequestReader
from bot.publish import github as gp
from bot.publish import publication as gpub
from risk_core.errors import PttrustError

try:
    from tests.github_server import github_server, make_github_server  # noqa: F401
except ModuleNotFoundError:  # pytest puts tests/ (not the repo root) on sys.path
    from github_server import github_server, make_github_server  # noqa: F401

FAST = gc.GitHubSettings(
    retries=4,
    backoff_factor=0,
    secondary_rate_wait=0,
    max_rate_limit_wait=30,
    seconds_between_requests=0,
    seconds_between_writes=0,
    timeout=10,
)


class DeterministicTestScorer:
    """Test double: flags added lines containing RISKY (risk 0.9). Not a real scorer."""

    def findings(self, reader: PullRequestReader, extra: list | None = None) -> gpub.Publication:
        found = []
        for f in reader.data.files:
            if not f.patch:
                continue
            line = 0
            for text in f.patch.splitlines():
                if text.startswith("@@"):
                    line = int(text.split("+")[1].split(",")[0].split(" ")[0])
                elif text.startswith("+"):
                    if "RISKY" in text:
                        found.append(
                            gpub.InlineFinding(f.path, line, None, 0.9, text[1:], f"risky: `{text[1:].strip()}`")
                        )
                    line += 1
                elif text.startswith(" "):
                    line += 1
        found += extra or []
        conclusion = "failure" if found else "success"
        return gpub.Publication(
            found, f"## PtTrust\n{len(found)} finding(s)", conclusion, f"{len(found)} finding(s)", "summary"
        )


def make_pr(server, n_risky=3, labels=("ai-generated",)):
    repo = server.state.create_repo("octo", "demo")
    base = repo.commit({"app.py": "def f():\n    return 1\n", "README.md": "hi\n"})
    body = "".join(f"x{i} = eval('RISKY {i}')\n" for i in range(n_risky))
    head = repo.commit(
        {"app.py": "def f():\n    return 1\n" + body + "y = 2\n"},
        parent=base,
        author_login="copilot[bot]",
        message="feat: add\n\nCo-authored-by: Claude <c@x>",
    )
    repo.open_pull(base, head, labels=list(labels))
    return repo


def run_once(server, extra=None, dry_run=False, env=None, timeout=None):
    env = {"GITHUB_TOKEN": server.token} if env is None else env
    gh = gc.connect(
        gc.GitHubSettings(**{**FAST.__dict__, "base_url": server.base_url, "timeout": timeout or FAST.timeout}), env
    )
    with gc.github_errors("test"):
        repo = gh.get_repo("octo/demo")
        pull = repo.get_pull(1)
        reader = PullRequestReader(repo, pull)
    pub = DeterministicTestScorer().findings(reader, extra)
    diff = DiffFilter.from_diff(reader.parsed_diff())
    return gp.publish(repo, pull, pub, reader.data.head_sha, diff, FAST, dry_run=dry_run)


def review_comments(repo):
    return [c for c in repo.review_comments.values() if not c["_pending"]]


def test_first_run_posts_one_review_then_nothing(github_server):
    repo = make_pr(github_server, n_risky=3)
    res = run_once(github_server)
    assert len(res.posted) == 3 and res.summary_action == "created" and res.check_action == "check-run"
    (review,) = repo.reviews.values()
    assert review["state"] == "COMMENTED" and review["commit_id"] == repo.pulls[1].head_sha
    comments = review_comments(repo)
    assert {c["line"] for c in comments} == {3, 4, 5} and all(c["side"] == "RIGHT" for c in comments)
    assert all("<!-- pttrust:finding=" in c["body"] for c in comments)
    (summary,) = repo.issue_comments.values()
    assert "<!-- pttrust:summary" in summary["body"]
    (run,) = repo.check_runs.values()
    assert run["conclusion"] == "failure" and len(run["annotations"]) == 3

    writes_before = [c for c in github_server.calls if c.method != "GET"]
    res2 = run_once(github_server)
    assert res2.posted == [] and len(res2.already_commented) == 3
    assert (res2.summary_action, res2.check_action) == ("unchanged", "unchanged")
    assert [c for c in github_server.calls if c.method != "GET"] == writes_before
    assert len(repo.reviews) == 1 and len(repo.issue_comments) == 1 and len(repo.check_runs) == 1


def test_push_posts_new_marks_resolved_edits_summary(github_server):
    repo = make_pr(github_server, n_risky=2)
    run_once(github_server)
    old_summary = next(iter(repo.issue_comments.values()))["body"]
    # the push fixes x0 and adds a new risky line
    text = repo.commits[repo.pulls[1].head_sha].tree["app.py"]
    text = text.replace("x0 = eval('RISKY 0')", "x0 = 0") + "z = eval('RISKY new')\n"
    repo.push(1, {"app.py": text}, author_login="copilot[bot]")
    res = run_once(github_server)
    assert [f.line_text for f in res.posted] == ["z = eval('RISKY new')"]
    assert len(res.already_commented) == 1 and len(res.resolved_comment_ids) == 1
    resolved = repo.review_comments[res.resolved_comment_ids[0]]
    assert resolved["body"].startswith("**Resolved**") and "<!-- pttrust:resolved -->" in resolved["body"]
    assert len(repo.reviews) == 2 and len(repo.issue_comments) == 1
    new_summary = next(iter(repo.issue_comments.values()))["body"]
    assert new_summary != old_summary and "1 earlier comment(s) marked resolved" in new_summary
    assert res.summary_action == "edited" and len(repo.check_runs) == 2


def test_line_outside_diff_goes_to_summary(github_server):
    repo = make_pr(github_server, n_risky=1)
    outside = gpub.InlineFinding("README.md", 1, None, 0.8, "hi", "risky unchanged file")
    res = run_once(github_server, extra=[outside])
    assert [f for f, _ in res.rejected] == [outside] and "not part of the" in res.rejected[0][1]
    assert len(review_comments(repo)) == 1
    summary = next(iter(repo.issue_comments.values()))["body"]
    assert "Findings not shown inline" in summary and "`README.md:1`" in summary


def test_422_on_one_comment_moves_it_to_the_summary(github_server):
    repo = make_pr(github_server, n_risky=4)

    def on_line_4(body):
        return any(c.get("line") == 4 for c in body.get("comments", []))

    github_server.faults.unprocessable("pulls/create-review", times=100, when=on_line_4)
    res = run_once(github_server)
    assert [f.line for f, _ in res.rejected] == [4] and "Line could not be resolved" in res.rejected[0][1]
    assert sorted(c["line"] for c in review_comments(repo)) == [3, 5, 6]
    assert [r["state"] for r in repo.reviews.values()] == ["COMMENTED"]  # probes were deleted
    assert "`app.py:4`" in next(iter(repo.issue_comments.values()))["body"]


def test_rate_limits_and_5xx_are_retried(github_server):
    repo = make_pr(github_server, n_risky=1)
    github_server.faults.too_many_requests("pulls/create-review", times=1, retry_after=1)
    github_server.faults.server_error("pulls/get", times=2)
    github_server.faults.rate_limit("issues/create-comment", times=1, reset_in=-5)
    github_server.faults.server_error("checks/create", times=1, status=503)
    start = time.monotonic()
    res = run_once(github_server)
    assert time.monotonic() - start >= 1.0  # Retry-After honoured
    assert len(res.posted) == 1 and res.summary_action == "created" and res.check_action == "check-run"
    assert [c.status for c in github_server.calls_to("pulls/create-review")] == [429, 200]
    assert len(repo.reviews) == 1 and len(repo.issue_comments) == 1


def _fail_creates(server, how: str, times: int = 1, acted: bool = True) -> None:
    """``how``: 502 | dropped (connection closed, no answer) | timeout (no answer within the client's
    1s timeout; the server holds the connection until teardown)."""
    for op in ("pulls/create-review", "issues/create-comment", "checks/create"):
        if how == "502":
            server.faults.server_error(op, times=times, status=502, after_serving=acted)
        else:
            server.faults.no_answer(op, times=times, stall=60 if how == "timeout" else 0, after_serving=acted)


@pytest.mark.parametrize("how", ["502", "dropped", "timeout"])
@pytest.mark.parametrize("acted", [True, False], ids=["after-acting", "before-acting"])
def test_5xx_or_no_answer_on_a_create_is_looked_up_not_repeated(github_server, how, acted):
    repo = make_pr(github_server, n_risky=2)
    # The 429 first: the Retry urllib3 builds for the second attempt must still refuse to re-POST.
    github_server.faults.too_many_requests("pulls/create-review", times=1)
    _fail_creates(github_server, how, acted=acted)
    res = run_once(github_server, timeout=1)
    assert len(res.posted) == 2 and res.summary_action == "created" and res.check_action == "check-run"
    (review,) = repo.reviews.values()
    assert res.review_id == review["id"] and len(review_comments(repo)) == 2
    (summary,) = repo.issue_comments.values()
    assert res.summary_comment_id == summary["id"] and "<!-- pttrust:summary" in summary["body"]
    failed = 502 if how == "502" else None  # None: no answer sent

    def statuses(op):
        return [c.status for c in github_server.calls_to(op)]

    assert statuses("pulls/create-review") == [429, failed] + ([] if acted else [200])
    assert statuses("issues/create-comment") == [failed] + ([] if acted else [201])
    # Check runs cannot be listed within the REST description: one made before the failure is made
    # again, and the result names the latest (the one GitHub shows).
    assert len(repo.check_runs) == (2 if acted else 1) and res.check_run_id == max(repo.check_runs)

    writes = [c for c in github_server.calls if c.method != "GET"]
    res2 = run_once(github_server)  # the next run finds everything in place
    assert (res2.posted, res2.summary_action, res2.check_action) == ([], "unchanged", "unchanged")
    assert [c for c in github_server.calls if c.method != "GET"] == writes


@pytest.mark.parametrize(
    "how, message",
    [
        ("502", "GitHub answered 502: Bad Gateway"),
        ("dropped", "cannot reach GitHub (ConnectionError)"),
        ("timeout", "cannot reach GitHub (ReadTimeout)"),
    ],
)
def test_a_create_failing_twice_is_a_one_line_error(github_server, how, message):
    repo = make_pr(github_server, n_risky=1)
    _fail_creates(github_server, how, times=2, acted=False)
    with pytest.raises(PttrustError) as err:
        run_once(github_server, timeout=1)
    assert str(err.value) == f"publishing to octo/demo#1: {message}"
    assert len(github_server.calls_to("pulls/create-review")) == 2 and not repo.reviews


def test_a_post_is_not_resent_once_it_may_have_reached_github():
    import requests
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
    )

    retry = gc._retry_class()(total=3, allowed_methods={"GET", "POST"})
    timed_out = ReadTimeoutError(None, "/x", "Read timed out.")
    dropped = ProtocolError("Connection aborted.", ConnectionResetError())
    for err in (timed_out, dropped):  # after the request was sent: GET is retried, POST is not
        with pytest.raises(type(err)):
            retry.increment("POST", "/x", error=err)
        assert type(retry.increment("GET", "/x", error=err)) is type(retry)
    again = retry.increment("POST", "/x", error=ConnectTimeoutError())  # never sent: retried
    assert type(again) is type(retry) and again.total == 2
    with pytest.raises(ReadTimeoutError):
        again.increment("POST", "/x", error=timed_out)

    refused = NewConnectionError(None, "Connection refused")
    assert not gc._may_have_acted(requests.exceptions.ConnectionError(MaxRetryError(None, "/x", refused)))
    timeout = MaxRetryError(None, "/x", ConnectTimeoutError())
    assert not gc._may_have_acted(requests.exceptions.ConnectTimeout(timeout))
    assert gc._may_have_acted(requests.exceptions.ConnectionError(dropped))
    assert gc._may_have_acted(requests.exceptions.ReadTimeout(timed_out))


def test_probe_answered_5xx_after_acting_counts_as_accepted(github_server):
    repo = make_pr(github_server, n_risky=4)

    def on_line_4(body):
        return any(c.get("line") == 4 for c in body.get("comments", []))

    github_server.faults.unprocessable("pulls/create-review", times=100, when=on_line_4)
    probe = github_server.faults.add(
        "pulls/create-review",
        502,
        times=1,
        after_serving=True,
        when=lambda body: "event" not in body and not on_line_4(body),
    )
    res = run_once(github_server)
    assert probe.hits == 1
    assert [f.line for f, _ in res.rejected] == [4]
    assert sorted(c["line"] for c in review_comments(repo)) == [3, 5, 6]
    assert [r["state"] for r in repo.reviews.values()] == ["COMMENTED"]


def test_rate_limit_reset_too_far_is_a_clean_error(github_server):
    make_pr(github_server)
    github_server.faults.rate_limit("repos/get", times=5, reset_in=3600)
    with pytest.raises(PttrustError, match="rate limit"):
        run_once(github_server)


def test_no_checks_permission_falls_back_to_status(github_server):
    repo = make_pr(github_server, n_risky=2)
    github_server.faults.forbidden("checks/create", times=1)
    res = run_once(github_server)
    assert res.check_action == "status" and not repo.check_runs
    (status,) = repo.statuses
    assert status["state"] == "failure" and status["context"] == FAST.check_name
    assert "commit status" in next(iter(repo.issue_comments.values()))["body"]


def test_more_than_50_annotations_are_batched(github_server):
    repo = make_pr(github_server, n_risky=120)
    res = run_once(github_server)
    (run,) = repo.check_runs.values()
    assert len(run["annotations"]) == 120 and res.annotation_requests == 3
    assert len(github_server.calls_to("checks/create")) == 1
    assert len(github_server.calls_to("checks/update")) == 2
    assert len(repo.reviews) == 1 and len(review_comments(repo)) == 120


def test_enterprise_base_url(make_github_server):
    server = make_github_server(prefix="/api/v3")
    repo = make_pr(server, n_risky=1)
    res = run_once(server)
    assert len(res.posted) == 1 and len(repo.reviews) == 1
    assert all(c.path.startswith("/repos/") or c.path == "/user" for c in server.calls)


def test_dry_run_writes_nothing(github_server):
    make_pr(github_server, n_risky=2)
    res = run_once(github_server, dry_run=True)
    assert len(res.posted) == 2 and res.summary_action == "would create"
    assert all(c.method == "GET" for c in github_server.calls)


def test_bad_token_is_one_line_and_never_printed(github_server, caplog, capsys):
    repo = make_pr(github_server)
    secret = "ghs_" + "s3cr3t" * 6
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PttrustError) as err:
        run_once(github_server, env={"GITHUB_TOKEN": secret})
    assert str(err.value) == "test: GitHub rejected the token (401 Bad credentials)"
    assert err.value.exit_code == 1
    out = capsys.readouterr()
    assert secret not in caplog.text + out.out + out.err + str(err.value)
    assert not repo.reviews and not repo.issue_comments and not repo.check_runs
    with pytest.raises(PttrustError, match=r"\$GITHUB_TOKEN is not set") as missing:
        run_once(github_server, env={})
    assert missing.value.exit_code == 2


def test_pr_spec_parsing():
    assert gc.parse_pr_spec("octo/demo#12") == ("octo/demo", 12)
    for bad in ("octo/demo", "octo#1", "octo/demo#0", "o/r#x"):
        with pytest.raises(PttrustError):
            gc.parse_pr_spec(bad)
