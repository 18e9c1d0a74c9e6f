"""Metrics of line risk scores (numpy only), shared by eval, bind and the real-bug experiments.

- per program: top-1 / top-3 hit rate (a buggy line among the k highest-scored candidate lines),
  over programs with at least one labeled buggy candidate line;
- per line: AUROC, AUPRC (average precision), ECE (10 equal-width bins; probabilistic methods only);
- findings at a threshold (``finding_cell``, ``real_bug_report``): what a reviewer would see, in false
  findings per 1,000 clean lines and precision, and the threshold for a false-finding budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve with ties counted half (Mann-Whitney U); None if one class is absent."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auprc(scores, labels) -> float | None:
    """Average precision (step-wise area under the precision-recall curve); None without positives."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if y.sum() == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y = y[order]
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / y.sum())


def ece(probs, labels, bins: int = 10) -> float | None:
    """Expected calibration error: sum over bins of |mean prob - positive rate| weighted by bin size."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return None
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(p[m].mean() - y[m].mean())
    return float(total)


def topk_hits(scores, labels, groups, k: int) -> tuple[int, int]:
    """(programs whose top-k lines contain a buggy line, programs with a buggy line)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    g = np.asarray(groups)
    hits = total = 0
    for gid in np.unique(g):
        m = g == gid
        if not y[m].any():
            continue
        total += 1
        order = np.argsort(-s[m], kind="mergesort")
        hits += bool(y[m][order[:k]].any())
    return hits, total


def rounded(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def cell(scores, labels, groups, probabilistic: bool) -> dict:
    h1, n = topk_hits(scores, labels, groups, 1)
    h3, _ = topk_hits(scores, labels, groups, 3)
    return {
        "top1": rounded(h1 / n) if n else None,
        "top3": rounded(h3 / n) if n else None,
        "auroc": rounded(auroc(scores, labels)),
        "auprc": rounded(auprc(scores, labels)),
        "ece": rounded(ece(scores, labels)) if probabilistic else None,
        "n": int(n),
    }


LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 40), (41, None))
"""Function lengths (candidate lines of a sample) the findings are broken down by: the calibrated risk
of a line falls with the length of its function (each bound window holds one bug), so at one threshold
the findings gather in short functions."""


def length_bucket(n: int) -> str:
    """The `LENGTH_BUCKETS` name of a sample with ``n`` candidate lines: ``1-10`` ... ``41+``."""
    for lo, hi in LENGTH_BUCKETS:
        if hi is None or n <= hi:
            return f"{lo}+" if hi is None else f"{lo}-{hi}"
    raise AssertionError("the last bucket is open")


LENGTH_BUCKET_NAMES = tuple(length_bucket(lo) for lo, _ in LENGTH_BUCKETS)
"""``1-10``, ``11-20``, ``21-40``, ``41+``: the order the breakdowns are reported in."""


def row_length_buckets(sample) -> np.ndarray:
    """The `length_bucket` of each row's sample [n], from ``sample`` [n] (each row's sample index): a
    sample's length is its number of rows, its candidate lines."""
    sample = np.asarray(sample)
    n_rows = np.bincount(sample)
    return np.array([length_bucket(int(n_rows[i])) for i in sample])


THRESHOLD_REFERENCE_TEXT = {
    "fixed": "(fixed versions)",
    "not-buggy": "(lines not labeled buggy)",
    "both": "(on their fixed versions and on their lines not labeled buggy alike)",
}
"""How `threshold_rule` names each ``reference`` of `threshold_for_false_findings`."""


def threshold_rule(reference: str, by_length: bool) -> str:
    """The rule `threshold_for_false_findings` applies at the default 300 lines per finding, in words
    (a bundle's ``threshold_rule`` in metrics.json)."""
    rule = "one false finding per 300 lines of the bind validation repositories " + THRESHOLD_REFERENCE_TEXT[reference]
    return rule + (", in every function length (1-10, 11-20, 21-40, 41+ candidate lines)" if by_length else "")


