"""Markdown report: the packaged (or team's) ``report.md.j2``."""

from __future__ import annotations

from typing import Any

import jinja2

from bot.render import render


def format_report(report: Any, env: jinja2.Environment) -> str:
    return render(env, "report.md.j2", report=report)
