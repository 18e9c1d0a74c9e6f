"""The check run of one publish, with the findings as annotations in batches of 50; without
``checks: write`` (e.g. a fork's token), a commit status instead. Neither can be listed within the REST
description the bot keeps to, so after a 5xx either is simply created again (GitHub shows the latest
of a name)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.github_client import GitHubSettings, create_once, error_text
from bot.publish.markers import FINDING_RE
from bot.publish.publication import (
    ANNOTATION_MESSAGE_LIMIT,
    CHECK_OUTPUT_LIMIT,
    InlineFinding,
    Publication,
    PublishResult,
    cap_text,
)

if TYPE_CHECKING:
    from github.Repository import Repository

log = logging.getLogger(__name__)


MAX_ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per check-run create/update call


def report_check(
    repo: Repository, head_sha: str, pub: Publication, settings: GitHubSettings, result: PublishResult
) -> None:
    """A check run with annotations in batches of 50; without permission, a commit status."""
    from github import GithubException

    annotations = [_annotation(f) for f in pub.findings]
    batches = [
        annotations[i : i + MAX_ANNOTATIONS_PER_REQUEST]
        for i in range(0, len(annotations), MAX_ANNOTATIONS_PER_REQUEST)
    ] or [[]]

    def output(batch: list[dict[str, Any]]) -> dict[str, Any]:  # GitHub's JSON, as sent
        return {
            "title": pub.check_title,
            "summary": cap_text(pub.check_summary or pub.check_title, CHECK_OUTPUT_LIMIT, "in a check run's summary"),
            "text": cap_text(pub.check_text, CHECK_OUTPUT_LIMIT, "in a check run's text"),
            "annotations": batch,
        }

    # The REST description the bot keeps to lists no commit's check runs or statuses, so after a 5xx
    # neither can be looked for: it is created again (GitHub shows the latest of a name).
    try:
        run = create_once(
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
        log.info("no permission for check runs (%s); setting a commit status", error_text(err))
        state = "failure" if pub.conclusion == "failure" else "success"
        description = pub.check_title if len(pub.check_title) <= 140 else pub.check_title[:139] + "…"
        commit = repo.get_commit(head_sha)
        create_once(
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


def _annotation(f: InlineFinding) -> dict[str, Any]:
    return {
        "path": f.path,
        "start_line": f.start_line or f.line,
        "end_line": f.line,
        "annotation_level": f.annotation_level,
        "title": f"PtTrust risk {100 * f.risk:.0f}%",
        "message": cap_text(FINDING_RE.sub("", f.body).strip(), ANNOTATION_MESSAGE_LIMIT, "in an annotation")
        or f"risk {f.risk:.2f}",
    }
