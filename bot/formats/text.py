"""Terminal report: a rich table of findings, then the diff's added lines annotated with risk."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.formats import NOT_SCORED
from bot.render import ordinal, risk_pct

if TYPE_CHECKING:
    from bot.review import Report


def _style(risk: float, threshold: float) -> str:
    if risk >= 0.8:
        return "bold white on red"
    if risk > threshold:
        return "black on yellow"
    return "dim"


def format_report(report: Report, color: bool = False, width: int = 120) -> str:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width, highlight=False, emoji=False)
    s = report.summary
    th = s.threshold

    headline = (
        f"PtTrust: {s.findings} finding(s) above {risk_pct(th)}, "
        f"{s.lines_scored} line(s) scored, max risk {risk_pct(s.max_risk)}"
    )
    if s.authored_by == "ai" and s.lines_not_ai:
        headline += f" ({s.lines_not_ai} added line(s) not AI-written, not scored)"
    console.print(Text(headline, style="bold"))
    table = Table()
    table.add_column("risk", justify="right")
    table.add_column("where")
    table.add_column("code", overflow="fold")
    table.add_column("rank")
    table.add_column("what to check (contribution, log-odds)", overflow="fold")
    for f in report.findings:
        where = f"{f.path}:{f.start_line}" + (f"-{f.end_line}" if f.is_multiline else "")
        reasons = "; ".join(f"{l.label} ({l.contribution:+.2f})" for l in f.latents[:3]) or "(no clear description)"
        rank = f"{ordinal(f.rank)} of {f.out_of}" if f.rank else ""
        table.add_row(Text(risk_pct(f.risk), style=_style(f.risk, th)), where, f.peak.text.strip(), rank, reasons)
    if report.findings:
        console.print(table)
    if report.capped:
        console.print(f"{len(report.capped)} more finding(s) over the comment limits (none riskier than one shown):")
        for f in report.capped:
            where = f"{f.path}:{f.start_line}" + (f"-{f.end_line}" if f.is_multiline else "")
            console.print(f"  {risk_pct(f.risk):>4} {where} (cut by {f.dropped_by})")

    for f in report.files:
        if not f.lines:
            continue
        console.print()
        console.print(Text(f"── {f.path} ({f.status})", style="bold"))
        scored = f.risk_by_line()
        for h in f.hunks:
            console.print(Text(f"@@ +{h.target_start},{h.target_length} @@ {h.section_header}".rstrip(), style="cyan"))
            for kind, n, text in h.lines:
                if kind == "-":
                    continue  # the report is about the new side; removed lines add noise here
                lr = scored.get(n) if kind == "+" and n is not None else None
                risk = risk_pct(lr.risk) if lr is not None else (NOT_SCORED if n in f.not_scored else "")
                line = Text(f"{n:>5} {risk:>10} {kind} ", style=_style(lr.risk, th) if lr else "dim")
                line.append(text)
                console.print(line, overflow="fold", crop=False)

    if report.skipped:
        console.print()
        for sk in report.skipped:
            console.print(f"skipped: {sk.path}: {sk.reason}")
    for w in report.warnings:
        console.print(f"warning: {w}")
    return buf.getvalue()
