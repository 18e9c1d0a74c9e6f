"""Report formats for `pttrust review --format`: each module has ``format_report(report, env) -> str``.

text (a rich table + annotated diff), markdown (the jinja2 report), json, sarif (2.1.0, as GitHub
code scanning accepts it) and html (self-contained, jinja2).
"""

from __future__ import annotations

from typing import Any

import jinja2

from risk_core.errors import UsageError

FORMATS = ("text", "markdown", "json", "sarif", "html")


def format_report(report: Any, fmt: str, env: jinja2.Environment, *, color: bool = False, width: int = 120) -> str:
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
    if fmt == "html":
        from bot.formats.html import format_report as html

        return html(report, env)
    raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
