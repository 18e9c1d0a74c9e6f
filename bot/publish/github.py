"""Publish a review to a GitHub pull request through PyGithub (the only place that writes to GitHub).

One run posts at most one review holding every new inline comment (a single create-review call, so a
review is never half-posted), edits one summary issue comment, and reports a check run (or, without
``checks: write``, a commit status). This module orders those writes and says what was left undone
when one fails; the parts live beside it:

- `bot.publish.publication`: what is published (`Publication`), built from a report, and GitHub's
  size limits;
- `bot.publish.markers`: the hidden, signed, per-job markers that only the bot's comments carry;
- `bot.publish.github_review`: the review, and the bisection that finds comments GitHub rejects;
- `bot.publish.github_checks`: the check run or commit status;
- `bot.github_client`: the client, its retries, create-at-most-twice and one-line errors.

Idempotence rests on the markers:

- each inline comment carries ``<!-- pttrust:finding=<id> sig=<hmac> -->``, ``id`` = hash of path, the
  text of the finding's lines and the finding kind (plus an occurrence index for identical lines). A
  finding whose id is already commented is not posted again, even if its line number moved;
- a bot comment whose id is no longer flagged at all (a later push fixed or removed the code) is
  *edited* to say it is resolved, not deleted: deleting would orphan replies in its thread. A finding
  still flagged but left out by the comment caps (`Publication.capped`) keeps its comment as it is;
- the summary issue comment carries ``<!-- pttrust:summary ... -->`` and is edited in place. Its marker
  also records the head sha and a hash of the last check/status sent, so re-running on an unchanged
  head posts nothing at all.

Faults: comments GitHub would reject (a line outside the diff) are caught beforehand against the PR's
hunks (`bot.diff.DiffFilter`) and listed in the summary instead; if GitHub still answers 422, the
offending comments are found by bisection and moved to the summary too. A POST GitHub may have carried
out (answered 5xx, or no answer once sent) is not re-sent blindly: each create is sent at most twice,
looking first for what the first one may have made (`bot.github_client.create_once`).
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, TextIO

from bot.diff import DiffFilter
from bot.github_client import DEFAULT_SETTINGS, GitHubSettings, create_once, github_errors, permission_refusal
from bot.publish.github_checks import report_check
from bot.publish.github_review import Postable, post_review
from bot.publish.markers import SIG_RE, BotIdentity, Marks, bot_identity
from bot.publish.publication import (
    BODY_LIMIT,
    InlineFinding,
    Publication,
    PublishResult,
    cap_text,
    finding_ids,
    publication_from_report,
    publication_notes,
)
from risk_core.errors import PttrustError

if TYPE_CHECKING:
    import jinja2
    from github.PullRequest import PullRequest
    from github.Repository import Repository

    from bot.github_source import PullRequestReader
    from bot.publish import Publisher
    from bot.review import Report


class PostingForbidden(PttrustError):
    """GitHub refused the first write for lack of permission (a 403 that is not a rate limit): the token
    may not post to this pull request, and nothing was posted."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class PublishIncomplete(PttrustError):
    """A write failed after others had reached the PR: what was and was not posted is in the message
    (and in ``posted`` / ``not_posted``)."""

    def __init__(self, message: str, posted: list[str], not_posted: list[str], result: PublishResult | None):
        super().__init__(message)
        self.posted, self.not_posted, self.result = posted, not_posted, result


_STAGES = ("reopened comments", "the review", "resolved comments", "the check run", "the summary comment")


