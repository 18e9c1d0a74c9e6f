"""What one run publishes on a pull request, independent of how it was scored or rendered
(`InlineFinding`, `Publication`), built from a `bot.review.Report` (`publication_from_report`), what
came of it (`PublishResult`), and GitHub's size limits (`cap_text`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

    from bot.rank import Finding
    from bot.review import Report


BODY_LIMIT = 65536
"""GitHub's limit, in characters, on an issue comment's, review's or review comment's body."""


CHECK_OUTPUT_LIMIT = 65535
"""GitHub's limit, in characters, on a check run's output.summary and output.text."""


ANNOTATION_MESSAGE_LIMIT = 64000
"""GitHub's limit on an annotation's message (64 KB)."""


@dataclass(frozen=True)
class InlineFinding:
    """One finding to comment on, independent of how it was scored or rendered."""

    path: str
    line: int
    """New-side (RIGHT) line the comment ends on."""
    start_line: int | None
    """First line of a multi-line finding; None for one line."""
    risk: float
    line_text: str
    """Text of the finding's lines (joined by newlines): its identity across pushes."""
    body: str
    """Rendered comment markdown, without the marker."""
    kind: str = "risk"
    """What was found; part of the identity (a different kind on the same line is a new comment)."""
    annotation_level: str = "warning"
    """Check-run annotation level: notice | warning | failure."""


@dataclass
class Publication:
    """Everything one run publishes. Built from a `bot.review.Report` by `publication_from_report`."""

    findings: list[InlineFinding]
    summary: str
    """Summary markdown (the packaged summary.md.j2), without marker."""
    conclusion: str
    """Check conclusion: failure (gate tripped) | neutral (findings) | success."""
    check_title: str
    check_summary: str
    check_text: str = ""
    review_body: str | None = None
    """Body of the review holding the new comments (None: a short table of them)."""
    capped: list[InlineFinding] = field(default_factory=list[InlineFinding])
    """Findings flagged but left out by the comment caps. Only their identity (path, line, line text,
    kind) is used: a comment already on one is neither posted, resolved nor reopened."""


def finding_ids(findings: list[InlineFinding]) -> list[str]:
    """Stable ids: hash(path, line text, kind, occurrence among identical ones in line order)."""
    seen: dict[tuple[str, str, str], int] = {}
    ids = [""] * len(findings)
    for i in sorted(range(len(findings)), key=lambda i: (findings[i].path, findings[i].line)):
        f = findings[i]
        key = (f.path, f.line_text, f.kind)
        n = seen[key] = seen.get(key, -1) + 1
        ids[i] = hashlib.sha256("\0".join([f.path, f.line_text, f.kind, str(n)]).encode()).hexdigest()[:20]
    return ids


@dataclass
class PublishResult:
    head_sha: str
    posted: list[InlineFinding] = field(default_factory=list[InlineFinding])
    already_commented: list[InlineFinding] = field(default_factory=list[InlineFinding])
    rejected: list[tuple[InlineFinding, str]] = field(default_factory=list[tuple[InlineFinding, str]])
    """Findings that could not be inline comments, with why (they are listed in the summary)."""
    resolved_comment_ids: list[int] = field(default_factory=list[int])
    reopened_comment_ids: list[int] = field(default_factory=list[int])
    review_id: int | None = None
    summary_comment_id: int | None = None
    summary_action: str = "none"
    """created | edited | unchanged | none (dry run)."""
    check_run_id: int | None = None
    check_action: str = "none"
    """check-run | status | unchanged | none."""
    annotation_requests: int = 0

    def describe(self) -> str:
        lines = [
            f"review: {len(self.posted)} new comment(s), {len(self.already_commented)} already there, "
            f"{len(self.rejected)} moved to the summary, {len(self.resolved_comment_ids)} resolved",
            f"summary: {self.summary_action}",
            f"check: {self.check_action}",
        ]
        return "\n".join(lines)


def publication_from_report(report: Report, env: jinja2.Environment, fail_above: float | None) -> Publication:
    """A `bot.review.Report` rendered with the packaged templates (`bot.render`)."""
    from bot.render import render_check, render_comment, render_summary

    check = render_check(env, report, fail_above)

    def inline(f: Finding, body: str) -> InlineFinding:
        text = "\n".join(l.text for l in f.lines)
        level = "failure" if fail_above is not None and f.risk > fail_above else "warning"
        return InlineFinding(
            path=f.path,
            line=f.end_line,
            start_line=f.start_line if f.end_line > f.start_line else None,
            risk=f.risk,
            line_text=text,
            body=body,
            annotation_level=level,
        )

    findings = [inline(f, render_comment(env, f, report)) for f in report.findings]
    capped = [inline(f, "") for f in report.capped]  # never shown: only their ids are used
    return Publication(
        findings, render_summary(env, report), check.conclusion, check.title, check.summary, check.text, capped=capped
    )


def cap_text(text: str, limit: int, where: str = "here", github_limit: int | None = None) -> str:
    """``text`` cut at a line boundary to at most ``limit`` characters, ending in an explicit
    "N more line(s)…" line when anything was cut (GitHub rejects a longer body outright).
    ``github_limit``: GitHub's limit for the whole body, when ``limit`` is this part's share of it."""
    shown = github_limit or limit
    if len(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        note = _cut_note(len(lines) - i, shown, where)
        if size + len(line) + len(note) > limit:
            break
        kept.append(line)
        size += len(line)
    note = _cut_note(len(lines) - len(kept), shown, where)
    head = "".join(kept)
    if not kept:  # one line longer than the limit: cut inside it
        head = text[: max(0, limit - len(note) - 1)] + "\n"
    elif not head.endswith("\n"):
        head += "\n"
    return (head + note)[:limit]


def _cut_note(n: int, limit: int, where: str) -> str:
    return f"\n… {n} more line(s) not shown: GitHub allows {limit:,} characters {where}; the full report has them.\n"


def review_body(findings: list[InlineFinding], env: jinja2.Environment) -> str:
    """The review's body: a short table of the comments it holds (review.md.j2)."""
    from bot.render import render

    return render(env, "review.md.j2", findings=findings)


def publication_notes(result: PublishResult, env: jinja2.Environment) -> str:
    """What only the publisher knows, for the summary comment (summary_notes.md.j2): findings that
    could not be inline comments, resolved ones, a commit status instead of a check run."""
    from bot.render import render

    return render(env, "summary_notes.md.j2", result=result)
