"""The GitHub Action's entry (``python -m action``): event payload in, review + job summary + outputs out.

It runs the same pipeline as ``pttrust review --github OWNER/REPO#N``; what it adds is the workflow
plumbing: reading ``$GITHUB_EVENT_PATH``, the inputs (``INPUT_*``, set by action.yml), writing
``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY``, and the read-only fallback.

Security: the PR's files are read through the API as data and scored; nothing from the PR is ever
checked out, installed or executed, and the review config is read from the PR's *base* commit. That is
what makes the ``pull_request_target`` event (base repository's token and secrets, even for forks)
safe here. Checking out ``head.sha`` under ``pull_request_target`` and running anything from it is the
classic "pwn request": docs/action.md explains.

Read-only fallback: a fork's PR on ``pull_request`` gets a read-only token, and a token may also lack
pull-requests:write. Then nothing is posted; the findings become workflow-command annotations (shown on
the PR's "Files changed" tab) plus the job summary.

The pieces: `action.inputs` (the inputs), `action.base_config` (token, config from the base commit,
dispatch), `action.workflow` (outputs, job summary, report file), `action.model_info` (the cache
steps); the findings as workflow-command annotations are `bot.publish.actions_log`'s.

Exit codes: 0 done, 1 fail-above tripped or a run error, 2 usage error. Errors are one line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from action.base_config import github_env, resolve_config, resolve_dispatch
from action.event import REVIEW_ACTIONS, DispatchEvent, PullRequestEvent, RangeEvent, load_event
from action.inputs import EXTENSIONS, Inputs
from action.workflow import append_summary, flagged_lines, summary_markdown, write_outputs, write_report
from bot.publish.actions_log import ActionsLogPublisher, annotation
from bot.run import Progress, ScorerFactory
from risk_core.errors import PttrustError, UsageError

if TYPE_CHECKING:
    from bot.config import ReviewConfig
    from bot.github_client import GitHubSettings
    from bot.publish.github import GitHubPublisher, PublishIncomplete
    from bot.review import Report


@dataclass
class GitHubRun:
    """What one pass of the pipeline hands back to the entry."""

    report: Report
    posted: bool
    """True when the review/comment/check run reached the PR."""
    forbidden: str | None = None
    """Why posting was refused before anything was posted (a 403 on the first write: the token lacks
    pull-requests:write); None when it was not."""
    incomplete: PublishIncomplete | None = None
    """`bot.publish.github.PublishIncomplete` when a write failed after others had landed: an error,
    not a permission fallback (what was and was not posted is in it)."""
    review_url: str | None = None
    """Where the posted review (or summary comment) is on the PR."""


def review_pull_request(
    ref: str,
    cfg: ReviewConfig,
    *,
    publish: bool,
    fmt: str,
    out: Path,
    environ: Mapping[str, str] | None = None,
    device: str = "auto",
    scorer_factory: ScorerFactory | None = None,
    settings: GitHubSettings | None = None,
    progress: Progress | None = None,
) -> GitHubRun:
    """Fetch the PR through the API, score it, and post unless ``publish`` is False.

    ``environ`` holds ``GITHUB_TOKEN``/``GITHUB_API_URL`` (default: ``os.environ``, as for
    ``pttrust review --github``). A 403 on the first write (nothing posted) is returned in
    ``GitHubRun.forbidden`` and a failure after some writes landed in ``GitHubRun.incomplete``, not
    raised, so that the entry can still show the findings it already has.
    """
    from bot.github_source import open_pull_request
    from bot.publish import github
    from bot.render import make_environment
    from bot.run import score_source

    env = make_environment(cfg.templates)
    source, publisher = open_pull_request(
        ref,
        dry_run=not publish,
        cfg=cfg,
        env=env,
        fmt=fmt,
        out=str(out),
        environ=environ,
        settings=settings,
    )
    # scorer_factory: tests pass a deterministic double here, never product code.
    report = score_source(source, cfg, device=device, scorer_factory=scorer_factory, progress=progress)
    try:
        publisher.publish(report)
    except github.PostingForbidden as err:
        return GitHubRun(report, posted=False, forbidden=err.reason)
    except github.PublishIncomplete as err:
        return GitHubRun(report, posted=False, incomplete=err)
    return GitHubRun(report, posted=publish, review_url=_review_url(publisher) if publish else None)


def _review_url(publisher: GitHubPublisher) -> str | None:
    """The posted review's URL (else the summary comment's, else the PR's)."""
    result = publisher.result
    html = publisher.pull.html_url
    if not html:
        return None
    if result is not None and result.review_id:
        return f"{html}#pullrequestreview-{result.review_id}"
    if result is not None and result.summary_comment_id:
        return f"{html}#issuecomment-{result.summary_comment_id}"
    return html


