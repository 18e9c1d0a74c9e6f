"""Self-contained HTML report: each changed file's hunks, scored lines shaded by risk, the risk and
latents in a tooltip on hover (CSS only, so it works with scripts disabled)."""

from __future__ import annotations

from typing import Any

import jinja2

from bot.render import render

_KIND = {"+": "add", "-": "del", " ": "ctx"}


def file_rows(f: Any) -> list[dict]:
    """Rows to draw for one FileReport: hunk headers, then its lines with any risk attached."""
    scored = f.risk_by_line()
    in_finding = {n for fd in f.findings for n in range(fd.start_line, fd.end_line + 1)}
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
            lr = scored.get(n) if kind == "+" else None
            rows.append(
                {
                    "kind": kind,
                    "kind_class": _KIND[kind],
                    "line": n,
                    "text": text,
                    "risk": lr.risk if lr is not None else None,
                    "latents": list(lr.latents) if lr is not None else [],
                    "rule": f.ai_rules.get(n) if n is not None else None,
                    "finding": n in in_finding,
                }
            )
    return rows


def format_report(report: Any, env: jinja2.Environment) -> str:
    files = [
        {"path": f.path, "old_path": f.old_path, "status": f.status, "skipped": f.skipped, "rows": file_rows(f)}
        for f in report.files
    ]
    return render(env, "report.html.j2", report=report, files=files)
