"""Self-contained HTML report: a findings list at the top (risk, rank, reasons, links into the diff),
a risk legend, then each changed file's hunks with +/− markers, pygments syntax highlighting,
scored lines shaded by risk and each finding's reasons shown inline under its line (no hovering
needed; a CSS-only tooltip adds the per-line detail). Lines that are not scored say so, never a
number. No scripts, no external CSS or fonts: it can be attached to a CI run or mailed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from markupsafe import Markup, escape

from bot.formats import NOT_SCORED
from bot.render import render

if TYPE_CHECKING:
    from bot.review import FileReport, Report

_KIND = {"+": "add", "-": "del", " ": "ctx"}
_MARK = {"+": "+", "-": "\u2212", " ": " "}


def _lexer(path: str):
    from pygments.lexers import get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def highlight(text: str, lexer) -> Markup:
    """One line of code as escaped HTML with pygments token classes (plain escaped text when the
    language is unknown)."""
    if lexer is None:
        return Markup(escape(text))
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter

    html = pyg_highlight(text, lexer, HtmlFormatter(nowrap=True))
    return Markup(html.rstrip("\n"))


def highlight_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs("td.code")


def anchor(file_index: int, line: int | None) -> str:
    return f"f{file_index}-L{line}"


def file_rows(f: FileReport, file_index: int = 1) -> list[dict]:
    """Rows to draw for one FileReport: hunk headers, then its lines with any risk attached."""
    scored = f.risk_by_line()
    in_finding = {n for fd in f.findings for n in range(fd.start_line, fd.end_line + 1)}
    peaks = {fd.peak.line: fd for fd in f.findings}
    lexer = _lexer(f.path)
    rows: list[dict] = []
    for h in f.hunks:
        rows.append(
            {
                "kind": "@",
                "text": f"@@ -{h.source_start},{h.source_length} "
                f"+{h.target_start},{h.target_length} @@ {h.section_header}".rstrip(),
            }
        )
        for kind, n, text in h.lines:
            lr = scored.get(n) if kind == "+" and n is not None else None
            rows.append(
                {
                    "kind": kind,
                    "kind_class": _KIND[kind],
                    "mark": _MARK[kind],
                    "line": n,
                    "anchor": anchor(file_index, n) if n is not None and kind != "-" else None,
                    "text": text,
                    "code": highlight(text, lexer),
                    "risk": lr.risk if lr is not None else None,
                    "not_scored": f.not_scored.get(n) if kind == "+" and n is not None and lr is None else None,
                    "latents": list(lr.latents) if lr is not None else [],
                    "rule": f.ai_rules.get(n) if n is not None else None,
                    "finding": n in in_finding,
                    "peak_of": peaks.get(n) if kind == "+" and n is not None else None,
                }
            )
    return rows


def _shown_path(path: str | None) -> str | None:
    """Repository-relative paths only: an absolute bundle path is shown by its directory name."""
    if not path:
        return path
    p = Path(path)
    return p.name if p.is_absolute() else path


def format_report(report: Report, env: jinja2.Environment) -> str:
    index = {f.path: i for i, f in enumerate(report.files, 1)}
    files = [
        {
            "index": i,
            "path": f.path,
            "old_path": f.old_path,
            "status": f.status,
            "skipped": f.skipped,
            "rows": file_rows(f, i),
        }
        for i, f in enumerate(report.files, 1)
    ]
    findings = [
        {"finding": fd, "href": "#" + anchor(index.get(fd.path, 0), fd.peak.line), "capped": False}
        for fd in report.findings
    ] + [
        {"finding": fd, "href": "#" + anchor(index.get(fd.path, 0), fd.peak.line), "capped": True}
        for fd in report.capped
    ]
    return render(
        env,
        "report.html.j2",
        report=report,
        files=files,
        findings=findings,
        not_scored=NOT_SCORED,
        highlight_css=Markup(highlight_css()),
        bundle=_shown_path(report.summary.bundle),
    )
