"""Markdown report: the packaged (or team's) ``report.md.j2``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2

from bot.render import render

if TYPE_CHECKING:
    from bot.review import Report


def format_report(report: Report, env: jinja2.Environment) -> str:
    return render(env, "report.md.j2", report=report)
