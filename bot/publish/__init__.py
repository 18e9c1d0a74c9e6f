"""Where a `bot.review.Report` goes: `local` (a file or stdout) and `github` (the GitHub half).

These are the only bot modules that write anywhere. A publisher is any object with
``publish(report) -> None``; the CLI picks one and calls it once per review.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.review import Report


class Publisher(Protocol):
    def publish(self, report: Report) -> None:
        """Deliver one report (a `bot.review.Report`). Raise PttrustError on failure."""
        ...