def run(
    env: Mapping[str, str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    *,
    scorer_factory: ScorerFactory | None = None,
    github_settings: GitHubSettings | None = None,
) -> int:
    """One Action run. Returns the exit code; raises PttrustError for failures (see main).

    ``scorer_factory`` and ``github_settings`` (bot.publish.github.GitHubSettings: pacing, retries,
    check name) default to what ``pttrust review --github`` uses.
    """
    inputs = Inputs.from_env(env)
    event = load_event(env.get("GITHUB_EVENT_NAME", ""), env.get("GITHUB_EVENT_PATH"), inputs.pr_number)
    if event is None:
        print("::notice title=PtTrust::nothing to review: the push deleted its branch", file=out)
        return 0
    if event.action not in REVIEW_ACTIONS and not isinstance(event, RangeEvent):
        print(f"::notice title=PtTrust::nothing to review on a {event.event_name} '{event.action}' event", file=out)
        return 0
    if inputs.check_name:
        from bot.github_client import DEFAULT_SETTINGS

        github_settings = dataclasses.replace(github_settings or DEFAULT_SETTINGS, check_name=inputs.check_name)
    gh_env = github_env(env, inputs)
    if isinstance(event, DispatchEvent):
        event = resolve_dispatch(event, gh_env, github_settings)
    cfg = resolve_config(event, inputs, gh_env, github_settings, out)
    label = event.label if isinstance(event, PullRequestEvent) else None
    if label is not None and label not in cfg.ai_pr_labels:
        # A label the AI rules do not look at cannot change which lines are scored, nor any score.
        print(
            f"::notice title=PtTrust::label {label!r} does not change the AI rules "
            f"(ai_pr_labels: {', '.join(cfg.ai_pr_labels) or 'none'}): not re-scored",
            file=out,
        )
        return 0
    if isinstance(event, RangeEvent):
        return _run_range(event, inputs, cfg, env, gh_env, out, err, scorer_factory, github_settings)

    publish = not inputs.dry_run and not event.read_only_token
    note = None
    if event.read_only_token:
        note = (
            f"This PR comes from the fork {event.head_repo or '(deleted)'}: GitHub gives the "
            f"`pull_request` run a read-only token, so the findings are shown as annotations "
            f"and in this summary instead of a review."
        )
    elif inputs.dry_run:
        note = "Dry run: nothing was posted to the PR."

    out_dir = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "pttrust"
    report_path = out_dir / f"report.{EXTENSIONS[inputs.format]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    device = env.get("PTTRUST_DEVICE", "").strip() or "auto"  # action.yml: cuda where nvidia-smi sees a GPU

    def say(message: str) -> None:
        print(message, file=err, flush=True)

    result = review_pull_request(
        event.ref,
        cfg,
        publish=publish,
        fmt=inputs.format,
        out=report_path,
        environ=gh_env,
        device=device,
        scorer_factory=scorer_factory,
        settings=github_settings,
        progress=say,
    )
    report = result.report
    if result.incomplete is not None:
        failed = result.incomplete
        note = (
            f"Posting failed midway: posted {', '.join(failed.posted)}; not posted: "
            f"{', '.join(failed.not_posted)}. The findings are shown as annotations too."
        )
    elif result.forbidden:
        note = (
            f"The token may not post to this PR ({result.forbidden}); grant "
            f"`pull-requests: write` to get a review. Findings are shown as annotations instead."
        )

    # Annotations only where nothing reached the PR, so a normal run does not show everything twice.
    if not result.posted:
        ActionsLogPublisher(out).publish(report)

    # The publisher writes the report file too; write it here as well so that it exists whatever
    # happened to posting (a 403 may have stopped the publisher before its local write).
    write_report(report, inputs.format, report_path, cfg.templates)
    can_write = not (event.read_only_token or result.forbidden)
    return _finish(
        event, inputs, cfg, report, env, out, err, report_path, posted=result.posted, note=note,
        can_write=can_write, review_url=result.review_url, incomplete=result.incomplete,
    )  # fmt: skip


def _finish(
    event: PullRequestEvent | RangeEvent,
    inputs: Inputs,
    cfg: ReviewConfig,
    report: Report,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    report_path: Path,
    *,
    posted: bool,
    note: str | None,
    can_write: bool,
    review_url: str | None,
    incomplete: PublishIncomplete | None = None,
) -> int:
    """Outputs, job summary and the gate: the same for a PR and for a pushed range."""
    outputs = {
        "findings": str(len(report.findings)),
        "max-risk": "" if report.summary.max_risk is None else f"{report.summary.max_risk:.4f}",
        "flagged-lines": str(flagged_lines(report)),
        "report-path": str(report_path),
        "review-url": review_url or "",
        "can-write": "true" if can_write else "false",
        "sarif-path": "",
    }
    if inputs.upload_sarif:
        sarif_path = report_path.parent / "report.sarif"
        if inputs.format != "sarif":
            write_report(report, "sarif", sarif_path, cfg.templates)
        outputs["sarif-path"] = str(sarif_path)
    write_outputs(env.get("GITHUB_OUTPUT"), outputs, out)
    from bot.run import gate_skip_problem

    problem = gate_skip_problem(report, cfg)
    if problem is not None:  # the summary must not say "passes" about files the gate never saw
        note = f"{note} " if note else ""
        note += f"Gate {'**fails**' if problem[0] == 'error' else 'warning'}: {problem[1]}."
    append_summary(
        env.get("GITHUB_STEP_SUMMARY"),
        summary_markdown(
            event.title, report, posted=posted, note=note, fail_above=cfg.fail_above, report_path=report_path
        ),
    )

    if incomplete is not None:  # an error, after the summary and outputs were written
        raise incomplete
    failing = report.at_level(inputs.fail_level)
    if failing:
        message = report.level_message(inputs.fail_level, "fail-above")
        print(annotation("error", message, title="PtTrust gate"), file=out)
        print(f"error: {message}", file=err)
        return 1
    if problem is not None:
        level, message = problem
        print(annotation(level, message, title="PtTrust gate"), file=out)
        print(f"{level}: {message}", file=err)
        if level == "error":
            return 1
    return 0


def _run_range(
    event: RangeEvent,
    inputs: Inputs,
    cfg: ReviewConfig,
    env: Mapping[str, str],
    gh_env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    scorer_factory: ScorerFactory | None,
    settings: GitHubSettings | None,
) -> int:
    """A push or merge group: score the range, report it (annotations, summary, outputs), gate."""
    from bot.github_range import open_range
    from bot.run import score_source

    def say(message: str) -> None:
        print(message, file=err, flush=True)

    source = open_range(event.full_name, event.base_sha, event.head_sha, environ=gh_env, settings=settings)
    device = env.get("PTTRUST_DEVICE", "").strip() or "auto"
    report = score_source(source, cfg, device=device, scorer_factory=scorer_factory, progress=say)
    ActionsLogPublisher(out).publish(report)
    out_dir = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "pttrust"
    report_path = out_dir / f"report.{EXTENSIONS[inputs.format]}"
    write_report(report, inputs.format, report_path, cfg.templates)
    note = f"A {event.event_name} run: the range {event.base_sha[:7]}...{event.head_sha[:7]} is shown as annotations."
    return _finish(
        event, inputs, cfg, report, env, out, err, report_path, posted=False, note=note,
        can_write=not inputs.dry_run, review_url=None,
    )  # fmt: skip


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``python -m action [model-info]``: one-line errors, exit 2 for usage errors, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    try:
        if argv == ["model-info"]:
            from action.model_info import model_info

            return model_info(env)
        if argv:
            raise UsageError(f"unknown arguments {' '.join(argv)!r}; usage: python -m action [model-info]")
        return run(env)
    except PttrustError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        # Both forms: the annotation shows on the run page, the plain line in the log.
        print(annotation("error", message, title="PtTrust"), flush=True)
        print(f"error: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
