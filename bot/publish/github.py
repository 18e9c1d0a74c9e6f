"""Publish a review to a GitHub pull request through PyGithub (the only module that writes to GitHub).

One run posts at most one review holding every new inline comment (a single create-review call, so a
review is never half-posted), edits one summary issue comment, and reports a check run (or, without
``checks: write``, a commit status).

Idempotence rests on hidden markers, and only the bot's own markers count: a marker is read only from
a comment authored by the bot's identity (`BotIdentity`: the token's user from GET /user, or for an App
or Actions token, which GET /user refuses, the configured login, by default ``github-actions[bot]``),
and it carries ``sig=``, an HMAC over (repository, PR number, marker kind, finding id) keyed by a secret
only the bot's run has (``$PTTRUST_MARKER_SECRET``, else a key derived from the token). Anyone else
pasting a marker into a comment steers nothing. With a configured secret, or a long-lived token (a
PAT), a bot-authored marker whose signature does not verify is ignored too; with a short-lived App or
Actions token (``ghs_``) and no secret, the author is the check (that token changes every run).

- each inline comment carries ``<!-- pttrust:finding=<id> sig=<hmac> -->``, ``id`` = hash of path, the text of
  the finding's lines and the finding kind (plus an occurrence index for identical lines). A finding
  whose id is already commented is not posted again, even if its line number moved;
- a bot comment whose id is no longer flagged at all (a later push fixed or removed the code) is
  *edited* to say it is resolved, not deleted: deleting would orphan replies in its thread. A finding
  still flagged but left out by the comment caps (`Publication.capped`) keeps its comment as it is;
- the summary issue comment carries ``<!-- pttrust:summary ... -->`` and is edited in place. Its marker
  also records the head sha and a hash of the last check/status sent, so re-running on an unchanged
  head posts nothing at all.

Faults: comments GitHub would reject (a line outside the diff) are caught beforehand against the PR's
patches and listed in the summary instead; if GitHub still answers 422, the offending comments are
found by bisection with *pending* reviews (visible only to the bot, deleted right away) and moved to
the summary too. 403 rate limits, 429, 5xx and network errors are retried by PyGithub's `GithubRetry`
(urllib3), which honours Retry-After and x-ratelimit-reset, except where a POST may have reached
GitHub: answered 5xx, or left without an answer once sent (read timeout, connection dropped). GitHub
may have carried the create out, and sending it again would post a second review or comment; only a
POST that never left (a connect error) is retried. Each create is sent at most twice instead, looking
first for what the first one may have made (`_create_once`): the review by its comments' markers, the
summary by its marker. Check runs cannot be listed within the REST description the bot keeps to, so a
check run (or commit status) is simply created again. The token is read from the environment and
never printed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from risk_core.errors import PttrustError, UsageError

log = logging.getLogger(__name__)

FINDING_MARKER = "<!-- pttrust:finding={id} sig={sig} -->"
RESOLVED_MARKER = "<!-- pttrust:resolved -->"
SUMMARY_MARKER_PREFIX = "<!-- pttrust:summary"
_FINDING_RE = re.compile(r"<!-- pttrust:finding=([0-9a-f]+)(?: sig=([0-9a-f]*))? -->")
_SUMMARY_RE = re.compile(r"<!-- pttrust:summary(?P<meta>[^>]*)-->")
_SIG_RE = re.compile(r" sig=[0-9a-f]*(?= -->)")
MARKER_SECRET_ENV = "PTTRUST_MARKER_SECRET"
"""A secret that keys the markers' HMAC (e.g. a repository secret); without it, a key from the token."""
BOT_LOGIN_ENV = "PTTRUST_BOT_LOGIN"
"""The bot's login where GET /user is refused (a GitHub App: ``<app-slug>[bot]``)."""
ACTIONS_LOGIN = "github-actions[bot]"
"""Who an Actions ``GITHUB_TOKEN`` posts as (GET /user answers it 403)."""
_SHORT_LIVED_TOKEN_PREFIXES = ("ghs_",)
"""App installation and Actions tokens: they expire within hours, so a key from one cannot verify
markers from an earlier run."""
MAX_ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per check-run create/update call
BODY_LIMIT = 65536
"""GitHub's limit, in characters, on an issue comment's, review's or review comment's body."""
CHECK_OUTPUT_LIMIT = 65535
"""GitHub's limit, in characters, on a check run's output.summary and output.text."""
ANNOTATION_MESSAGE_LIMIT = 64000
"""GitHub's limit on an annotation's message (64 KB)."""
MAX_BISECT_PROBES = 40
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# Settings and connection


