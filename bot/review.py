"""The review pipeline, pure: diff text in, `Report` out. Nothing here writes anywhere.

    diff ─► parse_diff ─► limits ─► skip generated ─► select_lines ─► build_requests ─► scorer.score
         ─► rank ─► Report

The local CLI and the GitHub half call the same `review()`; they differ only in what they pass:

- ``diff``: the unified diff (bytes or str);
- ``read_file``: new-side contents by path (`bot.context.working_tree_reader(repo)` locally, the PR
  head's blobs on GitHub);
- ``authorship``: per-line commits (`bot.git_blame.GitBlame` locally, the PR's commits on GitHub),
  only needed with ``authored_by="ai"``; ``pr_labels`` for the label rule;
- ``scorer``: a `risk_core.types.Scorer` (the real one is `risk_core.score.Scorer`), or a
  zero-argument factory of one.

The `Report` is then rendered (`bot.render`, `bot.formats`) and published (`bot.publish`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bot.config import ReviewConfig
from bot.context import GitAttributes, SourceReader, build_requests, path_matches, skip_reason
from bot.diff import FileChange, Hunk, ParsedDiff, apply_limits, parse_diff
from bot.rank import Finding, rank, reasons, scorer_latents, set_ranks
from bot.select import AiRules, LineAuthorship, select_lines
from risk_core.types import FileScores, LineRisk, Scorer

DEFAULT_THRESHOLD = 0.5
"""The finding threshold for a bundle that records no calibrated one."""


Progress = Callable[[str], None]


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class FileReport:
    """One file of the diff as the reports show it."""

    path: str
    old_path: str | None
    status: str
    added: int
    """Lines the diff adds to this file."""
    hunks: list[Hunk]
    lines: list[LineRisk] = field(default_factory=list[LineRisk])
    """Every scored LineRisk of this file (line order)."""
    findings: list[Finding] = field(default_factory=list)
    """The findings kept for this file (riskiest first)."""
    ai_rules: dict[int, str] = field(default_factory=dict)
    """line -> the AI rule that selected it."""
    not_scored: dict[int, str] = field(default_factory=dict)
    """Added line -> why it has no risk (not code: blank, comment or string text; not AI-written).
    Every format shows these as "not scored", never as a number."""
    skipped: str | None = None

    @property
    def max_risk(self) -> float | None:
        return max((l.risk for l in self.lines), default=None)

    def risk_by_line(self) -> dict[int, LineRisk]:
        return {l.line: l for l in self.lines}


@dataclass
class Summary:
    files_in_diff: int = 0
    files_scored: int = 0
    lines_added: int = 0
    lines_selected: int = 0
    lines_scored: int = 0
    lines_not_ai: int = 0
    max_risk: float | None = None
    findings: int = 0
    """Findings shown (after caps)."""
    candidates: int = 0
    """Findings above the threshold before the caps."""
    over_file_cap: int = 0
    over_total_cap: int = 0
    max_comments: int = 0
    """The caps in force (0 = no limit)."""
    max_comments_per_file: int = 0
    threshold: float = 0.5
    fail_above: float | None = None
    """The gate in force (None: none)."""
    authored_by: str = "all"
    model: str | None = None
    bundle: str | None = None


@dataclass
class Report:
    files: list[FileReport]
    findings: list[Finding]
    """All kept findings, riskiest first (what gets posted as comments)."""
    skipped: list[Skipped]
    warnings: list[str]
    summary: Summary
    capped: list[Finding] = field(default_factory=list)
    """Findings above the threshold left out by the caps: not shown, but still flagged (a comment an
    earlier push posted on one is not marked resolved)."""

    def gate_findings(self, fail_above: float | None) -> list[Finding]:
        """The reported findings whose risk is above ``fail_above``: those shown, then those a cap
        left out (listed in the summary). A line below the threshold is no finding and never trips
        the gate, so the gate acts only on what the review reports."""
        if fail_above is None:
            return []
        return [f for f in self.findings + self.capped if f.risk > fail_above]

    def exceeds(self, fail_above: float | None) -> bool:
        """True when a reported finding's risk is above ``fail_above`` (the gate)."""
        return bool(self.gate_findings(fail_above))

    def at_level(self, fail_level: str) -> list[Finding]:
        """The reported findings at ``fail_level`` or worse (`bot.formats.level`): ``error`` = those
        above fail_above (the gate), ``warning`` = every commented finding plus any capped one above
        the gate, ``note`` = also every finding the caps left out, ``none`` = nothing."""
        if fail_level == "none":
            return []
        if fail_level == "error":
            return self.gate_findings(self.summary.fail_above)
        if fail_level == "warning":
            return list(self.findings) + [f for f in self.capped if f in self.gate_findings(self.summary.fail_above)]
        return list(self.findings) + list(self.capped)

    def level_message(self, fail_level: str, option: str = "--fail-above") -> str:
        """One line naming the findings that fail the run at ``fail_level``."""
        if fail_level == "error":
            return self.gate_message(self.summary.fail_above, option)
        hits = self.at_level(fail_level)
        names = ", ".join(f"{where(f)} ({100 * f.risk:.0f}%)" for f in hits[:10])
        more = f" and {len(hits) - 10} more" if len(hits) > 10 else ""
        return f"{len(hits)} finding(s) at fail-level {fail_level}: {names}{more}"

    def gate_message(self, fail_above: float | None, option: str = "--fail-above") -> str:
        """One line naming the findings that trip the gate, e.g. ``2 finding(s) above --fail-above
        0.90: a.py:19 (93%), b.py:4-6 (91%)``."""
        hits = self.gate_findings(fail_above)
        names = ", ".join(f"{where(f)} ({100 * f.risk:.0f}%)" for f in hits[:10])
        more = f" and {len(hits) - 10} more" if len(hits) > 10 else ""
        return f"{len(hits)} finding(s) above {option} {fail_above:.2f}: {names}{more}"


