"""JSON report: ``{"version", "files": [{"path", "lines": [{"line", "risk", "latents"}], "not_scored"}],
"findings", "capped", "summary", "skipped", "warnings"}``; schema in docs/schemas/report.schema.json.

Plain data only, stable key order, so that tools (and diffs of two runs) can read it. ``version``
changes when a field changes meaning or goes away (adding fields does not change it). ``latents``
are the reasons behind a score: they push the risk up and have a description. Added lines without a
risk are under ``not_scored`` with the reason, never with a number.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.rank import Finding
    from bot.review import Report
    from risk_core.types import LatentContribution

VERSION = 2
"""1: the first format (no version field); 2: version, capped, not_scored, rank, reasons only."""

SCHEMA_URI = "https://pypi.org/project/pttrust/schemas/report.schema.json"


def latent_dict(l: LatentContribution) -> dict:
    return {"index": l.index, "activation": l.activation, "contribution": l.contribution, "label": l.label}


def finding_dict(f: Finding) -> dict:
    return {
        "path": f.path,
        "start_line": f.start_line,
        "end_line": f.end_line,
        "risk": f.risk,
        "lines": [l.line for l in f.lines],
        "latents": [latent_dict(l) for l in f.latents],
        "ai_rule": f.ai_rule,
        "rank": f.rank,
        "out_of": f.out_of,
        "dropped_by": f.dropped_by,
    }


def to_dict(report: Report) -> dict:
    files = []
    for f in report.files:
        files.append(
            {
                "path": f.path,
                "old_path": f.old_path,
                "status": f.status,
                "added": f.added,
                "max_risk": f.max_risk,
                "skipped": f.skipped,
                "lines": [
                    {
                        "line": l.line,
                        "risk": l.risk,
                        "text": l.text,
                        "latents": [latent_dict(x) for x in l.latents],
                        "ai_rule": f.ai_rules.get(l.line),
                    }
                    for l in f.lines
                ],
                "not_scored": [
                    {"line": n, "status": "not scored", "reason": why} for n, why in sorted(f.not_scored.items())
                ],
            }
        )
    return {
        "$schema": SCHEMA_URI,
        "version": VERSION,
        "files": files,
        "findings": [finding_dict(f) for f in report.findings],
        "capped": [finding_dict(f) for f in report.capped],
        "summary": dataclasses.asdict(report.summary),
        "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
        "warnings": list(report.warnings),
    }


def format_report(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"
