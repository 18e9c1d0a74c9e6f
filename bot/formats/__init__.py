"""Report formats for `pttrust review --format`: each module has ``format_report(report, env) -> str``.

text (a rich table + annotated diff), markdown (the jinja2 report), json (versioned, schema in
docs/schemas/report.schema.json), sarif (2.1.0, as GitHub code scanning accepts it), rdjson / rdjsonl
(reviewdog's Diagnostic Format, so reviewdog can carry findings to GitLab, Bitbucket, Gerrit...) and
html (self-contained, jinja2).

Lines that are not scoring candidates have no risk: every format shows them as "not scored".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2

from risk_core.errors import UsageError

if TYPE_CHECKING:
    from bot.review import Report

FORMATS = ("text", "markdown", "json", "sarif", "rdjson", "rdjsonl", "html")

NOT_SCORED = "not scored"


def level(risk: float, threshold: float, fail_above: float | None, capped: bool = False) -> str:
    """A finding's severity, derived from the calibrated threshold and the gate: ``error`` when it
    trips the gate (risk above fail_above), ``warning`` for any other reported finding (risk above
    the threshold), ``note`` for a finding the comment caps left out (listed, not commented) or a
    line at or below the threshold."""
    if fail_above is not None and risk > fail_above:
        return "error"
    if capped or risk <= threshold:
        return "note"
    return "warning"


def format_report(report: Report, fmt: str, env: jinja2.Environment, *, color: bool = False, width: int = 120) -> str:
    """Render a `bot.review.Report` in one of FORMATS."""
    if fmt == "text":
        from bot.formats.text import format_report as text

        return text(report, color=color, width=width)
    if fmt == "markdown":
        from bot.formats.markdown import format_report as md

        return md(report, env)
    if fmt == "json":
        from bot.formats.json import format_report as js

        return js(report)
    if fmt == "sarif":
        from bot.formats.sarif import format_report as sarif

        return sarif(report)
    if fmt in ("rdjson", "rdjsonl"):
        from bot.formats.rdjson import format_report as rd

        return rd(report, lines=fmt == "rdjsonl")
    if fmt == "html":
        from bot.formats.html import format_report as html

        return html(report, env)
    raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