@dataclass
class GitHubSettings:
    base_url: str | None = None
    """API root; None: $GITHUB_API_URL or https://api.github.com (Enterprise: https://HOST/api/v3)."""
    token_env: str = "GITHUB_TOKEN"
    """Environment variable holding the token (never printed or logged)."""
    retries: int = 6
    """Retries per request for 403 rate limits, 429, 5xx (not for a POST) and connect errors."""
    backoff_factor: float = 1.0
    """Exponential backoff base in seconds between retries (0 in tests)."""
    secondary_rate_wait: float = 60.0
    """Seconds to wait on a secondary rate limit without Retry-After."""
    max_rate_limit_wait: float = 900.0
    """Give up (one-line error) when a rate-limit reset is further away than this many seconds."""
    seconds_between_requests: float | None = 0.25
    """PyGithub's pacing between requests (GitHub's guidance against secondary limits)."""
    seconds_between_writes: float | None = 1.0
    """PyGithub's pacing between writes."""
    timeout: int = 30
    """Seconds per HTTP request."""
    check_name: str = "PtTrust risk review"
    """Name of the check run, and context of the fallback commit status."""
    anonymous: bool = False
    """Without a token, read anonymously (a dry run on a public repository) instead of refusing."""
    bot_login: str | None = None
    """The bot's own login; None: ``$PTTRUST_BOT_LOGIN``, else GET /user, else ``github-actions[bot]``."""


DEFAULT_SETTINGS = GitHubSettings()
"""Used wherever no settings are passed (tests swap in one without pacing or backoff)."""


def parse_pr_spec(spec: str) -> tuple[str, int]:
    """``OWNER/REPO#N`` -> ("OWNER/REPO", N); UsageError otherwise."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#([0-9]+)", spec.strip())
    if not m or int(m.group(2)) < 1:
        raise UsageError(f"--github expects OWNER/REPO#N, got {spec!r}")
    return m.group(1), int(m.group(2))


def connect(settings: GitHubSettings | None = None, env: Mapping[str, str] | None = None):
    """A `github.Github` client authenticated from the environment, retrying rate limits and 5xx."""
    from github import Auth, Github

    settings = settings or DEFAULT_SETTINGS
    env = os.environ if env is None else env
    # GH_TOKEN is the gh CLI's name for the same thing; either works.
    token = (env.get(settings.token_env, "") or env.get("GH_TOKEN", "")).strip()
    if not token and not settings.anonymous:
        raise UsageError(f"${settings.token_env} is not set: a token is needed to talk to GitHub")
    base_url = (settings.base_url or env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    retry = _retry_class()(
        total=settings.retries,
        backoff_factor=settings.backoff_factor,
        secondary_rate_wait=settings.secondary_rate_wait,
        max_rate_limit_wait=settings.max_rate_limit_wait,
        # 429 is GitHub's other rate-limit answer; PATCH/DELETE are idempotent edits we also retry;
        # POST is retried only where GitHub did not act (see _retry_class).
        status_forcelist=[429, 500, 502, 503, 504],
        allowed_methods={"GET", "POST", "PATCH", "PUT", "DELETE"},
        raise_on_status=False,
    )
    return Github(
        auth=Auth.Token(token) if token else None,
        base_url=base_url,
        timeout=settings.timeout,
        retry=retry,
        seconds_between_requests=settings.seconds_between_requests,
        seconds_between_writes=settings.seconds_between_writes,
        per_page=100,
    )


@functools.cache
def _retry_class() -> type:
    """`GithubRetry` that never re-sends a POST GitHub may have carried out: one answered 5xx, or one
    that failed after it was sent (read timeout, dropped connection). PyGithub is imported lazily,
    hence a function."""
    from github import GithubRetry
    from urllib3.util.util import reraise

    class CreateOnceRetry(GithubRetry):
        # urllib3's Retry.new() builds the next attempt's Retry with type(self), so these rules hold on
        # every retry, not only the first.
        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            # A create answered 5xx may have been carried out; 429 and rate-limit 403s were not.
            if method.upper() == "POST" and status_code >= 500:
                return False
            return super().is_retry(method, status_code, has_retry_after)

        def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
            # Only a connect error proves the request never left. Read errors (a timeout waiting for
            # the answer, a connection closed without one) and urllib3's "other" errors may come after
            # GitHub got the request: re-raise as urllib3 does for a method it may not retry, so
            # _create_once can look before creating again.
            if (
                error is not None
                and method is not None
                and method.upper() == "POST"
                and not self._is_connection_error(error)
            ):
                raise reraise(type(error), error, _stacktrace)
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return CreateOnceRetry


def _create_once(create: Callable[[], T], find: Callable[[], T | None] | None, what: str) -> T:
    """``create()``; after a failure GitHub may have acted on (a 5xx, no answer: `_may_have_acted`),
    ``find()`` what it may have made, and only if nothing is there (or ``find`` is None: no way to
    look) ``create()`` once more. A second failure propagates (to `github_errors`)."""
    import requests
    from github import GithubException

    try:
        return create()
    except (GithubException, requests.exceptions.RequestException) as err:
        if not _may_have_acted(err):
            raise
        how = f"answered {err.status}" if isinstance(err, GithubException) else f"gave no answer ({type(err).__name__})"
        log.info("GitHub %s to creating %s; looking for it before trying again", how, what)
    found = find() if find is not None else None
    return create() if found is None else found


def _may_have_acted(err: Exception) -> bool:
    """Whether GitHub may have carried out a request that failed with ``err``: it answered 5xx, or the
    request was sent and no (whole) answer came back. Not after a 4xx or a connect error."""
    import requests
    from github import GithubException
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(err, GithubException):
        return bool(err.status) and err.status >= 500
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(err, (requests.exceptions.ReadTimeout, requests.exceptions.ChunkedEncodingError)):
        return True
    if isinstance(err, requests.exceptions.ConnectionError):
        # requests wraps urllib3's error, or the MaxRetryError holding the last attempt's as .reason;
        # ConnectTimeoutError covers NewConnectionError (refused, DNS): the request never left.
        cause = err.args[0] if err.args else None
        return not isinstance(getattr(cause, "reason", cause), ConnectTimeoutError)
    return False


@contextlib.contextmanager
def github_errors(what: str) -> Iterator[None]:
    """Turn PyGithub/requests failures into one-line PttrustErrors (messages never hold the token)."""
    import requests
    from github import BadCredentialsException, GithubException, RateLimitExceededException
    from github.GithubException import RateLimitExceededExceedsMaxWait

    try:
        yield
    except PttrustError:
        raise
    except BadCredentialsException:
        raise PttrustError(f"{what}: GitHub rejected the token (401 Bad credentials)") from None
    except RateLimitExceededExceedsMaxWait as err:
        raise PttrustError(
            f"{what}: GitHub rate limit; the reset is {err.wait:.0f}s away, more than the configured maximum wait"
        ) from None
    except RateLimitExceededException:
        raise PttrustError(f"{what}: GitHub rate limit exceeded, retries exhausted") from None
    except GithubException as err:
        message = err.data.get("message") if isinstance(err.data, dict) else str(err.data or "")
        raise PttrustError(f"{what}: GitHub answered {err.status}: {message}".strip()) from None
    except requests.exceptions.RetryError:
        raise PttrustError(f"{what}: GitHub kept failing (retries exhausted)") from None
    except requests.exceptions.RequestException as err:
        raise PttrustError(f"{what}: cannot reach GitHub ({type(err).__name__})") from None


# ---------------------------------------------------------------------------------------------------
# Whose markers count


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot posts as and the key of its markers' HMAC (never printed)."""

    login: str
    key: bytes = field(repr=False)
    strict: bool
    """Whether a marker must carry a valid signature (a configured secret or a long-lived token);
    otherwise the author alone decides (a short-lived token cannot verify an earlier run's)."""

    def sign(self, repo: str, number: int, kind: str, value: str) -> str:
        msg = "\0".join([repo.lower(), str(number), kind, value]).encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()[:32]

    def authored(self, obj: Any) -> bool:
        user = getattr(obj, "user", None)
        login = getattr(user, "login", None) if user is not None else None
        return bool(login) and login.lower() == self.login.lower()

    def verified(self, repo: str, number: int, kind: str, value: str, sig: str | None) -> bool:
        if sig and hmac.compare_digest(sig, self.sign(repo, number, kind, value)):
            return True
        return not self.strict


