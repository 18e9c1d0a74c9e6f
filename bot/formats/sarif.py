"""SARIF 2.1.0 as GitHub code scanning accepts it: one rule, one result per finding, skipped files
as tool execution notifications (so "not scored" is visible there too, not silently absent).

Levels come from the calibrated threshold and the gate (`bot.formats.level`): ``error`` trips
fail-above, ``warning`` is a finding, ``note`` a finding the caps left out. Fingerprints are unique
per finding (`fingerprints`)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from bot.formats import level
from bot.render import latent_label, rank_phrase, risk_level, risk_pct

if TYPE_CHECKING:
    from bot.rank import Finding
    from bot.review import Report

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULE_ID = "pttrust/risky-line"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pttrust")
    except Exception:  # not installed (running from a checkout): the field is informational
        return "0.0.0"


def message(f: Finding) -> str:
    """One finding in a sentence: risk, rank in the review, what to check, why it was scored."""
    where = f"lines {f.start_line}-{f.end_line}" if f.is_multiline else f"line {f.start_line}"
    text = f"PtTrust: {risk_level(f.risk)} risk ({risk_pct(f.risk)}) on {where}"
    phrase = rank_phrase(f)
    text += f", the {phrase}." if phrase else "."
    if f.latents:
        text += " What to check: " + "; ".join(l.label or "" for l in f.latents) + "."
    if f.dropped_by:
        text += f" Not commented: over {f.dropped_by}."
    if f.ai_rule:
        text += f" AI-written: {f.ai_rule}."
    return text


def fingerprints(findings: list[Finding]) -> list[str]:
    """One fingerprint per finding, unique within the run: a hash of path + code (so an alert
    follows its code when lines move) and the occurrence of that code in the file (so two findings
    on identical lines do not collapse into one alert)."""
    seen: dict[str, int] = {}
    out = []
    for f in sorted(findings, key=lambda f: (f.path, f.start_line)):
        code = "\n".join(l.text.strip() for l in f.lines)
        digest = hashlib.sha256(f"{f.path}\0{code}".encode()).hexdigest()[:32]
        seen[digest] = seen.get(digest, 0) + 1
        out.append((id(f), f"{digest}:{seen[digest]}"))
    by_id = dict(out)
    return [by_id[id(f)] for f in findings]


def _result(f: Finding, fp: str, severity: str) -> dict:
    latents = ", ".join(f"{latent_label(l)} ({l.contribution:+.3f})" for l in f.latents[:5])
    text = message(f)
    if latents:
        text += f" Latents (contribution, log-odds): {latents}."
    return {
        "ruleId": RULE_ID,
        "ruleIndex": 0,
        "level": severity,
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": f.start_line, "endLine": f.end_line},
                }
            }
        ],
        "partialFingerprints": {"pttrustCodeHash/v2": fp},
        "properties": {
            "risk": round(f.risk, 6),
            "latents": [
                {"index": l.index, "activation": l.activation, "contribution": l.contribution, "label": l.label}
                for l in f.latents
            ],
            "aiRule": f.ai_rule,
            "rank": f.rank,
            "outOf": f.out_of,
            "capped": bool(f.dropped_by),
        },
    }


def results(report: Report) -> list[dict]:
    """The shown findings, then those the caps left out (as notes: listed, not commented)."""
    s = report.summary
    every = list(report.findings) + list(report.capped)
    fps = fingerprints(every)
    return [
        _result(f, fp, level(f.risk, s.threshold, s.fail_above, capped=i >= len(report.findings)))
        for i, (f, fp) in enumerate(zip(every, fps))
    ]


def to_sarif(report: Report) -> dict:
    s = report.summary
    rule = {
        "id": RULE_ID,
        "name": "RiskyLine",
        "shortDescription": {"text": "Line the code model finds risky"},
        "fullDescription": {
            "text": "The code LLM's internal states on this line resemble those it "
            "shows on lines that real bug fixes changed (PtTrust probe over "
            "sparse-autoencoder latents): a hint where to look, not a verdict."
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
                "results": results(report),
                "properties": {
                    "threshold": s.threshold,
                    "failAbove": s.fail_above,
                    "linesScored": s.lines_scored,
                    "maxRisk": s.max_risk,
                    "model": s.model,
                },
            }
        ],
    }


def format_report(report: Report) -> str:
    return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"
