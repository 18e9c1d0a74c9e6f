"""The GitHub event payload the Action runs on, reduced to the few facts the review needs.

GitHub writes the webhook payload that triggered the workflow to the file named by
``$GITHUB_EVENT_PATH`` and the event's name to ``$GITHUB_EVENT_NAME``. Reviewed:

- ``pull_request`` / ``pull_request_target``: the PR (`PullRequestEvent`);
- ``workflow_dispatch``: the PR whose number the ``pr-number`` input (or the dispatch's ``pr`` /
  ``pr-number`` input) names (`DispatchEvent`, resolved through the API);
- ``push`` and ``merge_group``: the pushed range, ``before...after`` or the merge group's
  ``base_sha...head_sha`` (`RangeEvent`): scored and reported (annotations, job summary, outputs,
  gate) without a PR to post a review on.

Every other event is a usage error (exit 2) so that a mis-wired workflow says so instead of silently
passing.
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
RANGE_EVENTS = ("push", "merge_group")
"""Events that name a range of commits (no pull request)."""
DISPATCH_EVENTS = ("workflow_dispatch",)
"""Events run by hand, with the PR number as an input."""
EVENTS = PR_EVENTS + RANGE_EVENTS + DISPATCH_EVENTS

REVIEW_ACTIONS = ("opened", "synchronize", "reopened", "labeled", "unlabeled", "ready_for_review", "dispatched")
"""Activity types that may change what should be reviewed. ``labeled``/``unlabeled`` matter only
when the label is one of the AI rules' labels (``ai_pr_labels``, ``ai-generated`` by default): it
marks every added line as AI-written; any other label is skipped without re-scoring (the entry
checks, once it has the config). Other activity types (``closed``, ``edited``, ``assigned``...) are
skipped with a notice, not an error: a workflow that listens to them for other jobs should not fail
here. ``dispatched`` is a `workflow_dispatch` run."""

ZERO_SHA = "0" * 40


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
    label: str | None = None
    """The label added or removed, on a ``labeled``/``unlabeled`` event."""

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def title(self) -> str:
        """For the job summary: ``#42 (9f1c3a7)``."""
        return f"#{self.number} ({self.head_sha[:7]})"

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


@dataclass(frozen=True)
class RangeEvent:
    """A ``push`` or ``merge_group``: review ``base_sha...head_sha`` of the repository."""

    event_name: str
    owner: str
    repo: str
    base_sha: str
    """The range's base (push: ``before``, or the default branch for a new branch)."""
    head_sha: str
    """The range's head (push: ``after``; merge group: its ``head_sha``)."""
    ref: str
    """The pushed ref or the merge group's head ref (for messages)."""
    action: str = "range"
    read_only_token: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def title(self) -> str:
        return f"{self.event_name} {self.base_sha[:7]}...{self.head_sha[:7]}"


@dataclass(frozen=True)
class DispatchEvent:
    """A ``workflow_dispatch``: review pull request ``number`` (resolved through the API)."""

    owner: str
    repo: str
    number: int
    event_name: str = "workflow_dispatch"
    action: str = "dispatched"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"


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
    label = _get(payload, "label", "name")
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
        label=str(label) if label else None,
    )


def pull_request_from_api(owner: str, repo: str, pr: Mapping[str, Any]) -> PullRequestEvent:
    """A `PullRequestEvent` for a PR read through the API (``pulls/get`` JSON), for
    ``workflow_dispatch`` runs."""
    payload = {"action": "dispatched", "pull_request": dict(pr), "repository": {"full_name": f"{owner}/{repo}"}}
    return parse_event("pull_request", payload)


def _owner_repo(event_name: str, payload: Mapping[str, Any]) -> tuple[str, str]:
    full = _get(payload, "repository", "full_name")
    owner, _, repo = str(full or "").partition("/")
    if not owner or not repo:
        raise UsageError(f"the {event_name} payload lacks repository.full_name")
    return owner, repo


def parse_range(event_name: str, payload: Mapping[str, Any]) -> RangeEvent | None:
    """The range a push or merge group names; None when there is nothing to review (a deleted
    branch)."""
    owner, repo = _owner_repo(event_name, payload)
    if event_name == "merge_group":
        group = payload.get("merge_group")
        base, head, ref = _get(group, "base_sha"), _get(group, "head_sha"), _get(group, "head_ref")
        if not base or not head:
            raise UsageError("the merge_group payload lacks merge_group.base_sha or head_sha")
        return RangeEvent(event_name, owner, repo, str(base), str(head), str(ref or ""))
    before, after = payload.get("before"), payload.get("after")
    if not before or not after:
        raise UsageError("the push payload lacks before or after")
    if payload.get("deleted") or after == ZERO_SHA:
        return None
    if before == ZERO_SHA:
        # A new branch: review what it adds over the default branch.
        default = _get(payload, "repository", "default_branch")
        if not default:
            raise UsageError("the push payload of a new branch lacks repository.default_branch")
        before = str(default)
    return RangeEvent(event_name, owner, repo, str(before), str(after), str(payload.get("ref") or ""))


def parse_dispatch(payload: Mapping[str, Any], pr_number: str = "") -> DispatchEvent:
    """The PR a ``workflow_dispatch`` names: the ``pr-number`` input, else the dispatch's own
    ``pr`` / ``pr-number`` / ``pull_request`` input."""
    owner, repo = _owner_repo("workflow_dispatch", payload)
    given = payload.get("inputs")
    inputs: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    raw = (pr_number or "").strip() or next(
        (str(inputs[k]).strip() for k in ("pr-number", "pr", "pull_request", "pr_number") if inputs.get(k)), ""
    )
    if not raw:
        raise UsageError("workflow_dispatch needs the PR to review: set the action's pr-number input")
    if not raw.lstrip("#").isdigit() or int(raw.lstrip("#")) < 1:
        raise UsageError(f"input pr-number must be a pull request number, got {raw!r}")
    return DispatchEvent(owner, repo, int(raw.lstrip("#")))


def load_event(
    event_name: str, path: str | None, pr_number: str = ""
) -> PullRequestEvent | RangeEvent | DispatchEvent | None:
    """Read and parse ``$GITHUB_EVENT_PATH``; every failure is a one-line UsageError. None: a push
    that leaves nothing to review (a deleted branch)."""
    if event_name not in EVENTS:
        raise UsageError(
            f"the pttrust action reviews pull requests and pushed ranges: run it on "
            f"{', '.join(EVENTS)}, not on {event_name or 'an unnamed event'!r}"
        )
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
    if event_name in RANGE_EVENTS:
        return parse_range(event_name, payload)
    if event_name in DISPATCH_EVENTS:
        return parse_dispatch(payload, pr_number)
    return parse_event(event_name, payload)
