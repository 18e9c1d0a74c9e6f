"""Publish a report as GitHub Actions workflow commands: one ``::warning file=...,line=...::`` per
finding, which the runner shows as annotations on the run page and on the PR's "Files changed" tab.

What the Action shows where nothing could be posted to the PR (a fork's read-only token, a token
without ``pull-requests: write``, a pushed range with no PR), and the one home of the workflow-command
format (`annotation`, with actions/toolkit's escaping).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from bot.review import Report

MAX_ANNOTATIONS = 50
"""GitHub shows at most 10 warning annotations per step and 50 per job; more are dropped silently."""


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
    props: list[str] = []
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


def workflow_annotations(report: Report) -> list[str]:
    """One ``::warning`` per finding (riskiest first), capped at what GitHub will display."""
    out: list[str] = []
    for f in report.findings[:MAX_ANNOTATIONS]:
        # Only latents that pushed the risk up explain it; negative contributions argue against.
        drivers = [l for l in f.latents if l.contribution > 0][:3]
        latents = ", ".join(l.label or f"latent {l.index}" for l in drivers)
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


class ActionsLogPublisher:
    """`bot.publish.Publisher` writing a report's findings as workflow commands to ``stream``."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def publish(self, report: Report) -> None:
        for line in workflow_annotations(report):
            print(line, file=self.stream)