def where(f: Finding) -> str:
    """``path:line`` or ``path:start-end``."""
    return f"{f.path}:{f.start_line}" + (f"-{f.end_line}" if f.is_multiline else "")


@dataclass
class ReviewSource:
    """Everything `review()` needs from where the change lives (a local diff or a pull request).

    The CLI builds one for ``--diff`` (`local_source`); the GitHub half builds one for ``--github``.
    """

    diff: bytes | str | ParsedDiff
    """The unified diff (or the GitHub half's already parsed files)."""
    read_file: SourceReader
    """New-side contents by repository-relative path (None when absent)."""
    authorship: LineAuthorship | None = None
    """Per-line commits, needed for authored_by="ai" unless a PR label matches."""
    pr_labels: tuple[str, ...] = ()
    """Labels of the pull request (the ai_pr_labels rule)."""
    default_authored_by: str = "all"
    """What --authored-by means when neither the flag nor the config sets it."""
    name: str = ""
    """For messages: the diff path or OWNER/REPO#N."""


def local_source(diff: bytes | str, repo: str, name: str = "", with_blame: bool = True) -> ReviewSource:
    """A local diff whose new side is the working tree of ``repo`` (blame from its git history)."""
    from bot.context import working_tree_reader
    from bot.git_blame import GitBlame

    return ReviewSource(diff, working_tree_reader(repo), GitBlame(repo) if with_blame else None, (), "all", name)


def review_source(
    source: ReviewSource,
    scorer: Scorer | Callable[[], Scorer],
    cfg: ReviewConfig,
    *,
    progress: Progress | None = None,
    model_name: str | None = None,
    bundle_name: str | None = None,
    default_threshold: float | None = None,
) -> Report:
    """`review()` on a ReviewSource, with authored_by from cfg or the source's default."""
    return review(
        source.diff,
        source.read_file,
        scorer,
        cfg,
        authored_by=cfg.authored_by or source.default_authored_by,
        authorship=source.authorship,
        pr_labels=source.pr_labels,
        progress=progress,
        model_name=model_name,
        bundle_name=bundle_name,
        default_threshold=default_threshold,
    )


def _widen(selected: dict[str, list[int]], changes: list[FileChange], mode: str, read_file: SourceReader):
    """filter_mode beyond ``added``: also score the hunks' context lines (``diff_context``) or every
    line (``file``) of each file that has selected lines. Returns the reader to use afterwards
    (``file`` reads each file once here, to count its lines, and serves that copy again)."""
    cache: dict[str, bytes | None] = {}

    def read(path: str) -> bytes | None:
        if path not in cache:
            cache[path] = read_file(path)
        return cache[path]

    for change in changes:
        chosen = selected.get(change.path)
        if not chosen:
            continue  # with authored_by=ai, a file without AI-written lines stays out
        lines = set(chosen)
        if mode == "diff_context":
            lines |= {n for h in change.hunks for kind, n, _ in h.lines if kind == " " and n is not None}
        else:
            data = read(change.path)
            if data is not None:
                n_lines = len(data.decode("utf-8", "replace").splitlines())
                lines |= set(range(1, n_lines + 1))
        selected[change.path] = sorted(lines)
    return read if mode == "file" else read_file


def _silent(_: str) -> None:
    pass