def bot_identity(
    requester: Any, settings: GitHubSettings | None = None, env: Mapping[str, str] | None = None
) -> BotIdentity:
    """The identity of the token ``requester`` (a PyGithub Requester) authenticates with."""
    from github import GithubException
    from github.AuthenticatedUser import AuthenticatedUser

    settings = settings or DEFAULT_SETTINGS
    env = os.environ if env is None else env
    assert env is not None
    auth = getattr(requester, "auth", None)
    token = getattr(auth, "token", None) or ""
    login = settings.bot_login or env.get(BOT_LOGIN_ENV, "").strip() or None
    if login is None:
        try:
            login = AuthenticatedUser(requester, url="/user", completed=False).login
        except GithubException as err:
            if err.status != 403:  # 403: an App or Actions token, which may not read /user
                raise
            login = ACTIONS_LOGIN
            log.info("GET /user refused (an App or Actions token): taking the bot to be %s", login)
    secret = env.get(MARKER_SECRET_ENV, "")
    if secret:
        key, strict = hashlib.sha256(b"pttrust-marker\0" + secret.encode()).digest(), True
    else:
        key = hmac.new(token.encode(), b"pttrust-marker", hashlib.sha256).digest()
        strict = bool(token) and not token.startswith(_SHORT_LIVED_TOKEN_PREFIXES)
    return BotIdentity(login, key, strict)


