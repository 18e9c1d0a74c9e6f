"""SARIF 2.1.0 as GitHub code scanning accepts it: one rule, one result per finding, skipped files
as tool execution notifications (so "not scored" is visible there too, not silently absent)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bot.render import latent_label, risk_level, risk_pct

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULE_ID = "pttrust/risky-line"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pttrust")
    except Exception:  # not installed (running from a checkout): the field is informational
        return "0.0.0"


def _level(risk: float) -> str:
    # GitHub shows "error" as a failing alert; keep that for high risk only.
    return "error" if risk >= 0.8 else "warning" if risk >= 0.5 else "note"


def _result(f: Any) -> dict:
    latents = ", ".join(f"{latent_label(l)} ({l.contribution:+.3f})" for l in f.latents[:5])
    where = f"lines {f.start_line}-{f.end_line}" if f.is_multiline else f"line {f.start_line}"
    text = f"PtTrust: {risk_level(f.risk)} risk ({risk_pct(f.risk)}) on {where}."
    if latents:
        text += f" Latents: {latents}."
    if f.ai_rule:
        text += f" AI-written: {f.ai_rule}."
    # A stable fingerprint from path + code, so alerts follow the code when lines move.
    code = "\n".join(l.text.strip() for l in f.lines)
    fp = hashlib.sha256(f"{f.path}\0{code}".encode()).hexdigest()[:32]
    return {
        "ruleId": RULE_ID,
        "ruleIndex": 0,
        "level": _level(f.risk),
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": f.start_line, "endLine": f.end_line},
                }
            }
        ],
        "partialFingerprints": {"pttrustCodeHash/v1": fp},
        "properties": {
            "risk": round(f.risk, 6),
            "latents": [
                {"index": l.index, "activation": l.activation, "contribution": l.contribution, "label": l.label}
                for l in f.latents
            ],
            "aiRule": f.ai_rule,
        },
    }


def to_sarif(report: Any) -> dict:
    s = report.summary
    rule = {
        "id": RULE_ID,
        "name": "RiskyLine",
        "shortDescription": {"text": "Line the code model finds risky"},
        "fullDescription": {
            "text": "The code LLM's internal states on this line resemble those it "
            "shows on code that turned out to be wrong (PtTrust probe over "
            "sparse-autoencoder latents)."
        },
        "help": {
            "text": "Review the line carefully; the latents listed with the result are the "
            "features that drove its score."
        },
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["reliability", "ai-generated-code"], "precision": "medium"},
    }
    notifications = [
        {
            "level": "note",
            "message": {"text": f"skipped: {sk.reason}"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": sk.path, "uriBaseId": "%SRCROOT%"}}}],
        }
        for sk in report.skipped
    ]
    notifications += [{"level": "warning", "message": {"text": w}} for w in report.warnings]
    invocation: dict = {"executionSuccessful": True}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "PtTrust",
                        "version": _version(),
                        "informationUri": "https://pypi.org/project/pttrust/",
                        "rules": [rule],
                    }
                },
                "automationDetails": {"id": "pttrust/"},
                "invocations": [invocation],
                "results": [_result(f) for f in report.findings],
                "properties": {
                    "threshold": s.threshold,
                    "linesScored": s.lines_scored,
                    "maxRisk": s.max_risk,
                    "model": s.model,
                },
            }
        ],
    }


def format_report(report: Any) -> str:
    return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"
