"""The one way the bot talks to GitHub: a PyGithub client authenticated from the environment, retrying
rate limits and 5xx (`connect`), never re-sending a create GitHub may have carried out
(`create_once`), and PyGithub/requests failures as one-line errors (`github_errors`).

Used by both halves: reading a pull request or a pushed range (`bot.github_source`,
`bot.github_range`, the Action's config read) and publishing (`bot.publish.github`). The token is read
from the environment and never printed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from risk_core.errors import PttrustError, UsageError

if TYPE_CHECKING:
    from github import Github, GithubException

    from bot.select import CommitInfo, LineAuthorship

log = logging.getLogger(__name__)


T = TypeVar("T")


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
    marker: str = ""
    """Name of this job's hidden markers (`bot.publish.markers.Marks`; empty: the unnamed default), so
    that two jobs reviewing one repository each update only their own comments."""


DEFAULT_SETTINGS = GitHubSettings()
"""Used wherever no settings are passed (tests swap in one without pacing or backoff)."""


def parse_pr_spec(spec: str) -> tuple[str, int]:
    """``OWNER/REPO#N`` -> ("OWNER/REPO", N); UsageError otherwise."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#([0-9]+)", spec.strip())
    if not m or int(m.group(2)) < 1:
        raise UsageError(f"--github expects OWNER/REPO#N, got {spec!r}")
    return m.group(1), int(m.group(2))


def connect(settings: GitHubSettings | None = None, env: Mapping[str, str] | None = None) -> Github:
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
            # create_once can look before creating again.
            if (
                error is not None
                and method is not None
                and method.upper() == "POST"
                and not self._is_connection_error(error)
            ):
                raise reraise(type(error), error, _stacktrace)
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return CreateOnceRetry


def create_once(create: Callable[[], T], find: Callable[[], T | None] | None, what: str) -> T:
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


def error_text(err: GithubException) -> str:
    data = err.data if isinstance(err.data, dict) else {}
    errors = data.get("errors") or []
    text = "; ".join(e if isinstance(e, str) else str(e.get("message", e)) for e in errors)
    return text or data.get("message") or f"HTTP {err.status}"


def permission_refusal(err: BaseException) -> str | None:
    """``HTTP 403: message`` when ``err`` is GitHub refusing a request for lack of permission (not a
    primary rate limit, which PyGithub raises as RateLimitExceededException)."""
    from github import GithubException, RateLimitExceededException

    if isinstance(err, GithubException) and not isinstance(err, RateLimitExceededException) and err.status == 403:
        message = err.data.get("message") if isinstance(err.data, dict) else None
        return f"HTTP 403: {message or 'forbidden'}"
    return None


R = TypeVar("R")


def guarded(fn: Callable[[str], R], spec: str) -> Callable[[str], R]:
    """``fn`` (a reader of one path) with its GitHub failures as one-line errors about ``spec``."""

    def call(path: str) -> R:
        with github_errors(f"reading {spec}"):
            return fn(path)

    return call


class GuardedAuthorship:
    """A `bot.select.LineAuthorship` whose GitHub failures are one-line errors about ``spec``."""

    def __init__(self, reader: LineAuthorship, spec: str):
        self.reader, self.spec = reader, spec

    def commits_for(self, path: str, lines: list[int]) -> dict[int, CommitInfo | None]:
        with github_errors(f"reading {self.spec}"):
            return self.reader.commits_for(path, lines)