class PostingForbidden(PttrustError):
    """GitHub refused the first write for lack of permission (a 403 that is not a rate limit): the token
    may not post to this pull request, and nothing was posted."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class PublishIncomplete(PttrustError):
    """A write failed after others had reached the PR: what was and was not posted is in the message
    (and in ``posted`` / ``not_posted``)."""

    def __init__(self, message: str, posted: list[str], not_posted: list[str], result: Any):
        super().__init__(message)
        self.posted, self.not_posted, self.result = posted, not_posted, result


# The writes of one publish, in order (see `publish`): what is left when one fails.
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
        reason = _permission_refusal(cause) if cause is not None else None
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


def _permission_refusal(err: BaseException) -> str | None:
    """``HTTP 403: message`` when ``err`` is GitHub refusing a request for lack of permission (not a
    primary rate limit, which PyGithub raises as RateLimitExceededException)."""
    from github import GithubException, RateLimitExceededException

    if isinstance(err, GithubException) and not isinstance(err, RateLimitExceededException) and err.status == 403:
        message = err.data.get("message") if isinstance(err.data, dict) else None
        return f"HTTP 403: {message or 'forbidden'}"
    return None


# ---------------------------------------------------------------------------------------------------
# What gets published


@dataclass(frozen=True)
class InlineFinding:
    """One finding to comment on, independent of how it was scored or rendered."""

    path: str
    line: int
    """New-side (RIGHT) line the comment ends on."""
    start_line: int | None
    """First line of a multi-line finding; None for one line."""
    risk: float
    line_text: str
    """Text of the finding's lines (joined by newlines): its identity across pushes."""
    body: str
    """Rendered comment markdown, without the marker."""
    kind: str = "risk"
    """What was found; part of the identity (a different kind on the same line is a new comment)."""
    annotation_level: str = "warning"
    """Check-run annotation level: notice | warning | failure."""


@dataclass
class Publication:
    """Everything one run publishes. Built from a `bot.review.Report` by `publication_from_report`."""

    findings: list[InlineFinding]
    summary: str
    """Summary markdown (the packaged summary.md.j2), without marker."""
    conclusion: str
    """Check conclusion: failure (gate tripped) | neutral (findings) | success."""
    check_title: str
    check_summary: str
    check_text: str = ""
    review_body: str | None = None
    """Body of the review holding the new comments (None: a short table of them)."""
    capped: list[InlineFinding] = field(default_factory=list)
    """Findings flagged but left out by the comment caps. Only their identity (path, line, line text,
    kind) is used: a comment already on one is neither posted, resolved nor reopened."""


def finding_ids(findings: list[InlineFinding]) -> list[str]:
    """Stable ids: hash(path, line text, kind, occurrence among identical ones in line order)."""
    seen: dict[tuple, int] = {}
    ids = [""] * len(findings)
    for i in sorted(range(len(findings)), key=lambda i: (findings[i].path, findings[i].line)):
        f = findings[i]
        key = (f.path, f.line_text, f.kind)
        n = seen[key] = seen.get(key, -1) + 1
        ids[i] = hashlib.sha256("\0".join([f.path, f.line_text, f.kind, str(n)]).encode()).hexdigest()[:20]
    return ids


