"""Publish a report locally: to ``--out FILE`` or stdout, in any of `bot.formats.FORMATS`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import jinja2

from bot.formats import format_report
from risk_core.atomic import write_atomic

if TYPE_CHECKING:
    from bot.review import Report


class LocalPublisher:
    def __init__(
        self,
        fmt: str,
        env: jinja2.Environment,
        out: str | Path | None = None,
        stream: TextIO | None = None,
        color: bool | None = None,
        width: int | None = None,
    ):
        self.fmt = fmt
        self.env = env
        self.out = Path(out) if out is not None and str(out) != "-" else None
        self.stream = stream or sys.stdout
        # Colour only for a terminal; files and pipes get plain text.
        self.color = (self.out is None and self.stream.isatty()) if color is None else color
        self.width = width or (120 if self.out is not None else None)

    def publish(self, report: Report) -> None:
        width = self.width
        if width is None:
            try:
                width = max(80, os.get_terminal_size(self.stream.fileno()).columns)
            except (OSError, ValueError, AttributeError):
                width = 120
        text = format_report(report, self.fmt, self.env, color=self.color, width=width)
        if self.out is None:
            self.stream.write(text)
            self.stream.flush()
            return
        write_atomic(self.out, text)
