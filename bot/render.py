"""jinja2 templates for everything a person reads: review comments, the review's body, the summary
comment and its notes, the check run's output, the Action's job summary and the HTML report.

Templates live in ``bot/templates``; a team overrides any of them by putting a file of the same
name in its own directory (``--templates DIR`` or ``templates:`` in .pttrust.yml). Lookup falls
back to the packaged template for every name the team did not override.

Templates get plain data: a `bot.rank.Finding`, a `bot.review.Report`, and the helpers below as
filters (``risk_pct``, ``risk_level``, ``latent_label``, ``rank_phrase``, ``contribution``,
``ordinal``, ``where``, and ``cell``, the one escaping for markdown table cells). The latents a
finding carries are already its *reasons* (`bot.rank.reasons`): they push the risk up and have a
clear description.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from risk_core.errors import UsageError

if TYPE_CHECKING:
    from bot.publish.publication import InlineFinding
    from bot.rank import Finding
    from bot.review import Report
    from risk_core.types import LatentContribution

PACKAGED = Path(__file__).parent / "templates"

TEMPLATES = (
    "comment.md.j2",
    "summary.md.j2",
    "summary_notes.md.j2",
    "review.md.j2",
    "check.md.j2",
    "job_summary.md.j2",
    "report.md.j2",
    "report.html.j2",
)
"""The names a team can override."""


def risk_pct(risk: float | None) -> str:
    return "n/a" if risk is None else f"{100 * risk:.0f}%"


def risk_level(risk: float | None) -> str:
    """A word for a risk, used in comment titles and as a CSS class."""
    if risk is None:
        return "none"
    if risk >= 0.8:
        return "high"
    if risk >= 0.5:
        return "medium"
    if risk >= 0.2:
        return "low"
    return "minimal"


def latent_label(latent: LatentContribution) -> str:
    """``#1234 "label"`` or ``#1234`` when the latent has no label."""
    label = latent.label
    return f"#{latent.index} \u201c{label}\u201d" if label else f"#{latent.index}"


def cell(text: str | None, code: bool = False) -> str:
    """Text for a markdown table cell (or sentence): the one escaping every markdown template uses.

    Prose gets no raw HTML and no cell breaks (``&<>`` as entities, ``|`` escaped). ``code=True`` is
    for text put between backticks, where entities would show literally: stripped, ``|`` escaped and
    backticks made quotes, so the code span cannot end early."""
    if code:
        return (text or "").strip().replace("|", "\\|").replace("`", "'")
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def where(finding: InlineFinding) -> str:
    """A comment's lines: ``12`` or ``10-12``."""
    f = finding
    return f"{f.start_line}-{f.line}" if f.start_line and f.start_line < f.line else str(f.line)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 22nd..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def rank_phrase(finding: Finding) -> str:
    """How a finding's risk compares with the rest of the review: ``riskiest of 212 added lines
    scored``, ``3rd riskiest of 212 ...``; empty when the rank is unknown."""
    rank, out_of = finding.rank, finding.out_of
    if not rank or not out_of:
        return ""
    lines = "added line scored" if out_of == 1 else "added lines scored"
    if rank == 1:
        return f"riskiest of {out_of} {lines}"
    return f"{ordinal(rank)} riskiest of {out_of} {lines}"


def contribution(latent: LatentContribution) -> str:
    """A latent's contribution in its unit: log-odds of the probe (``+0.43 log-odds``)."""
    return f"{latent.contribution:+.2f} log-odds"


def make_environment(templates_dir: str | Path | None = None) -> jinja2.Environment:
    """A jinja2 environment that looks in ``templates_dir`` first, then in the packaged templates.

    HTML templates are autoescaped (code lines go into the page); markdown ones are not, and they
    put code in fenced blocks instead.
    """
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        path = Path(templates_dir)
        if not path.is_dir():
            raise UsageError(f"templates directory not found: {path}")
        loaders.append(jinja2.FileSystemLoader(str(path)))
    loaders.append(jinja2.FileSystemLoader(str(PACKAGED)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,  # a typo in a team's template fails loudly, not blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        risk_pct=risk_pct,
        risk_level=risk_level,
        latent_label=latent_label,
        rank_phrase=rank_phrase,
        contribution=contribution,
        ordinal=ordinal,
        cell=cell,
        where=where,
        md_escape=cell,  # the filter's earlier name, kept for teams' templates that use it
    )
    return env


def render(env: jinja2.Environment, name: str, **context: Any) -> str:
    """Render one template; template errors become a one-line UsageError naming the template."""
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise UsageError(f"template not found: {name}") from None
    except jinja2.TemplateSyntaxError as err:
        raise UsageError(f"template {err.filename or name}:{err.lineno}: {err.message}") from None
    except jinja2.UndefinedError as err:
        raise UsageError(f"template {name}: {err.message}") from None


def render_comment(env: jinja2.Environment, finding: Finding, report: Report | None = None) -> str:
    """The body of one review comment (markdown) for a `Finding`."""
    return render(env, "comment.md.j2", finding=finding, report=report)


def render_summary(env: jinja2.Environment, report: Report) -> str:
    """The review's summary body (markdown): counts, top findings, skipped files."""
    return render(env, "summary.md.j2", report=report)


@dataclass
class CheckOutput:
    """What a GitHub check run's ``output`` takes."""

    title: str
    summary: str
    text: str
    conclusion: str
    """success | failure | neutral."""


def render_check(env: jinja2.Environment, report: Report, fail_above: float | None) -> CheckOutput:
    """Check-run output: the title is one line, summary/text come from check.md.j2 (split at a
    line holding only ``---8<---``, so one template controls both parts)."""
    failed = report.exceeds(fail_above)
    body = render(env, "check.md.j2", report=report, fail_above=fail_above, failed=failed)
    summary, _, text = body.partition("\n---8<---\n")
    s = report.summary
    title = f"{s.findings} risky finding(s), max risk {risk_pct(s.max_risk)}" if s.lines_scored else "no lines scored"
    conclusion = "failure" if failed else ("neutral" if s.findings else "success")
    return CheckOutput(title, summary.strip(), text.strip(), conclusion)
