"""Soak: 50 consecutive runs of the publisher against the loopback server, pushes in between, each run
with random injected faults (403 rate limits and permission refusals, 422, 429, 5xx before or after
the write, connections dropped and read timeouts). Runs may fail (one-line errors); the state they
leave must converge. After the last run GitHub holds exactly one review per head commit that brought
new findings, one summary, every current finding commented once, and one check run per head commit
(plus, at most, one per create whose answer was lost: the REST subset cannot list a commit's check
runs to look for it). The seed is fixed (PTTRUST_SOAK_SEED overrides it)."""

from __future__ import annotations

import os
import random
from collections import Counter

from risk_core.errors import PttrustError

try:
    from tests.github_server import github_server, make_github_server  # noqa: F401
    from tests.test_github_publish import make_pr, review_comments, run_once
except ModuleNotFoundError:  # pytest puts tests/ (not the repo root) on sys.path
    from github_server import github_server, make_github_server  # noqa: F401
    from test_github_publish import make_pr, review_comments, run_once

RUNS = 50
WRITES = ["pulls/create-review", "issues/create-comment", "issues/update-comment", "checks/create"]
WRITES += ["pulls/update-review-comment", "checks/update"]
READS = [
    "pulls/get",
    "pulls/list-files",
    "pulls/list-review-comments",
    "issues/list-comments",
    "users/get-authenticated",
]


def _inject(server, rng: random.Random, lost: Counter) -> None:
    for _ in range(rng.randint(0, 3)):
        op = rng.choice(WRITES + READS)
        kind = rng.choice(["rate", "forbidden", "422", "429", "5xx", "5xx-after", "drop", "timeout"])
        if kind == "rate":
            server.faults.rate_limit(op)
        elif kind == "forbidden":
            server.faults.forbidden(op)
        elif kind == "422" and op in WRITES:
            server.faults.unprocessable(op)
        elif kind == "429":
            server.faults.too_many_requests(op, times=rng.randint(1, 2))
        elif kind == "5xx":
            server.faults.server_error(op, status=rng.choice([500, 502, 503]))
        elif kind == "5xx-after" and op in WRITES:
            server.faults.server_error(op, after_serving=True)
            lost[op] += 1
        elif kind == "drop":
            server.faults.no_answer(op, after_serving=op in WRITES)
            lost[op] += op in WRITES
        elif kind == "timeout" and rng.random() < 0.3:  # each costs the client's timeout
            server.faults.no_answer(op, stall=1.5, after_serving=op in WRITES)
            lost[op] += op in WRITES


def _push(repo, rng: random.Random, step: int) -> None:
    text = repo.commits[repo.pulls[1].head_sha].tree["app.py"]
    risky = [l for l in text.splitlines() if "RISKY" in l]
    if risky and rng.random() < 0.5:
        text = text.replace(rng.choice(risky) + "\n", f"fixed_{step} = 0\n", 1)
    text += f"w{step} = eval('RISKY push {step}')\n"
    repo.push(1, {"app.py": text}, author_login="copilot[bot]")


def test_fifty_faulty_runs_converge(github_server):
    rng = random.Random(int(os.environ.get("PTTRUST_SOAK_SEED", "14")))
    repo = make_pr(github_server, n_risky=3)
    heads_with_new, failures, lost_by_head = set(), 0, {}
    for step in range(RUNS):
        if step and step % 7 == 0:
            _push(repo, rng, step)
        head = repo.pulls[1].head_sha
        lost = lost_by_head.setdefault(head, Counter())
        if step < RUNS - 1:  # the last run is clean: it must bring everything up to date
            _inject(github_server, rng, lost)
        try:
            res = run_once(github_server, timeout=1)
            if res.posted:
                heads_with_new.add(head)
        except PttrustError as err:
            failures += 1
            assert "\n" not in str(err)
        github_server.faults._faults.clear()  # what a run did not consume does not leak into the next

    head = repo.pulls[1].head_sha
    assert failures >= 1, "the faults should have failed some runs"
    # One review per head commit (a head can only get one: later runs find its comments).
    reviews = Counter(r["commit_id"] for r in repo.reviews.values() if r["state"] != "PENDING")
    assert all(n == 1 for n in reviews.values()), reviews
    assert not any(r["state"] == "PENDING" for r in repo.reviews.values())
    # One summary, for the last head.
    (summary,) = repo.issue_comments.values()
    assert f"head={head}" in summary["body"]
    # Every current finding commented exactly once, none of them marked resolved; fixed ones resolved.
    current = [l for l in repo.commits[head].tree["app.py"].splitlines() if "RISKY" in l]
    open_comments = [c for c in review_comments(repo) if "pttrust:resolved" not in c["body"]]
    texts = Counter(c["body"].split("`")[1] for c in open_comments)
    assert texts == Counter(l.strip() for l in current), (texts, current)
    # One check run per head commit, but for creates whose answer was lost (nothing can list them).
    runs = Counter(r["head_sha"] for r in repo.check_runs.values())
    assert runs[head] >= 1
    for sha, n in runs.items():
        assert n <= 1 + lost_by_head.get(sha, Counter())["checks/create"], (sha, n)
    final = run_once(github_server)
    assert final.posted == [] and (final.summary_action, final.check_action) == ("unchanged", "unchanged")
