"""Scored lines -> the few findings worth a reviewer's attention.

Lines above the threshold are grouped into findings (risky lines at most ``merge_gap`` apart form
one multi-line finding, so a risky block gets one comment rather than five), ranked by their
riskiest line, then capped per file and per review. Everything cut by a cap is counted, so the
summary can say "7 more findings over the limit" instead of hiding them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Finding:
    path: str
    start_line: int
    end_line: int
    risk: float
    """The riskiest line's risk."""
    lines: list[Any]
    """The LineRisk objects of the lines in this finding (line order)."""
    peak: Any
    """The riskiest LineRisk: its latents explain the finding."""
    ai_rule: str | None = None
    """Why the peak line counts as AI-written (None with --authored-by all)."""

    @property
    def latents(self) -> list[Any]:
        return list(self.peak.latents)

    @property
    def is_multiline(self) -> bool:
        return self.end_line > self.start_line


@dataclass
class Ranking:
    findings: list[Finding]
    """Kept findings, riskiest first."""
    over_file_cap: int = 0
    """Findings dropped by max_comments_per_file."""
    over_total_cap: int = 0
    """Findings dropped by max_comments."""
    candidates: int = 0
    """Findings before the caps."""
    dropped: list[Finding] = field(default_factory=list[Finding])


def group_lines(lines: list[Any], threshold: float, merge_gap: int) -> list[list[Any]]:
    """Runs of lines with risk > threshold whose numbers are at most merge_gap apart."""
    risky = sorted((l for l in lines if l.risk > threshold), key=lambda l: l.line)
    groups: list[list[Any]] = []
    for line in risky:
        if groups and line.line - groups[-1][-1].line <= max(merge_gap, 1):
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def rank(
    file_scores: list[Any],
    threshold: float,
    max_comments: int = 0,
    max_comments_per_file: int = 0,
    merge_gap: int = 1,
    rules: dict[tuple[str, int], str] | None = None,
) -> Ranking:
    """Findings from `FileScores`; caps of 0 mean no limit. Ties break by path and line so the
    output is stable from run to run."""
    rules = rules or {}
    result = Ranking([])
    per_file: list[Finding] = []
    for fs in file_scores:
        found: list[Finding] = []
        for group in group_lines(fs.lines, threshold, merge_gap):
            peak = max(group, key=lambda l: l.risk)
            found.append(
                Finding(fs.path, group[0].line, group[-1].line, peak.risk, group, peak, rules.get((fs.path, peak.line)))
            )
        found.sort(key=lambda f: (-f.risk, f.start_line))
        result.candidates += len(found)
        if max_comments_per_file and len(found) > max_comments_per_file:
            result.over_file_cap += len(found) - max_comments_per_file
            result.dropped += found[max_comments_per_file:]
            found = found[:max_comments_per_file]
        per_file += found
    per_file.sort(key=lambda f: (-f.risk, f.path, f.start_line))
    if max_comments and len(per_file) > max_comments:
        result.over_total_cap = len(per_file) - max_comments
        result.dropped += per_file[max_comments:]
        per_file = per_file[:max_comments]
    result.findings = per_file
    return result
