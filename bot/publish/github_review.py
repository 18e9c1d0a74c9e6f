"""The review of one publish: one create-review call holding every new inline comment (a review is
never half-posted). If GitHub answers 422, the rejected comments are found by bisection with *pending*
reviews (visible only to the bot, deleted right away) and moved to the summary; the rest are posted."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.github_client import create_once, error_text
from bot.publish.markers import BotIdentity, Marks
from bot.publish.publication import BODY_LIMIT, InlineFinding, Publication, PublishResult, cap_text, review_body

if TYPE_CHECKING:
    import jinja2
    from github.Commit import Commit
    from github.PullRequest import PullRequest, ReviewComment
    from github.PullRequestReview import PullRequestReview
    from github.Repository import Repository

log = logging.getLogger(__name__)


MAX_BISECT_PROBES = 40


def _review_comment(fid: str, finding: InlineFinding, marks: Marks) -> ReviewComment:
    comment: ReviewComment = {
        "path": finding.path,
        "body": marks.comment_body(finding, fid),
        "line": finding.line,
        "side": "RIGHT",
    }
    if finding.start_line is not None and finding.start_line < finding.line:
        comment.update(start_line=finding.start_line, start_side="RIGHT")
    return comment


Postable = list[tuple[str, InlineFinding]]
"""(finding id, finding) of each new comment."""


def post_review(
    repo: Repository,
    pull: PullRequest,
    head_sha: str,
    postable: Postable,
    pub: Publication,
    result: PublishResult,
    marks: Marks,
    env: jinja2.Environment,
) -> tuple[Postable, list[tuple[InlineFinding, str]]]:
    """One create-review call with every comment; on 422 find the rejected ones, post the rest.
    Returns (the comments posted, the rejected findings with GitHub's reason)."""
    from github import GithubException

    commit = repo.get_commit(head_sha)
    comments = [_review_comment(fid, f, marks) for fid, f in postable]
    try:
        result.review_id = _create_review(pull, commit, pub, [f for _, f in postable], comments, marks, env)
        return postable, []
    except GithubException as err:
        if err.status != 422:
            raise
        reason = error_text(err)
    log.info("GitHub rejected the review (%s); looking for the rejected comments", reason)
    bad = _find_rejected(pull, commit, comments, marks.ident)
    keep = [pf for pf, c in zip(postable, comments) if id(c) not in bad]
    rejected = [(f, f"GitHub rejected the comment: {reason}") for (_, f), c in zip(postable, comments) if id(c) in bad]
    if keep:
        kept_comments = [c for c in comments if id(c) not in bad]
        result.review_id = _create_review(pull, commit, pub, [f for _, f in keep], kept_comments, marks, env)
    return keep, rejected


def _create_review(
    pull: PullRequest,
    commit: Commit,
    pub: Publication,
    findings: list[InlineFinding],
    comments: list[ReviewComment],
    marks: Marks,
    env: jinja2.Environment,
) -> int:
    """The review's id. A review is created whole or not at all, so after a 5xx it was made if every
    comment's finding marker is on the PR now (none was there before: these are new findings)."""
    body = cap_text(pub.review_body or review_body(findings, env), BODY_LIMIT, "in a review")

    def find() -> PullRequestReview | None:
        fids = {marks.finding_id(c["body"]) for c in comments}
        on_pr = marks.review_comments(pull)
        return pull.get_review(on_pr[next(iter(fids))].pull_request_review_id) if fids <= on_pr.keys() else None

    return create_once(
        lambda: pull.create_review(commit=commit, body=body, event="COMMENT", comments=comments), find, "the review"
    ).id


def _find_rejected(pull: PullRequest, commit: Commit, comments: list[ReviewComment], ident: BotIdentity) -> set[int]:
    """ids of the comments GitHub rejects, found by bisection with pending reviews.

    A pending review (no ``event``) is visible only to its author and is deleted right after the
    probe, so nothing half-done ever shows on the PR. Past MAX_BISECT_PROBES every comment left is
    treated as rejected (they still reach the summary).
    """
    from github import GithubException

    def pending() -> PullRequestReview | None:
        """After a 5xx on a probe: the probe, if GitHub made it (one pending review per user)."""
        return next((r for r in pull.get_reviews() if r.state == "PENDING" and ident.authored(r)), None)

    for review in pull.get_reviews():  # a stale probe would block ours (one pending per user)
        if review.state == "PENDING" and ident.authored(review):
            review.delete()
    probes = 0
    bad: set[int] = set()

    def accepted(group: list[ReviewComment]) -> bool:
        nonlocal probes
        probes += 1
        try:
            probe = create_once(lambda: pull.create_review(commit=commit, comments=group), pending, "a probe")
            probe.delete()
            return True
        except GithubException as err:
            if err.status != 422:
                raise
            return False

    def search(group: list[ReviewComment]) -> None:
        if probes >= MAX_BISECT_PROBES:
            bad.update(id(c) for c in group)
        elif accepted(group):
            return
        elif len(group) == 1:
            bad.add(id(group[0]))
        else:
            mid = len(group) // 2
            search(group[:mid])
            search(group[mid:])

    search(comments)
    return bad