def threshold_for_false_findings(
    scores, samples, rows, pick=None, lines_per_finding: int = 300, reference: str = "both", by_length: bool = False
) -> float | None:
    """The risk threshold at which clean code gets one false finding per ``lines_per_finding`` candidate
    lines: the (1 - 1/lines_per_finding) quantile of the scores of the reference lines. ``reference``:
    ``fixed``, the lines of clean samples (no buggy lines: fixed versions); ``not-buggy``, every line
    not labeled buggy, of clean and buggy samples alike; or ``both``, the higher of the two thresholds,
    so that the rate holds on each. ``not-buggy`` rests on about five times the lines (a 1-in-300
    quantile of a thousand lines is about their 4th-highest score, so ``fixed`` alone hangs on a few
    lines), but it can err either way: a probe trained with a mostly per-line loss scored the fixed
    versions of its validation repositories higher than the lines beside their bugs (5.1 false findings
    per 1,000 fixed lines at the ``not-buggy`` threshold). ``rows`` has ``.sample`` and ``.label`` per
    row; ``pick`` (bool per row) restricts the rows used (a validation split). None when there is no
    reference line or no scores.

    ``by_length``: the rate holds in every function length (`LENGTH_BUCKETS`) as well as over all lines:
    the highest of the all-lines threshold and each length's own, for the lengths with at least
    ``lines_per_finding`` reference lines (a 1-in-300 quantile of fewer lines is their maximum). A
    line's risk falls with its function's length, so the all-lines rate is an average of many false
    findings in short functions and none in long ones; a pull request of short functions would get
    far more than one false finding per 300 lines."""
    if scores is None:
        return None
    if reference not in ("fixed", "not-buggy", "both"):
        raise ValueError(f"unknown reference {reference!r} (fixed | not-buggy | both)")
    s = np.asarray(scores, dtype=np.float64)
    picked = np.ones(len(s), dtype=bool) if pick is None else np.asarray(pick, dtype=bool)
    fixed = np.array([not samples[int(i)].buggy_lines for i in np.asarray(rows.sample).tolist()], dtype=bool)
    not_buggy = ~np.asarray(rows.label, dtype=bool)
    masks = [m & picked for r, m in (("fixed", fixed), ("not-buggy", not_buggy)) if reference in (r, "both")]

    def quantile(mask: np.ndarray, at_least: int) -> float | None:
        return float(np.quantile(s[mask], 1.0 - 1.0 / lines_per_finding)) if mask.sum() >= at_least else None

    found = [quantile(m, 1) for m in masks]
    if by_length:
        bucket = row_length_buckets(rows.sample)
        found += [quantile(m & (bucket == k), lines_per_finding) for m in masks for k in LENGTH_BUCKET_NAMES]
    return max((t for t in found if t is not None), default=None)


def finding_cell(scores, labels, groups, clean, threshold: float | None) -> dict:
    """Top-1/3/5 and AUROC over the rows of buggy samples; at ``threshold``: false findings per 1,000
    lines of clean samples, the precision of all findings (buggy and clean samples together) and
    ``bugs_found``, the share of buggy samples with a finding on a buggy line (the bugs a review would
    comment on)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    clean = np.asarray(clean, dtype=bool)
    g = np.asarray(groups)
    bug = ~clean
    out = {}
    for k in (1, 3, 5):
        h, n = topk_hits(s[bug], y[bug], g[bug], k)
        out[f"top{k}"] = rounded(h / n) if n else None
    out["auroc"] = rounded(auroc(s[bug], y[bug]))
    out["n_bugs"] = int(topk_hits(s[bug], y[bug], g[bug], 1)[1])
    out["n_lines"] = int(len(s))
    if threshold is None:
        out.update({"false_per_1000": None, "precision": None, "findings": None, "bugs_found": None})
        return out
    flagged = s >= threshold
    out["false_per_1000"] = rounded(1000.0 * flagged[clean].sum() / clean.sum()) if clean.any() else None
    out["findings"] = int(flagged.sum())
    out["precision"] = rounded(y[flagged].mean()) if flagged.any() else None
    found = len(np.unique(g[bug & flagged & y]))
    out["bugs_found"] = rounded(found / out["n_bugs"]) if out["n_bugs"] else None
    return out


def real_bug_report(
    scores,
    samples,
    rows,
    threshold: float | None,
    fix_kinds: Mapping[str, str] | None = None,
    repository: Callable[[Any], str] | None = None,
    audit: Mapping[str, str] | None = None,
) -> dict:
    """``finding_cell`` over all rows and per language; rows carry ``.sample`` and ``.label``. With
    ``fix_kinds`` ({bug id: kind}), also per kind of fix: that kind's bugs beside every clean sample
    (bugs of no known kind are left out there); with ``audit`` ({bug id: class}, e.g.
    ``realbugs.audit_classes``), per audited class the same way (``by_audit``). With ``repository``
    (sample -> its repository), also per repository: its bugs beside its own clean samples. Always per
    function length (``by_length``, `LENGTH_BUCKETS` of candidate lines): each length's bugs beside its
    clean samples."""
    si = rows.sample.numpy()
    lang = np.array([samples[int(i)].language for i in si])
    clean = np.array([not samples[int(i)].buggy_lines for i in si], dtype=bool)
    s, y = np.asarray(scores, dtype=np.float64), rows.label.numpy() > 0

    def by(keys: np.ndarray) -> dict:  # each key's rows, its bugs and its clean samples alike
        return {
            k: finding_cell(s[keys == k], y[keys == k], si[keys == k], clean[keys == k], threshold)
            for k in sorted(set(keys.tolist()))
        }

    def by_bug_class(classes: Mapping[str, str]) -> dict:  # each class's bugs beside every clean sample
        cls = np.array([classes.get(samples[int(i)].id, "") for i in si])
        cells = {}
        for k in sorted(set(cls[~clean].tolist()) - {""}):
            m = clean | (cls == k)
            cells[k] = finding_cell(s[m], y[m], si[m], clean[m], threshold)
        return cells

    out = {"threshold": rounded(threshold), "all": finding_cell(s, y, si, clean, threshold), "by_language": by(lang)}
    if fix_kinds is not None:
        out["by_fix_kind"] = by_bug_class(fix_kinds)
    if audit is not None:
        out["by_audit"] = by_bug_class(audit)
    if repository is not None:
        out["by_repository"] = by(np.array([repository(samples[int(i)]) for i in si]))
    lengths = by(row_length_buckets(si))
    out["by_length"] = {k: lengths[k] for k in LENGTH_BUCKET_NAMES if k in lengths}
    return out
