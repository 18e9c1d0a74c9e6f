"""Terminal report: a rich table of findings, then the diff's added lines annotated with risk."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.render import latent_label, risk_pct


def _style(risk: float, threshold: float) -> str:
    if risk >= 0.8:
        return "bold white on red"
    if risk > threshold:
        return "black on yellow"
    return "dim"


def format_report(report: Any, color: bool = False, width: int = 120) -> str:
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
    table.add_column("top latents", overflow="fold")
    for f in report.findings:
        where = f"{f.path}:{f.start_line}" + (f"-{f.end_line}" if f.is_multiline else "")
        latents = ", ".join(f"{latent_label(l)} {l.contribution:+.2f}" for l in f.latents[:3])
        table.add_row(Text(risk_pct(f.risk), style=_style(f.risk, th)), where, f.peak.text.strip(), latents)
    if report.findings:
        console.print(table)
    if s.over_file_cap or s.over_total_cap:
        console.print(f"{s.over_file_cap + s.over_total_cap} more finding(s) over the comment limits")

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
                lr = scored.get(n) if kind == "+" else None
                risk = risk_pct(lr.risk) if lr is not None else ""
                line = Text(f"{n:>5} {risk:>5} {kind} ", style=_style(lr.risk, th) if lr else "dim")
                line.append(text)
                console.print(line, overflow="fold", crop=False)

    if report.skipped:
        console.print()
        for sk in report.skipped:
            console.print(f"skipped: {sk.path}: {sk.reason}")
    for w in report.warnings:
        console.print(f"warning: {w}")
    return buf.getvalue()
