"""Scored lines -> the few findings worth a reviewer's attention.

Lines above the threshold are grouped into findings (risky lines at most ``merge_gap`` apart form
one multi-line finding, so a risky block gets one comment rather than five), ranked by their
riskiest line, then capped per file and per review.

The caps cut the ranking at one point and never skip over a finding: the first finding that a cap
would leave out ends the kept list, and every finding after it is dropped too. So no line that is
left out is riskier than a line that is shown (a per-file cap never hides a file's 0.9 while another
file's 0.6 is posted). Every dropped finding is kept in ``Ranking.dropped`` with the cap that cut it,
so the summary can list them instead of hiding them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from risk_core.types import FileScores, LatentContribution, LineRisk


@dataclass
class Finding:
    path: str
    start_line: int
    end_line: int
    risk: float
    """The riskiest line's risk."""
    lines: list[LineRisk]
    """The LineRisk objects of the lines in this finding (line order)."""
    peak: LineRisk
    """The riskiest LineRisk: its latents explain the finding."""
    ai_rule: str | None = None
    """Why the peak line counts as AI-written (None with --authored-by all)."""
    rank: int = 0
    """Where the peak line's risk ranks among every line scored in the review (1 = riskiest; 0 = not
    computed)."""
    out_of: int = 0
    """How many lines were scored in the review (what ``rank`` is out of)."""
    dropped_by: str | None = None
    """For a finding a cap left out: ``"max_comments_per_file"`` or ``"max_comments"``."""

    @property
    def latents(self) -> list[LatentContribution]:
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


def reasons(latents: list[LatentContribution], n: int) -> list[LatentContribution]:
    """The latents a reviewer is shown as the reasons behind a score: only those that push the risk
    *up* (positive contribution to the probe's logit) and that have a clear description (a label;
    `risk_core.evaluate.label_latents` leaves unclear latents unlabelled), largest contribution
    first, at most ``n``."""
    up = [l for l in latents if l.contribution > 0 and (l.label or "").strip()]
    return sorted(up, key=lambda l: -l.contribution)[:n]


def scorer_latents(n: int) -> int:
    """How many latents to ask the scorer for so that ``n`` reasons survive `reasons` (the scorer
    orders by contribution but includes unlabelled ones)."""
    return max(4 * n, 16) if n else 0


def set_ranks(findings: list[Finding], lines: list[LineRisk]) -> None:
    """Give each finding the rank of its peak line among all scored ``lines`` (1 = riskiest)."""
    import bisect

    risks = sorted(-l.risk for l in lines)
    for f in findings:
        f.rank = bisect.bisect_left(risks, -f.risk) + 1
        f.out_of = len(risks)


def group_lines(lines: list[LineRisk], threshold: float, merge_gap: int) -> list[list[LineRisk]]:
    """Runs of lines with risk > threshold whose numbers are at most merge_gap apart."""
    risky = sorted((l for l in lines if l.risk > threshold), key=lambda l: l.line)
    groups: list[list[LineRisk]] = []
    for line in risky:
        if groups and line.line - groups[-1][-1].line <= max(merge_gap, 1):
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def rank(
    file_scores: list[FileScores],
    threshold: float,
    max_comments: int = 0,
    max_comments_per_file: int = 0,
    merge_gap: int = 1,
    rules: dict[tuple[str, int], str] | None = None,
) -> Ranking:
    """Findings from `FileScores`; caps of 0 mean no limit. Ties break by path and line so the
    output is stable from run to run. The kept findings are a prefix of the ranking (see above)."""
    rules = rules or {}
    result = Ranking([])
    found: list[Finding] = []
    for fs in file_scores:
        for group in group_lines(fs.lines, threshold, merge_gap):
            peak = max(group, key=lambda l: l.risk)
            found.append(
                Finding(fs.path, group[0].line, group[-1].line, peak.risk, group, peak, rules.get((fs.path, peak.line)))
            )
    found.sort(key=lambda f: (-f.risk, f.path, f.start_line))
    result.candidates = len(found)
    per_file: dict[str, int] = {}
    cut_by: str | None = None
    for f in found:
        if cut_by is None:
            if max_comments_per_file and per_file.get(f.path, 0) >= max_comments_per_file:
                cut_by = "max_comments_per_file"
            elif max_comments and len(result.findings) >= max_comments:
                cut_by = "max_comments"
        if cut_by is None:
            per_file[f.path] = per_file.get(f.path, 0) + 1
            result.findings.append(f)
            continue
        f.dropped_by = cut_by
        result.dropped.append(f)
        if cut_by == "max_comments_per_file":
            result.over_file_cap += 1
        else:
            result.over_total_cap += 1
    return result