class _Writes:
    """Which writes of a publish reached GitHub, to tell "may not post at all" from "failed midway"."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.current: str | None = None

    def start(self, stage: str) -> None:
        self.current = stage

    def finish(self, what: str) -> None:
        self.done.append(what)
        self.current = None

    def failure(self, err: PttrustError, what: str) -> PttrustError:
        """The error to raise for ``err`` (from `github_errors`) given what was already written."""
        cause = err.__cause__ or err.__context__
        reason = permission_refusal(cause) if cause is not None else None
        if not self.done:
            if self.current is not None and reason is not None:
                return PostingForbidden(f"{what}: the token may not post to this pull request ({reason})", reason)
            return err
        stage = self.current or "the next write"
        later = list(_STAGES[_STAGES.index(stage) + 1 :]) if stage in _STAGES else []
        not_posted = [stage, *later]
        text = str(err).removeprefix(f"{what}: ")
        message = f"{what}: failed midway ({text}); posted: {', '.join(self.done)}; not posted: {', '.join(not_posted)}"
        return PublishIncomplete(message, list(self.done), not_posted, None)


def publish(
    repo: Repository,
    pull: PullRequest,
    pub: Publication,
    head_sha: str,
    diff: DiffFilter,
    settings: GitHubSettings | None = None,
    dry_run: bool = False,
    identity: BotIdentity | None = None,
    env: jinja2.Environment | None = None,
) -> PublishResult:
    """Publish ``pub`` on ``pull`` (PyGithub objects) for commit ``head_sha``.

    ``diff`` says which lines of the PR's diff can take a comment (`bot.diff.DiffFilter` of the PR's
    files, `bot.github_source`), checked for every comment before anything is posted. With ``dry_run`` everything is
    read and planned, nothing written. ``identity``: whose markers count (default: the token's,
    `bot_identity`). ``env``: the templates of the review body and the summary's notes (default: the
    packaged ones).
    """
    from bot.render import make_environment

    settings = settings or DEFAULT_SETTINGS
    env = env or make_environment()
    result = PublishResult(head_sha)
    writes = _Writes()
    what = f"publishing to {repo.full_name}#{pull.number}"
    try:
        with github_errors(what):
            _publish(repo, pull, pub, head_sha, diff, settings, dry_run, identity, env, result, writes)
    except PttrustError as err:
        failure = writes.failure(err, what)
        if isinstance(failure, PublishIncomplete):
            failure.result = result
        if failure is err:
            raise
        raise failure from None
    return result


def _publish(
    repo: Repository,
    pull: PullRequest,
    pub: Publication,
    head_sha: str,
    diff: DiffFilter,
    settings: GitHubSettings,
    dry_run: bool,
    identity: BotIdentity | None,
    env: jinja2.Environment,
    result: PublishResult,
    writes: _Writes,
) -> None:
    """The body of `publish`, inside its github_errors; ``writes`` records each write that lands."""
    marks = Marks(identity or bot_identity(pull.requester, settings), repo.full_name, pull.number, settings.marker)
    # Ids over every flagged finding: a finding's id (its occurrence index among identical lines)
    # must not depend on which of them made the cap.
    ids = finding_ids(pub.findings + pub.capped)
    by_id = dict(zip(ids[: len(pub.findings)], pub.findings))
    existing = marks.review_comments(pull)

    new: list[tuple[str, InlineFinding]] = []
    for fid, finding in by_id.items():
        comment = existing.get(fid)
        if comment is None:
            new.append((fid, finding))
        elif marks.is_resolved(comment.body):
            result.reopened_comment_ids.append(comment.id)
            if not dry_run:
                writes.start("reopened comments")
                comment.edit(marks.comment_body(finding, fid))
                writes.finish(f"comment {comment.id} reopened")
            result.already_commented.append(finding)
        else:
            result.already_commented.append(finding)
    flagged = set(ids)
    stale = [c for fid, c in existing.items() if fid not in flagged and not marks.is_resolved(c.body)]

    postable: Postable = []
    for fid, finding in new:
        reason = diff.why_not(finding.path, finding.line, finding.start_line)
        if reason:
            result.rejected.append((finding, reason))
        else:
            postable.append((fid, finding))

    if postable and not dry_run:
        writes.start("the review")
        postable, rejected = post_review(repo, pull, head_sha, postable, pub, result, marks, env)
        result.rejected += rejected
        if result.review_id is not None:
            writes.finish(f"review {result.review_id} ({len(postable)} comment(s))")
    result.posted = [f for _, f in postable]

    for comment in stale:
        result.resolved_comment_ids.append(comment.id)
        if not dry_run:
            writes.start("resolved comments")
            comment.edit(marks.resolved_body(comment.body, head_sha))
            writes.finish(f"comment {comment.id} marked resolved")

    summary_comment, meta = marks.summary(pull)
    check_hash = _hash(
        pub.conclusion,
        pub.check_title,
        pub.check_summary,
        pub.check_text,
        *[f"{f.path}:{f.start_line}:{f.line}:{f.body}" for f in pub.findings],
    )
    if meta.get("head") == head_sha and meta.get("check") == check_hash:
        result.check_action = "unchanged"
        result.check_run_id = int(meta["run"]) if meta.get("run", "").isdigit() else None
    elif not dry_run:
        writes.start("the check run")
        report_check(repo, head_sha, pub, settings, result)
        writes.finish(f"check run {result.check_run_id}" if result.check_action == "check-run" else "a commit status")

    marker = marks.summary_marker(head_sha, check_hash, result.check_run_id)
    notes = cap_text(publication_notes(result, env), BODY_LIMIT // 2, "in a comment", BODY_LIMIT)
    room = BODY_LIMIT - len(marker) - 2 - len(notes)
    body = marker + "\n" + cap_text(pub.summary.rstrip(), room, "in a comment", BODY_LIMIT).rstrip() + "\n" + notes
    # The signature of a short-lived token's key changes every run; the content decides.
    if summary_comment is not None and SIG_RE.sub("", summary_comment.body) == SIG_RE.sub("", body):
        result.summary_action = "unchanged"
        result.summary_comment_id = summary_comment.id
    elif dry_run:
        result.summary_action = "would edit" if summary_comment else "would create"
    elif summary_comment is not None:
        writes.start("the summary comment")
        summary_comment.edit(body)
        result.summary_action, result.summary_comment_id = "edited", summary_comment.id
        writes.finish(f"summary comment {summary_comment.id} edited")
    else:
        # No summary existed when this run started: one found now is the one this create made.
        writes.start("the summary comment")
        created = create_once(
            lambda: pull.create_issue_comment(body), lambda: marks.summary(pull)[0], "the summary comment"
        )
        result.summary_action, result.summary_comment_id = "created", created.id
        writes.finish(f"summary comment {created.id}")


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class GitHubPublisher:
    """`bot.publish.Publisher` for one pull request; ``dry_run`` prints the plan instead of writing."""

    def __init__(
        self,
        repo: Repository,
        pull: PullRequest,
        reader: PullRequestReader,
        settings: GitHubSettings,
        env: jinja2.Environment,
        fail_above: float | None,
        dry_run: bool = False,
        local: Publisher | None = None,
        stream: TextIO | None = None,
        identity: BotIdentity | None = None,
    ):
        self.repo, self.pull, self.reader, self.identity = repo, pull, reader, identity
        self.settings, self.env, self.fail_above = settings, env, fail_above
        self.dry_run, self.local = dry_run, local
        self.stream = stream or sys.stderr
        self.result: PublishResult | None = None

    def publish(self, report: Report) -> None:
        pub = publication_from_report(report, self.env, self.fail_above)
        self.result = publish(
            self.repo,
            self.pull,
            pub,
            self.reader.data.head_sha,
            DiffFilter.from_diff(self.reader.parsed_diff()),
            self.settings,
            dry_run=self.dry_run,
            identity=self.identity,
            env=self.env,
        )
        if self.local is not None:
            self.local.publish(report)
        prefix = "dry run, nothing posted: " if self.dry_run else ""
        self.stream.write(f"{prefix}{self.reader.data.name}\n{self.result.describe()}\n")
