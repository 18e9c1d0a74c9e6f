"""The runner's file protocol: step outputs (``$GITHUB_OUTPUT``), the job summary
(``$GITHUB_STEP_SUMMARY``, rendered from the ``job_summary.md.j2`` template) and the report file.
Workflow commands (``::warning ...``) are `bot.publish.actions_log`'s."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from risk_core.errors import PttrustError

if TYPE_CHECKING:
    import jinja2

    from bot.review import Report

SUMMARY_LIMIT = 1_000_000
"""GitHub rejects a step summary over 1 MiB; stay under it with room for the truncation note."""


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


def flagged_lines(report: Report) -> int:
    """Lines inside the kept findings that are above the threshold (what a reviewer is shown)."""
    return sum(len(f.lines) for f in report.findings)


def summary_markdown(
    title: str,
    report: Report,
    *,
    posted: bool,
    note: str | None,
    fail_above: float | None,
    report_path: Path,
    env: jinja2.Environment | None = None,
) -> str:
    """The job summary (job_summary.md.j2): headline figures, the findings table and where the full
    report is. ``title``: what was reviewed (the PR's or the range's title)."""
    from bot.render import make_environment, render

    text = render(
        env or make_environment(),
        "job_summary.md.j2",
        title=title,
        report=report,
        note=note,
        fail_above=fail_above,
        posted=posted,
        report_path=report_path,
        flagged_lines=flagged_lines(report),
    )
    return text.rstrip("\n")


def write_report(report: Report, fmt: str, path: Path, templates: str | None = None) -> None:
    """Render ``report`` in ``fmt`` with bot.formats (the same renderer as the CLI) and write it."""
    from bot.formats import format_report
    from bot.render import make_environment

    text = format_report(report, fmt, make_environment(templates))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
