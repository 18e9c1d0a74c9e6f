"""reviewdog Diagnostic Format: ``--format rdjson`` (one DiagnosticResult) and ``--format rdjsonl``
(one Diagnostic per line), so that reviewdog (``reviewdog -f=rdjson``) can carry the findings to its
GitHub, GitLab, Bitbucket and Gerrit reporters.

One diagnostic per reported finding: the shown ones, then those the caps left out (severity INFO).
Severity follows `bot.formats.level` (ERROR trips fail-above, WARNING is a finding). Positions are
1-based lines of the new side; the range covers the finding's whole lines.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bot.formats import level
from bot.formats.sarif import RULE_ID, fingerprints, message

if TYPE_CHECKING:
    from bot.rank import Finding
    from bot.review import Report

SOURCE = {"name": "pttrust", "url": "https://pypi.org/project/pttrust/"}
_SEVERITY = {"error": "ERROR", "warning": "WARNING", "note": "INFO"}


def diagnostic(f: Finding, severity: str, fingerprint: str) -> dict:
    end = f.lines[-1].text if f.lines else ""
    return {
        "message": message(f),
        "location": {
            "path": f.path,
            "range": {
                "start": {"line": f.start_line, "column": 1},
                "end": {"line": f.end_line, "column": len(end.encode("utf-8")) + 1},
            },
        },
        "severity": _SEVERITY[severity],
        "source": SOURCE,
        "code": {"value": RULE_ID},
        "original_output": json.dumps(
            {"risk": round(f.risk, 6), "rank": f.rank, "out_of": f.out_of, "fingerprint": fingerprint}
        ),
    }


def diagnostics(report: Report) -> list[dict]:
    s = report.summary
    every = list(report.findings) + list(report.capped)
    fps = fingerprints(every)
    return [
        diagnostic(f, level(f.risk, s.threshold, s.fail_above, capped=i >= len(report.findings)), fp)
        for i, (f, fp) in enumerate(zip(every, fps))
    ]


def to_rdjson(report: Report) -> dict:
    """A DiagnosticResult."""
    found = diagnostics(report)
    worst = {d["severity"] for d in found}
    result: dict = {"source": SOURCE, "diagnostics": found}
    for sev in ("ERROR", "WARNING", "INFO"):
        if sev in worst:
            result["severity"] = sev
            break
    return result


def format_report(report: Report, lines: bool = False) -> str:
    if lines:
        return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in diagnostics(report))
    return json.dumps(to_rdjson(report), indent=2, ensure_ascii=False) + "\n"