def review(
    diff: bytes | str | ParsedDiff,
    read_file: SourceReader,
    scorer: Scorer | Callable[[], Scorer],
    cfg: ReviewConfig,
    *,
    authored_by: str = "all",
    authorship: LineAuthorship | None = None,
    pr_labels: Iterable[str] = (),
    progress: Progress | None = None,
    model_name: str | None = None,
    bundle_name: str | None = None,
    default_threshold: float | None = None,
) -> Report:
    """Run the whole pipeline on one diff. Raises PttrustError/UsageError for bad input.

    ``scorer`` may be a zero-argument factory: it is called only when there is something to score,
    after the diff, config, selection and context have all been checked, so bad input fails fast
    and an empty diff never loads the model. ``default_threshold``: the bundle's calibrated threshold
    where it is known without the model (`bundle_threshold`), so that a review that scores nothing
    reports the threshold one that scores would use.
    """
    say = progress or _silent
    parsed = parse_diff(diff)
    warnings = list(parsed.warnings)
    skipped: list[Skipped] = []
    reports = {c.path: FileReport(c.path, c.old_path, c.status, len(c.added_lines), c.hunks) for c in parsed.files}

    def skip(path: str, reason: str) -> None:
        skipped.append(Skipped(path, reason))
        if path in reports:
            reports[path].skipped = reason

    kept, over = apply_limits(parsed, cfg.max_files, cfg.max_added_lines)
    for path, reason in over:
        skip(path, reason)

    attrs_bytes = read_file(".gitattributes")
    attributes = GitAttributes.parse(attrs_bytes.decode("utf-8", "replace")) if attrs_bytes else None
    scorable: list[FileChange] = []
    for change in kept:
        if change.status in ("binary", "submodule"):
            skip(change.path, f"{change.status} file")
            continue
        if not change.added_lines:
            continue  # deletions and pure mode changes: nothing new to score, nothing to report
        reason = skip_reason(change.path, cfg.skip_paths, attributes)
        if not reason and cfg.paths and not any(path_matches(change.path, p) for p in cfg.paths):
            reason = f"outside paths ({', '.join(cfg.paths)})"
        if reason:
            skip(change.path, reason)
            continue
        scorable.append(change)

    say(f"selecting lines ({authored_by}) in {len(scorable)} file(s)")
    sel = select_lines(scorable, authored_by, AiRules.from_config(cfg), authorship, pr_labels)
    for (path, line), rule in sel.rules.items():
        reports[path].ai_rules[line] = rule
    if cfg.filter_mode != "added":
        read_file = _widen(sel.lines, scorable, cfg.filter_mode, read_file)

    ctx = build_requests(scorable, sel.lines, read_file, cfg.max_file_bytes)
    warnings += ctx.warnings
    for path, reason in ctx.skipped:
        skip(path, reason)

    n_lines = sum(len(r.target_lines or []) for r in ctx.requests)
    say(f"scoring {n_lines} line(s) in {len(ctx.requests)} file(s)")
    scores: list[FileScores] = []
    # Unset: the bundle's calibrated default, else the plain one.
    threshold: float = cfg.threshold if cfg.threshold is not None else (default_threshold or DEFAULT_THRESHOLD)
    if ctx.requests:
        if not isinstance(scorer, Scorer):
            scorer = scorer()  # a factory: the model loads only once the input is known good
        scores = scorer.score(ctx.requests, top_latents=scorer_latents(cfg.top_latents))
        if cfg.threshold is None:
            threshold = scorer.default_threshold or DEFAULT_THRESHOLD
    cfg = dataclasses.replace(cfg, threshold=threshold)
    for fs in scores:
        if fs.skipped:
            skip(fs.path, fs.skipped)
            continue
        for line in fs.lines:
            # Only latents that push the risk up and have a clear description are reasons.
            line.latents = reasons(line.latents, cfg.top_latents)
        reports[fs.path].lines = sorted(fs.lines, key=lambda l: l.line)

    not_code = "not code (blank, comment, string text or punctuation only)"
    for request in ctx.requests:
        fr = reports[request.path]
        if fr.skipped:
            continue
        got = {l.line for l in fr.lines}
        for n in request.target_lines or []:
            if n not in got:
                fr.not_scored[n] = not_code
    for change in scorable:
        fr = reports[change.path]
        if fr.skipped:
            continue
        chosen = set(sel.lines.get(change.path, []))
        for n in change.added_lines:
            if n not in chosen:
                fr.not_scored.setdefault(n, "not AI-written")

    ranking = rank(
        [fs for fs in scores if not fs.skipped],
        threshold,
        cfg.max_comments,
        cfg.max_comments_per_file,
        cfg.merge_gap,
        sel.rules,
    )
    for finding in ranking.findings:
        reports[finding.path].findings.append(finding)

    files = list(reports.values())
    scored = [l for f in files for l in f.lines]
    set_ranks(ranking.findings + ranking.dropped, scored)
    if cfg.fail_above is not None and cfg.fail_above < threshold:
        warnings.append(
            f"fail_above {cfg.fail_above:.2f} is below threshold {threshold:.2f}: the gate trips only on "
            f"findings, i.e. lines above {threshold:.2f}"
        )
    summary = Summary(
        files_in_diff=len(parsed.files),
        files_scored=sum(1 for f in files if f.lines),
        lines_added=sum(f.added for f in files),
        lines_selected=sum(len(v) for v in sel.lines.values()),
        lines_scored=len(scored),
        lines_not_ai=sum(sel.not_ai.values()),
        max_risk=max((l.risk for l in scored), default=None),
        findings=len(ranking.findings),
        candidates=ranking.candidates,
        over_file_cap=ranking.over_file_cap,
        over_total_cap=ranking.over_total_cap,
        max_comments=cfg.max_comments,
        max_comments_per_file=cfg.max_comments_per_file,
        threshold=threshold,
        fail_above=cfg.fail_above,
        authored_by=authored_by,
        model=model_name,
        bundle=bundle_name,
    )
    return Report(files, ranking.findings, skipped, warnings, summary, ranking.dropped)