@dataclass
class PublishResult:
    head_sha: str
    posted: list[InlineFinding] = field(default_factory=list)
    already_commented: list[InlineFinding] = field(default_factory=list)
    rejected: list[tuple[InlineFinding, str]] = field(default_factory=list)
    """Findings that could not be inline comments, with why (they are listed in the summary)."""
    resolved_comment_ids: list[int] = field(default_factory=list)
    reopened_comment_ids: list[int] = field(default_factory=list)
    review_id: int | None = None
    summary_comment_id: int | None = None
    summary_action: str = "none"
    """created | edited | unchanged | none (dry run)."""
    check_run_id: int | None = None
    check_action: str = "none"
    """check-run | status | unchanged | none."""
    annotation_requests: int = 0

    def describe(self) -> str:
        lines = [
            f"review: {len(self.posted)} new comment(s), {len(self.already_commented)} already there, "
            f"{len(self.rejected)} moved to the summary, {len(self.resolved_comment_ids)} resolved",
            f"summary: {self.summary_action}",
            f"check: {self.check_action}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Publishing


def publish(
    repo: Any,
    pull: Any,
    pub: Publication,
    head_sha: str,
    patches: dict[str, str | None],
    settings: GitHubSettings | None = None,
    dry_run: bool = False,
    identity: BotIdentity | None = None,
) -> PublishResult:
    """Publish ``pub`` on ``pull`` (PyGithub objects) for commit ``head_sha``.

    ``patches`` maps each PR file to its GitHub patch (from `bot.github_source`), used to check that
    every comment targets a line of the diff before anything is posted. With ``dry_run`` everything is
    read and planned, nothing written. ``identity``: whose markers count (default: the token's,
    `bot_identity`).
    """
    settings = settings or DEFAULT_SETTINGS
    result = PublishResult(head_sha)
    writes = _Writes()
    what = f"publishing to {repo.full_name}#{pull.number}"
    try:
        with github_errors(what):
            _publish(repo, pull, pub, head_sha, patches, settings, dry_run, identity, result, writes)
    except PttrustError as err:
        failure = writes.failure(err, what)
        if isinstance(failure, PublishIncomplete):
            failure.result = result
        if failure is err:
            raise
        raise failure from None
    return result


def _publish(repo, pull, pub, head_sha, patches, settings, dry_run, identity, result, writes: _Writes) -> None:
    """The body of `publish`, inside its github_errors; ``writes`` records each write that lands."""
    marks = _Marks(identity or bot_identity(pull.requester, settings), repo.full_name, pull.number)
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
        elif RESOLVED_MARKER in comment.body:
            result.reopened_comment_ids.append(comment.id)
            if not dry_run:
                writes.start("reopened comments")
                comment.edit(marks.comment_body(finding, fid))
                writes.finish(f"comment {comment.id} reopened")
            result.already_commented.append(finding)
        else:
            result.already_commented.append(finding)
    flagged = set(ids)
    stale = [c for fid, c in existing.items() if fid not in flagged and RESOLVED_MARKER not in c.body]

    postable = []
    for fid, finding in new:
        reason = _diff_reason(finding, patches)
        if reason:
            result.rejected.append((finding, reason))
        else:
            postable.append((fid, finding))

    if postable and not dry_run:
        writes.start("the review")
        postable, rejected = _post_review(repo, pull, head_sha, postable, pub, result, marks)
        result.rejected += rejected
        if result.review_id is not None:
            writes.finish(f"review {result.review_id} ({len(postable)} comment(s))")
    result.posted = [f for _, f in postable]

    for comment in stale:
        result.resolved_comment_ids.append(comment.id)
        if not dry_run:
            writes.start("resolved comments")
            comment.edit(_resolved_body(comment.body, head_sha))
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
        _report_check(repo, head_sha, pub, settings, result)
        writes.finish(f"check run {result.check_run_id}" if result.check_action == "check-run" else "a commit status")

    sig = marks.ident.sign(marks.repo, marks.number, "summary", "")
    marker = f"{SUMMARY_MARKER_PREFIX} head={head_sha} check={check_hash} run={result.check_run_id or ''} sig={sig} -->"
    notes = cap_text(_publication_notes(result), BODY_LIMIT // 2, "in a comment", BODY_LIMIT)
    room = BODY_LIMIT - len(marker) - 2 - len(notes)
    body = marker + "\n" + cap_text(pub.summary.rstrip(), room, "in a comment", BODY_LIMIT).rstrip() + "\n" + notes
    # The signature of a short-lived token's key changes every run; the content decides.
    if summary_comment is not None and _SIG_RE.sub("", summary_comment.body) == _SIG_RE.sub("", body):
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
        created = _create_once(
            lambda: pull.create_issue_comment(body), lambda: marks.summary(pull)[0], "the summary comment"
        )
        result.summary_action, result.summary_comment_id = "created", created.id
        writes.finish(f"summary comment {created.id}")


@dataclass(frozen=True)
class _Marks:
    """The markers of one pull request, written and read as `BotIdentity` ``ident``'s only."""

    ident: BotIdentity
    repo: str
    number: int

    def finding_marker(self, fid: str) -> str:
        return FINDING_MARKER.format(id=fid, sig=self.ident.sign(self.repo, self.number, "finding", fid))

    def comment_body(self, finding: InlineFinding, fid: str) -> str:
        marker = self.finding_marker(fid)
        body = cap_text(finding.body.rstrip(), BODY_LIMIT - len(marker) - 2, "in a comment", BODY_LIMIT)
        return f"{body.rstrip()}\n\n{marker}"

    def review_comments(self, pull: Any) -> dict[str, Any]:
        """The bot's review comments carrying a valid finding marker, by finding id (the first wins).
        A marker in anybody else's comment, or one whose signature fails, is ignored."""
        out: dict[str, Any] = {}
        for comment in pull.get_review_comments():
            m = _FINDING_RE.search(comment.body or "")
            if not m or m.group(1) in out or not self.ident.authored(comment):
                continue
            if self.ident.verified(self.repo, self.number, "finding", m.group(1), m.group(2)):
                out[m.group(1)] = comment
            else:
                log.info("ignoring review comment %s: its marker's signature does not verify", comment.id)
        return out

    def summary(self, pull: Any) -> tuple[Any | None, dict[str, str]]:
        """The bot's summary issue comment and its marker's fields ((None, {}) when there is none)."""
        for comment in pull.get_issue_comments():
            m = _SUMMARY_RE.search(comment.body or "")
            if not m or not self.ident.authored(comment):
                continue
            meta = dict(kv.split("=", 1) for kv in m.group("meta").split() if "=" in kv)
            if self.ident.verified(self.repo, self.number, "summary", "", meta.get("sig")):
                return comment, meta
        return None, {}


def _finding_marker(body: str) -> re.Match[str]:
    """The finding marker of a comment the bot wrote (each one carries one)."""
    found = _FINDING_RE.search(body)
    assert found is not None, "a bot comment without a finding marker"
    return found


def _resolved_body(old: str, head_sha: str) -> str:
    marker = _finding_marker(old).group(0)
    original = cap_text(_FINDING_RE.sub("", old).strip(), BODY_LIMIT - 400 - len(marker), "in a comment", BODY_LIMIT)
    return (
        f"**Resolved**: PtTrust no longer flags this as of {head_sha[:7]}.\n\n"
        f"<details><summary>Original comment</summary>\n\n{original}\n\n</details>\n\n"
        f"{RESOLVED_MARKER}\n{marker}"
    )


def _hunk_lines(patch: str) -> list[set[int]]:
    """Per hunk, the new-side lines a comment may target (added and context lines)."""
    hunks: list[set[int]] = []
    line = 0
    for text in patch.splitlines():
        m = re.match(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@", text)
        if m:
            line = int(m.group(1))
            hunks.append(set())
        elif hunks and text[:1] in ("+", " "):
            hunks[-1].add(line)
            line += 1
    return hunks


def _diff_reason(finding: InlineFinding, patches: dict[str, str | None]) -> str | None:
    """Why GitHub would reject this comment (None: it targets a line of the diff)."""
    if finding.path not in patches:
        return "the file is not part of the pull request's diff"
    patch = patches[finding.path]
    if not patch:
        return "GitHub shows no diff for this file (binary or too large)"
    hunk = next((h for h in _hunk_lines(patch) if finding.line in h), None)
    if hunk is None:
        return f"line {finding.line} is not part of the diff"
    if finding.start_line is not None and finding.start_line not in hunk:
        return f"lines {finding.start_line}-{finding.line} span more than one hunk of the diff"
    return None


def _review_comment(fid: str, finding: InlineFinding, marks: _Marks) -> dict:
    comment = {"path": finding.path, "body": marks.comment_body(finding, fid), "line": finding.line, "side": "RIGHT"}
    if finding.start_line is not None and finding.start_line < finding.line:
        comment.update(start_line=finding.start_line, start_side="RIGHT")
    return comment


def _post_review(repo, pull, head_sha, postable, pub, result, marks):
    """One create-review call with every comment; on 422 find the rejected ones, post the rest."""
    from github import GithubException

    commit = repo.get_commit(head_sha)
    comments = [_review_comment(fid, f, marks) for fid, f in postable]
    try:
        result.review_id = _create_review(pull, commit, pub, [f for _, f in postable], comments, marks)
        return postable, []
    except GithubException as err:
        if err.status != 422:
            raise
        reason = _error_text(err)
    log.info("GitHub rejected the review (%s); looking for the rejected comments", reason)
    bad = _find_rejected(pull, commit, comments, marks.ident)
    keep = [pf for pf, c in zip(postable, comments) if id(c) not in bad]
    rejected = [
        (f, f"GitHub rejected the comment: {reason}") for (fid, f), c in zip(postable, comments) if id(c) in bad
    ]
    if keep:
        kept_comments = [c for c in comments if id(c) not in bad]
        result.review_id = _create_review(pull, commit, pub, [f for _, f in keep], kept_comments, marks)
    return keep, rejected


def _create_review(
    pull, commit, pub: Publication, findings: list[InlineFinding], comments: list[dict], marks: _Marks
) -> int:
    """The review's id. A review is created whole or not at all, so after a 5xx it was made if every
    comment's finding marker is on the PR now (none was there before: these are new findings)."""
    body = cap_text(pub.review_body or _review_body(findings), BODY_LIMIT, "in a review")

    def find():
        fids = {_finding_marker(c["body"]).group(1) for c in comments}
        on_pr = marks.review_comments(pull)
        return pull.get_review(on_pr[next(iter(fids))].pull_request_review_id) if fids <= on_pr.keys() else None

    return _create_once(
        lambda: pull.create_review(commit=commit, body=body, event="COMMENT", comments=comments), find, "the review"
    ).id


def _find_rejected(pull, commit, comments: list[dict], ident: BotIdentity) -> set[int]:
    """ids of the comments GitHub rejects, found by bisection with pending reviews.

    A pending review (no ``event``) is visible only to its author and is deleted right after the
    probe, so nothing half-done ever shows on the PR. Past MAX_BISECT_PROBES every comment left is
    treated as rejected (they still reach the summary).
    """
    from github import GithubException

    def pending():  # after a 5xx on a probe: the probe, if GitHub made it (one pending per user)
        return next((r for r in pull.get_reviews() if r.state == "PENDING" and ident.authored(r)), None)

    for review in pull.get_reviews():  # a stale probe would block ours (one pending per user)
        if review.state == "PENDING" and ident.authored(review):
            review.delete()
    probes = 0
    bad: set[int] = set()

    def accepted(group: list[dict]) -> bool:
        nonlocal probes
        probes += 1
        try:
            probe = _create_once(lambda: pull.create_review(commit=commit, comments=group), pending, "a probe")
            probe.delete()
            return True
        except GithubException as err:
            if err.status != 422:
                raise
            return False

    def search(group: list[dict]) -> None:
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


def _error_text(err: Any) -> str:
    data = err.data if isinstance(err.data, dict) else {}
    errors = data.get("errors") or []
    text = "; ".join(e if isinstance(e, str) else str(e.get("message", e)) for e in errors)
    return text or data.get("message") or f"HTTP {err.status}"


def _report_check(repo, head_sha: str, pub: Publication, settings: GitHubSettings, result) -> None:
    """A check run with annotations in batches of 50; without permission, a commit status."""
    from github import GithubException

    annotations = [_annotation(f) for f in pub.findings]
    batches = [
        annotations[i : i + MAX_ANNOTATIONS_PER_REQUEST]
        for i in range(0, len(annotations), MAX_ANNOTATIONS_PER_REQUEST)
    ] or [[]]

    def output(batch):
        return {
            "title": pub.check_title,
            "summary": cap_text(pub.check_summary or pub.check_title, CHECK_OUTPUT_LIMIT, "in a check run's summary"),
            "text": cap_text(pub.check_text, CHECK_OUTPUT_LIMIT, "in a check run's text"),
            "annotations": batch,
        }

    # The REST description the bot keeps to lists no commit's check runs or statuses, so after a 5xx
    # neither can be looked for: it is created again (GitHub shows the latest of a name).
    try:
        run = _create_once(
            lambda: repo.create_check_run(
                name=settings.check_name,
                head_sha=head_sha,
                status="completed",
                conclusion=pub.conclusion,
                output=output(batches[0]),
            ),
            None,
            "the check run",
        )
    except GithubException as err:
        if err.status != 403:
            raise
        # Tokens without checks: write (e.g. a fork's GITHUB_TOKEN) may still set commit statuses.
        log.info("no permission for check runs (%s); setting a commit status", _error_text(err))
        state = "failure" if pub.conclusion == "failure" else "success"
        description = pub.check_title if len(pub.check_title) <= 140 else pub.check_title[:139] + "…"
        commit = repo.get_commit(head_sha)
        _create_once(
            lambda: commit.create_status(state=state, description=description, context=settings.check_name),
            None,
            "the commit status",
        )
        result.check_action = "status"
        return
    result.check_run_id, result.check_action, result.annotation_requests = run.id, "check-run", 1
    for batch in batches[1:]:
        run.edit(output=output(batch))  # GitHub appends each update's annotations
        result.annotation_requests += 1


def _annotation(f: InlineFinding) -> dict:
    return {
        "path": f.path,
        "start_line": f.start_line or f.line,
        "end_line": f.line,
        "annotation_level": f.annotation_level,
        "title": f"PtTrust risk {100 * f.risk:.0f}%",
        "message": cap_text(_FINDING_RE.sub("", f.body).strip(), ANNOTATION_MESSAGE_LIMIT, "in an annotation")
        or f"risk {f.risk:.2f}",
    }


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cap_text(text: str, limit: int, where: str = "here", github_limit: int | None = None) -> str:
    """``text`` cut at a line boundary to at most ``limit`` characters, ending in an explicit
    "N more line(s)…" line when anything was cut (GitHub rejects a longer body outright).
    ``github_limit``: GitHub's limit for the whole body, when ``limit`` is this part's share of it."""
    shown = github_limit or limit
    if len(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        note = _cut_note(len(lines) - i, shown, where)
        if size + len(line) + len(note) > limit:
            break
        kept.append(line)
        size += len(line)
    note = _cut_note(len(lines) - len(kept), shown, where)
    head = "".join(kept)
    if not kept:  # one line longer than the limit: cut inside it
        head = text[: max(0, limit - len(note) - 1)] + "\n"
    elif not head.endswith("\n"):
        head += "\n"
    return (head + note)[:limit]


def _cut_note(n: int, limit: int, where: str) -> str:
    return f"\n… {n} more line(s) not shown: GitHub allows {limit:,} characters {where}; the full report has them.\n"


# -- minimal rendering (the packaged templates render the summary itself; see publication_from_report)


def _review_body(findings: list[InlineFinding]) -> str:
    rows = "\n".join(f"| {100 * f.risk:.0f}% | `{f.path}:{_where(f)}` |" for f in findings)
    return f"PtTrust flagged {len(findings)} line(s) in this push.\n\n| risk | where |\n| ---: | --- |\n{rows}\n"


def _where(f: InlineFinding) -> str:
    return f"{f.start_line}-{f.line}" if f.start_line and f.start_line < f.line else str(f.line)


def _publication_notes(result: PublishResult) -> str:
    """What only the publisher knows: findings that could not be inline comments, resolved ones."""
    out = []
    if result.rejected:
        out.append("\n### Findings not shown inline\n")
        out.append("| risk | where | why |\n| ---: | --- | --- |")
        for f, why in result.rejected:
            out.append(f"| {100 * f.risk:.0f}% | `{f.path}:{_where(f)}` | {why.replace('|', '/')} |")
        for f, _ in result.rejected:
            out.append(
                f"\n<details><summary><code>{f.path}:{_where(f)}</code></summary>\n\n{f.body.strip()}\n\n</details>"
            )
    if result.resolved_comment_ids:
        out.append(
            f"\n{len(result.resolved_comment_ids)} earlier comment(s) marked resolved as of {result.head_sha[:7]}."
        )
    if result.check_action == "status":
        out.append("\n<sub>No permission for check runs: the result is a commit status.</sub>")
    return "\n".join(out) + ("\n" if out else "")


# ---------------------------------------------------------------------------------------------------
# The CLI's --github path


def publication_from_report(report: Any, env: Any, fail_above: float | None) -> Publication:
    """A `bot.review.Report` rendered with the packaged templates (`bot.render`)."""
    from bot.render import render_check, render_comment, render_summary

    check = render_check(env, report, fail_above)

    def inline(f, body: str) -> InlineFinding:
        text = "\n".join(getattr(l, "text", "") for l in f.lines)
        level = "failure" if fail_above is not None and f.risk > fail_above else "warning"
        return InlineFinding(
            path=f.path,
            line=f.end_line,
            start_line=f.start_line if f.end_line > f.start_line else None,
            risk=f.risk,
            line_text=text,
            body=body,
            annotation_level=level,
        )

    findings = [inline(f, render_comment(env, f, report)) for f in report.findings]
    capped = [inline(f, "") for f in report.capped]  # never shown: only their ids are used
    return Publication(
        findings, render_summary(env, report), check.conclusion, check.title, check.summary, check.text, capped=capped
    )


class GitHubPublisher:
    """`bot.publish.Publisher` for one pull request; ``dry_run`` prints the plan instead of writing."""

    def __init__(
        self,
        repo,
        pull,
        reader,
        settings: GitHubSettings,
        env,
        fail_above: float | None,
        dry_run: bool = False,
        local: Any = None,
        stream=None,
        identity: BotIdentity | None = None,
    ):
        self.repo, self.pull, self.reader, self.identity = repo, pull, reader, identity
        self.settings, self.env, self.fail_above = settings, env, fail_above
        self.dry_run, self.local = dry_run, local
        self.stream = stream or sys.stderr
        self.result: PublishResult | None = None

    def publish(self, report: Any) -> None:
        pub = publication_from_report(report, self.env, self.fail_above)
        patches = {f.path: f.patch for f in self.reader.data.files}
        self.result = publish(
            self.repo,
            self.pull,
            pub,
            self.reader.data.head_sha,
            patches,
            self.settings,
            dry_run=self.dry_run,
            identity=self.identity,
        )
        if self.local is not None:
            self.local.publish(report)
        prefix = "dry run, nothing posted: " if self.dry_run else ""
        self.stream.write(f"{prefix}{self.reader.data.name}\n{self.result.describe()}\n")


def open_pull_request(
    spec: str,
    *,
    dry_run: bool = False,
    cfg: Any = None,
    env: Any = None,
    fmt: str = "text",
    out: str | None = None,
    environ: dict | None = None,
    settings: GitHubSettings | None = None,
):
    """The CLI hook: ``(bot.review.ReviewSource, GitHubPublisher)`` for ``OWNER/REPO#N``.

    Reads the PR (so a bad token or PR fails before any scoring) and returns a source whose diff,
    new-side contents and per-line authorship come from GitHub. With ``dry_run`` the publisher also
    writes the local report (``fmt``/``out``) and posts nothing.
    """
    from bot.github_source import PullRequestReader
    from bot.review import ReviewSource

    full_name, number = parse_pr_spec(spec)
    settings = settings or DEFAULT_SETTINGS
    gh = connect(settings, environ)
    with github_errors(f"reading {full_name}#{number}"):
        repo = gh.get_repo(full_name)
        pull = repo.get_pull(number)
        reader = PullRequestReader(repo, pull)
        diff = reader.parsed_diff()  # named by the API's filenames, not re-parsed from a header
        identity = bot_identity(repo.requester, settings, environ)
    source = ReviewSource(
        diff=diff,
        read_file=_guarded(reader.read_file, spec),
        authorship=_GuardedAuthorship(reader, spec),
        pr_labels=reader.data.labels,
        default_authored_by="ai",
        name=reader.data.name,
    )
    local = None
    if dry_run:
        from bot.publish.local import LocalPublisher

        local = LocalPublisher(fmt, env, out)
    fail_above = getattr(cfg, "fail_above", None)
    return source, GitHubPublisher(repo, pull, reader, settings, env, fail_above, dry_run, local, identity=identity)


def _guarded(fn: Callable, spec: str) -> Callable:
    def call(*args):
        with github_errors(f"reading {spec}"):
            return fn(*args)

    return call


class _GuardedAuthorship:
    def __init__(self, reader, spec: str):
        self.reader, self.spec = reader, spec

    def commits_for(self, path: str, lines: list[int]):
        with github_errors(f"reading {self.spec}"):
            return self.reader.commits_for(path, lines)
