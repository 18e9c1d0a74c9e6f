"""Whose hidden markers count, and the markers themselves.

Idempotence rests on hidden markers, and only the bot's own markers count: a marker is read only from
a comment authored by the bot's identity (`BotIdentity`: the token's user from GET /user, or for an App
or Actions token, which GET /user refuses, the configured login, by default ``github-actions[bot]``),
and it carries ``sig=``, an HMAC over (repository, PR number, marker kind, finding id) keyed by a secret
only the bot's run has (``$PTTRUST_MARKER_SECRET``, else a key derived from the token). Anyone else
pasting a marker into a comment steers nothing. With a configured secret, or a long-lived token (a
PAT), a bot-authored marker whose signature does not verify is ignored too; with a short-lived App or
Actions token (``ghs_``) and no secret, the author is the check (that token changes every run).

A job's markers are named (`Marks.name`, the ``marker`` setting): ``<!-- pttrust:finding=... -->`` by
default, ``<!-- pttrust@NAME:finding=... -->`` for a named job, so two jobs reviewing one repository (a
monorepo's backend and frontend) each find, update and resolve only their own comments.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.github_client import DEFAULT_SETTINGS, GitHubSettings
from bot.publish.publication import BODY_LIMIT, InlineFinding, cap_text

if TYPE_CHECKING:
    from github.IssueComment import IssueComment
    from github.PullRequest import PullRequest
    from github.PullRequestComment import PullRequestComment
    from github.PullRequestReview import PullRequestReview
    from github.Requester import Requester

log = logging.getLogger(__name__)


MARKER_SECRET_ENV = "PTTRUST_MARKER_SECRET"
"""A secret that keys the markers' HMAC (e.g. a repository secret); without it, a key from the token."""


BOT_LOGIN_ENV = "PTTRUST_BOT_LOGIN"
"""The bot's login where GET /user is refused (a GitHub App: ``<app-slug>[bot]``)."""


ACTIONS_LOGIN = "github-actions[bot]"
"""Who an Actions ``GITHUB_TOKEN`` posts as (GET /user answers it 403)."""


_SHORT_LIVED_TOKEN_PREFIXES = ("ghs_",)
"""App installation and Actions tokens: they expire within hours, so a key from one cannot verify
markers from an earlier run."""


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

    def authored(self, obj: IssueComment | PullRequestComment | PullRequestReview) -> bool:
        """Whether the bot wrote ``obj`` (a comment or review; a deleted user has no login)."""
        login = obj.user.login if obj.user is not None else None
        return bool(login) and login.lower() == self.login.lower()

    def verified(self, repo: str, number: int, kind: str, value: str, sig: str | None) -> bool:
        if sig and hmac.compare_digest(sig, self.sign(repo, number, kind, value)):
            return True
        return not self.strict


def bot_identity(
    requester: Requester, settings: GitHubSettings | None = None, env: Mapping[str, str] | None = None
) -> BotIdentity:
    """The identity of the token ``requester`` (a PyGithub Requester) authenticates with."""
    from github import GithubException
    from github.Auth import Token
    from github.AuthenticatedUser import AuthenticatedUser

    settings = settings or DEFAULT_SETTINGS
    env = os.environ if env is None else env
    # An anonymous requester has no auth; a token auth (the only kind `connect` makes) has .token.
    auth = requester.auth
    token = auth.token if isinstance(auth, Token) else ""
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


FINDING_RE = re.compile(r"<!-- pttrust(?:@[A-Za-z0-9_.-]+)?:finding=[0-9a-f]+(?: sig=[0-9a-f]*)? -->")
"""Any job's finding marker (to strip one from a text shown elsewhere, e.g. an annotation)."""
SIG_RE = re.compile(r" sig=[0-9a-f]*(?= -->)")


