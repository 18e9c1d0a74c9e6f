"""The GitHub event payload the Action runs on, reduced to the few facts the review needs.

GitHub writes the webhook payload that triggered the workflow to the file named by
``$GITHUB_EVENT_PATH`` and the event's name to ``$GITHUB_EVENT_NAME``. Only pull-request events make
sense for a review; everything else is a usage error (exit 2) so that a mis-wired workflow says so
instead of silently passing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from risk_core.errors import UsageError

PR_EVENTS = ("pull_request", "pull_request_target")
"""Events whose payload carries a ``pull_request`` object that we can review."""

REVIEW_ACTIONS = ("opened", "synchronize", "reopened", "labeled", "ready_for_review")
"""Activity types that may change what should be reviewed. ``labeled`` matters because a label
(``ai-generated`` by default) can mark every added line as AI-written. Other activity types
(``closed``, ``edited``, ``assigned``...) are skipped with a notice, not an error: a workflow that
listens to them for other jobs should not fail here."""


@dataclass(frozen=True)
class PullRequestEvent:
    event_name: str
    """``pull_request`` or ``pull_request_target``."""
    action: str
    """The activity type (``opened``, ``synchronize``...)."""
    owner: str
    """Owner of the base repository (where the PR lives and where reviews are posted)."""
    repo: str
    """Name of the base repository."""
    number: int
    """The pull request number."""
    base_sha: str
    """Commit the PR is compared against."""
    head_sha: str
    """The PR's head commit: the one reviewed, commented on and given a check run."""
    head_repo: str | None
    """``owner/name`` of the repository the head branch lives in (None: a deleted fork)."""
    labels: tuple[str, ...]
    """The PR's label names at the time of the event."""
    draft: bool
    """Whether the PR is a draft."""

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def ref(self) -> str:
        """What ``pttrust review --github`` takes: ``OWNER/REPO#N``."""
        return f"{self.owner}/{self.repo}#{self.number}"

    @property
    def from_fork(self) -> bool:
        """True when the head branch lives outside the base repository.

        On a ``pull_request`` event GitHub then hands the workflow a read-only token and no secrets,
        so nothing can be posted. (A deleted fork leaves ``head.repo`` null: also a fork.)
        """
        return self.head_repo is None or self.head_repo.lower() != self.full_name.lower()

    @property
    def read_only_token(self) -> bool:
        """Whether GitHub gives this run a token that cannot write to the PR.

        ``pull_request_target`` runs in the base repository's context with its token even for forks;
        that is safe here only because the Action never checks out or runs the PR's code.
        """
        return self.event_name == "pull_request" and self.from_fork


def _get(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...`` or None when any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def parse_event(event_name: str, payload: Mapping[str, Any]) -> PullRequestEvent:
    """The review-relevant facts of a pull-request payload; UsageError for anything else."""
    if event_name not in PR_EVENTS:
        raise UsageError(
            f"the pttrust action reviews pull requests: run it on "
            f"{' or '.join(PR_EVENTS)}, not on {event_name or 'an unnamed event'!r}"
        )
    pr = payload.get("pull_request") if isinstance(payload, Mapping) else None
    if not isinstance(pr, Mapping):
        raise UsageError(f"the {event_name} payload has no pull_request object")
    base_full = _get(pr, "base", "repo", "full_name") or _get(payload, "repository", "full_name")
    number = pr.get("number", payload.get("number"))
    base_sha, head_sha = _get(pr, "base", "sha"), _get(pr, "head", "sha")
    missing = [
        name
        for name, value in (
            ("base.repo.full_name", base_full),
            ("number", number),
            ("base.sha", base_sha),
            ("head.sha", head_sha),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"the {event_name} payload lacks pull_request {', '.join(missing)}")
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
        raise UsageError(f"the {event_name} payload has an invalid pull request number {number!r}")
    owner, _, repo = str(base_full).partition("/")
    if not owner or not repo:
        raise UsageError(f"the {event_name} payload has an invalid repository name {base_full!r}")
    labels = tuple(l["name"] for l in pr.get("labels") or () if isinstance(l, Mapping) and l.get("name"))
    return PullRequestEvent(
        event_name=event_name,
        action=str(payload.get("action") or ""),
        owner=owner,
        repo=repo,
        number=number,
        base_sha=str(base_sha),
        head_sha=str(head_sha),
        head_repo=_get(pr, "head", "repo", "full_name"),
        labels=labels,
        draft=bool(pr.get("draft")),
    )


def load_event(event_name: str, path: str | None) -> PullRequestEvent:
    """Read and parse ``$GITHUB_EVENT_PATH``; every failure is a one-line UsageError."""
    if not path:
        raise UsageError(
            "GITHUB_EVENT_PATH is not set: run the action inside a GitHub workflow "
            "(or use `pttrust review --github OWNER/REPO#N` locally)"
        )
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"event payload not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the event payload {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"event payload {path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(payload, dict):
        raise UsageError(f"event payload {path} is not a JSON object")
    return parse_event(event_name, payload)
