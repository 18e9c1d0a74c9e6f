"""The Action's inputs (``INPUT_*``, set by action.yml), validated into `Inputs`: an empty input means
"not given", so the base commit's config or the default decides."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import FILTER_MODES, authored_by_problem, is_authored_by
from risk_core.errors import UsageError

FORMATS = ("json", "markdown", "sarif", "rdjson", "rdjsonl", "html", "text")
"""Report formats (bot.formats); the extension of report-path follows the format."""
EXTENSIONS = {
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
    marker: str | None = None
    """Name of this job's comment markers (`bot.config.ReviewConfig.marker`): one per job of a monorepo."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        """Validate the action's inputs; an empty input means "not given" (config or default)."""

        def raw(name: str) -> str:
            return env.get(f"INPUT_{name.upper().replace('-', '_')}", "").strip()

        def probability(name: str) -> float | None:
            text = raw(name)
            if not text:
                return None
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"input {name} must be a number, got {text!r}") from None
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise UsageError(f"input {name} must be between 0 and 1, got {text!r}")
            return value

        def count(name: str) -> int | None:
            text = raw(name)
            if not text:
                return None
            try:
                value = int(text)
            except ValueError:
                raise UsageError(f"input {name} must be an integer, got {text!r}") from None
            if value < 0:
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
        if authored_by is not None and not is_authored_by(authored_by):
            raise UsageError(f"input authored-by {authored_by_problem(authored_by)}")
        on_skip = raw("on-skip") or None
        if on_skip not in (None, "fail", "warn"):
            raise UsageError(f"input on-skip must be 'fail' or 'warn', got {on_skip!r}")
        token = raw("github-token") or env.get("GITHUB_TOKEN", "")
        fail_level = raw("fail-level") or "error"
        if fail_level not in FAIL_LEVELS:
            raise UsageError(f"input fail-level must be one of {', '.join(FAIL_LEVELS)}, got {fail_level!r}")
        filter_mode = raw("filter-mode") or None
        if filter_mode is not None and filter_mode not in FILTER_MODES:
            raise UsageError(f"input filter-mode must be added, diff_context or file, got {filter_mode!r}")
        paths = tuple(p.strip() for p in raw("paths").replace(",", "\n").splitlines() if p.strip())
        return cls(
            token=token,
            model=raw("model") or None,
            bundle=raw("bundle") or None,
            threshold=probability("threshold"),
            max_comments=count("max-comments"),
            fail_above=probability("fail-above"),
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
            marker=raw("marker") or None,
        )