@dataclass(frozen=True)
class Marks:
    """The markers of one pull request, written and read as `BotIdentity` ``ident``'s only, and only
    those of this job's ``name`` (empty: the default, unnamed markers)."""

    ident: BotIdentity
    repo: str
    number: int
    name: str = ""
    """The job's marker name (``ReviewConfig.marker``, checked there); another name's markers are
    another job's."""

    @property
    def _prefix(self) -> str:
        return "<!-- pttrust" + (f"@{self.name}" if self.name else "") + ":"

    @property
    def _finding_re(self) -> re.Pattern[str]:
        return re.compile(re.escape(self._prefix) + r"finding=([0-9a-f]+)(?: sig=([0-9a-f]*))? -->")

    @property
    def resolved_marker(self) -> str:
        return f"{self._prefix}resolved -->"

    def is_resolved(self, body: str) -> bool:
        return self.resolved_marker in body

    def finding_marker(self, fid: str) -> str:
        return f"{self._prefix}finding={fid} sig={self.ident.sign(self.repo, self.number, 'finding', fid)} -->"

    def finding_id(self, body: str) -> str:
        """The finding id in a comment this job wrote (each one carries its marker)."""
        found = self._finding_re.search(body)
        assert found is not None, "a bot comment without a finding marker"
        return found.group(1)

    def summary_marker(self, head_sha: str, check_hash: str, run_id: int | None) -> str:
        sig = self.ident.sign(self.repo, self.number, "summary", "")
        return f"{self._prefix}summary head={head_sha} check={check_hash} run={run_id or ''} sig={sig} -->"

    def comment_body(self, finding: InlineFinding, fid: str) -> str:
        marker = self.finding_marker(fid)
        body = cap_text(finding.body.rstrip(), BODY_LIMIT - len(marker) - 2, "in a comment", BODY_LIMIT)
        return f"{body.rstrip()}\n\n{marker}"

    def resolved_body(self, old: str, head_sha: str) -> str:
        """A resolved comment: the original folded away, this job's resolved and finding markers."""
        found = self._finding_re.search(old)
        assert found is not None, "a bot comment without a finding marker"
        marker = found.group(0)
        original = cap_text(
            self._finding_re.sub("", old).strip(), BODY_LIMIT - 400 - len(marker), "in a comment", BODY_LIMIT
        )
        return (
            f"**Resolved**: PtTrust no longer flags this as of {head_sha[:7]}.\n\n"
            f"<details><summary>Original comment</summary>\n\n{original}\n\n</details>\n\n"
            f"{self.resolved_marker}\n{marker}"
        )

    def review_comments(self, pull: PullRequest) -> dict[str, PullRequestComment]:
        """The bot's review comments carrying a valid finding marker of this job, by finding id (the
        first wins). A marker in anybody else's comment, or one whose signature fails, is ignored."""
        out: dict[str, PullRequestComment] = {}
        pattern = self._finding_re
        for comment in pull.get_review_comments():
            m = pattern.search(comment.body or "")
            if not m or m.group(1) in out or not self.ident.authored(comment):
                continue
            if self.ident.verified(self.repo, self.number, "finding", m.group(1), m.group(2)):
                out[m.group(1)] = comment
            else:
                log.info("ignoring review comment %s: its marker's signature does not verify", comment.id)
        return out

    def summary(self, pull: PullRequest) -> tuple[IssueComment | None, dict[str, str]]:
        """The bot's summary issue comment of this job and its marker's fields ((None, {}) when there
        is none)."""
        pattern = re.compile(re.escape(self._prefix) + r"summary(?P<meta>[^>]*)-->")
        for comment in pull.get_issue_comments():
            m = pattern.search(comment.body or "")
            if not m or not self.ident.authored(comment):
                continue
            meta = dict(kv.split("=", 1) for kv in m.group("meta").split() if "=" in kv)
            if self.ident.verified(self.repo, self.number, "summary", "", meta.get("sig")):
                return comment, meta
        return None, {}
