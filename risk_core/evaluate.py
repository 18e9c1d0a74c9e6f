"""Evaluation of line risk scorers on labeled data, all methods on the very same candidate lines.

Metrics (numpy only):
- per program: top-1 / top-3 hit rate (a buggy line among the k highest-scored candidate lines),
  over programs with at least one labeled buggy candidate line;
- per line: AUROC, AUPRC (average precision), ECE (10 equal-width bins; probabilistic methods only);
- per sample, where ``passed`` is known: AUROC of the max line score against failure.

Methods: random (seeded), surprise (max token NLL of the line), surprise-mean, entropy, raw-probe (the
bundle's probe on raw pooled states), pttrust (the bundle's probe on SAE latents).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import torch

from risk_core.errors import UsageError

METHODS = ("random", "surprise", "surprise-mean", "entropy", "raw-probe", "pttrust")
PROBABILISTIC = {"raw-probe", "pttrust"}


# ---------------------------------------------------------------------------------------------------
# metrics


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


def _r(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def cell(scores, labels, groups, probabilistic: bool) -> dict:
    h1, n = topk_hits(scores, labels, groups, 1)
    h3, _ = topk_hits(scores, labels, groups, 3)
    return {
        "top1": _r(h1 / n) if n else None,
        "top3": _r(h3 / n) if n else None,
        "auroc": _r(auroc(scores, labels)),
        "auprc": _r(auprc(scores, labels)),
        "ece": _r(ece(scores, labels)) if probabilistic else None,
        "n": int(n),
    }


def threshold_for_false_findings(scores, samples, rows, pick=None, lines_per_finding: int = 300) -> float | None:
    """The risk threshold at which clean code gets one false finding per ``lines_per_finding`` candidate
    lines: the (1 - 1/lines_per_finding) quantile of the scores of lines of clean samples (no buggy
    lines: fixed versions). ``rows`` has ``.sample`` per row; ``pick`` (bool per row) restricts the rows
    used (a validation split). None when there is no clean line or no scores."""
    if scores is None:
        return None
    clean = np.array([not samples[int(i)].buggy_lines for i in rows.sample.tolist()], dtype=bool)
    if pick is not None:
        clean &= np.asarray(pick, dtype=bool)
    if not clean.any():
        return None
    return float(np.quantile(np.asarray(scores, dtype=np.float64)[clean], 1.0 - 1.0 / lines_per_finding))


def finding_cell(scores, labels, groups, clean, threshold: float | None) -> dict:
    """Top-1/3/5 and AUROC over the rows of buggy samples; at ``threshold``: false findings per 1,000
    lines of clean samples and the precision of all findings (buggy and clean samples together)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    clean = np.asarray(clean, dtype=bool)
    g = np.asarray(groups)
    bug = ~clean
    out = {}
    for k in (1, 3, 5):
        h, n = topk_hits(s[bug], y[bug], g[bug], k)
        out[f"top{k}"] = _r(h / n) if n else None
    out["auroc"] = _r(auroc(s[bug], y[bug]))
    out["n_bugs"] = int(topk_hits(s[bug], y[bug], g[bug], 1)[1])
    out["n_lines"] = int(len(s))
    if threshold is None:
        out.update({"false_per_1000": None, "precision": None, "findings": None})
        return out
    flagged = s >= threshold
    out["false_per_1000"] = _r(1000.0 * flagged[clean].sum() / clean.sum()) if clean.any() else None
    out["findings"] = int(flagged.sum())
    out["precision"] = _r(y[flagged].mean()) if flagged.any() else None
    return out


def real_bug_report(scores, samples, rows, threshold: float | None) -> dict:
    """``finding_cell`` over all rows and per language; rows carry ``.sample`` and ``.label``."""
    si = rows.sample.numpy()
    lang = np.array([samples[int(i)].language for i in si])
    clean = np.array([not samples[int(i)].buggy_lines for i in si], dtype=bool)
    s, y = np.asarray(scores, dtype=np.float64), rows.label.numpy() > 0
    out = {"threshold": _r(threshold), "all": finding_cell(s, y, si, clean, threshold), "by_language": {}}
    for language in sorted(set(lang.tolist())):
        m = lang == language
        out["by_language"][language] = finding_cell(s[m], y[m], si[m], clean[m], threshold)
    return out


# ---------------------------------------------------------------------------------------------------
# scoring the methods


def method_scores(table, bundle, seed: int = 0) -> dict[str, np.ndarray]:
    """Every method's score for every row of a features.LineTable."""
    rng = np.random.default_rng(seed)
    n = int(table.labels.shape[0])
    # A tiny seeded jitter breaks ties (constant scores must not win top-k by line order).
    jitter = rng.uniform(0, 1e-9, size=n)
    out = {"random": rng.uniform(size=n)}
    if table.surprise is not None:
        sur = table.surprise.numpy().astype(np.float64)
        out["surprise"] = sur[:, 1] + jitter
        out["surprise-mean"] = sur[:, 0] + jitter
        out["entropy"] = sur[:, 2] + jitter
    with torch.no_grad():
        if bundle.raw_probe is not None and table.raw is not None:
            x = table.matrix(bundle.cfg.features.replace("sae", "raw"))
            out["raw-probe"] = bundle.raw_probe.risk(x).double().numpy() + jitter
        out["pttrust"] = probe_risk(bundle.probe, table.matrix(bundle.cfg.features), table.sample_index) + jitter
    return out


def probe_risk(probe, x: torch.Tensor, sample_index: torch.Tensor) -> np.ndarray:
    """A probe's risk for rows of many samples: a sequence (context) probe reads each sample's rows
    together, in order; a line probe reads each row alone."""
    if not getattr(probe, "sequence", False):
        return probe.risk(x).double().numpy()
    out = np.zeros(len(x))
    for s in torch.unique(sample_index).tolist():
        m = sample_index == s
        out[m.numpy()] = probe.risk(x[m]).double().numpy()
    return out


def evaluate_table(table, samples, scores: dict[str, np.ndarray], threshold: float | None = None) -> dict:
    """The report: {"methods": {M: {LANG: cell}}, "by_operator": ..., "by_sample": ..., "counts": ...,
    "findings": {M: {LANG: finding_cell}}}: the findings at ``threshold`` (the bundle's default) count
    false findings on clean samples (no buggy lines and not failing: fixed versions, passing code)."""
    si = table.sample_index.numpy()
    y = table.labels.numpy()
    langs = np.array([samples[i].language for i in si])
    ops = np.array([samples[i].operator or "none" for i in si])
    # Line-level metrics only on line-labeled samples (sample-level failures have no line labels).
    line_labeled = np.array([bool(samples[i].buggy_lines) or samples[i].passed is True for i in si])
    report: dict = {"methods": {}, "by_operator": {}, "by_sample": {}, "n_lines": {}}
    for lang in ["all"] + sorted(set(langs.tolist())):
        sel = line_labeled & ((langs == lang) if lang != "all" else True)
        report["n_lines"][lang] = {"lines": int(sel.sum()), "buggy": int(y[sel].sum())}
    for m, s in scores.items():
        prob = m in PROBABILISTIC
        per_lang = {}
        for lang in ["all"] + sorted(set(langs.tolist())):
            sel = line_labeled & ((langs == lang) if lang != "all" else True)
            per_lang[lang] = cell(s[sel], y[sel], si[sel], prob)
        report["methods"][m] = per_lang
        per_op = {}
        for op in sorted(set(ops[line_labeled].tolist())):
            sel = line_labeled & (ops == op)
            per_op[op] = cell(s[sel], y[sel], si[sel], prob)
        report["by_operator"][m] = per_op
        # per sample: max line score vs failure, where the tests were run
        sample_max: dict[int, float] = {}
        for i, v in zip(si, s):
            if samples[i].passed is not None:
                sample_max[i] = max(sample_max.get(i, -np.inf), v)
        by_lang = defaultdict(list)
        for i, v in sample_max.items():
            by_lang["all"].append((v, not samples[i].passed))
            by_lang[samples[i].language].append((v, not samples[i].passed))
        report["by_sample"][m] = {
            lang: {"auroc": _r(auroc([a for a, _ in xs], [b for _, b in xs])), "n": len(xs)}
            for lang, xs in by_lang.items()
        }
    clean = np.array([not samples[i].buggy_lines and samples[i].passed is not False for i in si], dtype=bool)
    pick = line_labeled | clean
    report["threshold"] = _r(threshold)
    report["findings"] = {}
    for m, s in scores.items():
        t = threshold if m in PROBABILISTIC else None
        report["findings"][m] = {
            lang: finding_cell(s[sel], y[sel], si[sel], clean[sel], t)
            for lang in ["all"] + sorted(set(langs.tolist()))
            for sel in [pick & ((langs == lang) if lang != "all" else True)]
        }
    report["counts"] = {
        "samples": len(samples),
        "lines": int(len(y)),
        "buggy_lines": int(y.sum()),
        "by_language": dict(Counter(s.language for s in samples)),
    }
    return report


def evaluate(loaded, bundle, samples, enc_cfg, seed: int = 0, progress=None) -> dict:
    """Score ``samples`` with every method under the bundle's encoding settings and report metrics."""
    from risk_core.features import line_table

    if not samples:
        raise UsageError("no samples to evaluate")
    bundle.check_compatible(loaded)
    table = line_table(
        loaded,
        samples,
        enc_cfg,
        sae=bundle.sae,
        framing=bundle.cfg.framing,
        keep_raw=bundle.raw_probe is not None,
        progress=progress,
    )
    threshold = (bundle.metrics or {}).get("threshold")
    report = evaluate_table(table, samples, method_scores(table, bundle, seed), threshold)
    bound = bundle.cfg.languages
    report["bundle"] = {
        "model": bundle.cfg.model_name,
        "layer": bundle.cfg.layer,
        "framing": bundle.cfg.framing,
        "features": bundle.cfg.features,
        "bound_languages": bound,
    }
    # Languages the probe never saw in binding: their figures measure cross-language transfer.
    report["cross_language"] = sorted({s.language for s in samples} - set(bound)) if bound else []
    report["seed"] = seed
    return report


def to_markdown(report: dict) -> str:
    lines = []
    methods = report["methods"]
    langs = sorted({lang for m in methods.values() for lang in m}, key=lambda x: (x != "all", x))
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for lang in langs:
        first = next(iter(methods.values())).get(lang, {})
        n_lines = report.get("n_lines", {}).get(lang, {}).get("lines", 0)
        cross = " (cross-language: not in binding)" if lang in report.get("cross_language", []) else ""
        lines += [
            f"### {lang}{cross}: {first.get('n', 0)} programs, {n_lines} lines",
            "",
            "| method | top-1 | top-3 | AUROC | AUPRC | ECE |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for m, per in methods.items():
            c = per.get(lang)
            if c:
                lines.append(
                    f"| {m} | {fmt(c['top1'])} | {fmt(c['top3'])} | {fmt(c['auroc'])} | "
                    f"{fmt(c['auprc'])} | {fmt(c['ece'])} |"
                )
        lines.append("")
    found = report.get("findings", {})
    if found:
        t = report.get("threshold")
        lines += [
            f"### findings at the bundle threshold ({fmt(t)}): top-5, false findings per 1,000 clean lines",
            "",
            "| method | language | bugs | top-5 | false / 1,000 | precision |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for m, per in found.items():
            for lang, c in per.items():
                lines.append(
                    f"| {m} | {lang} | {c['n_bugs']} | {fmt(c['top5'])} | {fmt(c['false_per_1000'])} | "
                    f"{fmt(c['precision'])} |"
                )
        lines.append("")
    ops = report.get("by_operator", {}).get("pttrust")
    if ops:
        lines += ["### pttrust by operator", "", "| operator | n | top-1 | AUROC |", "| --- | --- | --- | --- |"]
        for op, c in ops.items():
            lines.append(f"| {op} | {c['n']} | {fmt(c['top1'])} | {fmt(c['auroc'])} |")
        lines.append("")
    bs = report.get("by_sample", {})
    if any(v for v in bs.values()):
        lines += [
            "### per sample (max line score vs test failure)",
            "",
            "| method | n | AUROC |",
            "| --- | --- | --- |",
        ]
        for m, per in bs.items():
            if "all" in per:
                lines.append(f"| {m} | {per['all']['n']} | {fmt(per['all']['auroc'])} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# interpretability


def explain_line(loaded, bundle, code: str, language: str, line: int, enc_cfg, top: int = 8) -> dict:
    """The latents behind one line's score: activation, contribution to the logit, label."""
    from risk_core.features import compute_features

    bundle.check_compatible(loaded)
    ff = compute_features(
        loaded, [code], [language], enc_cfg, sae=bundle.sae, framing=bundle.cfg.framing, keep_raw=False
    )[0]
    if line not in ff.line_numbers:
        raise UsageError(f"line {line} holds no code token (file has {len(code.splitlines())} lines)")
    row = ff.line_numbers.index(line)
    x = ff.matrix(bundle.cfg.features)[row : row + 1]
    if "surprise" in bundle.cfg.features:
        x = torch.nan_to_num(x, nan=0.0)
    with torch.no_grad():
        risk = float(bundle.probe.risk(x)[0])
    contrib = bundle.probe.contributions(x)[0]
    n_lat = ff.latents.shape[1]
    order = torch.argsort(contrib.abs(), descending=True)[:top]
    latents = []
    for i in order.tolist():
        if float(contrib[i]) == 0.0:
            continue
        name = i if i < n_lat else ["nll_mean", "nll_max", "entropy_mean"][i - n_lat]
        latents.append(
            {
                "index": name,
                "activation": round(float(x[0, i]), 4),
                "contribution": round(float(contrib[i]), 4),
                "label": bundle.latent_label(i) if i < n_lat else "surprise",
            }
        )
    return {"line": line, "text": code.splitlines()[line - 1], "risk": round(risk, 4), "latents": latents}


# Latent descriptions learned from data (docs/latents.md). The method, "overrepresentation-v1":
#
# 1. Run the model over a corpus and read every token of every *candidate* code line (the probe
#    never sees comments, docstrings or blank lines), with the SAE latents it excites.
# 2. Describe each token by a few features: the token itself (``tok:<=``) and the constructs of the
#    line it is on (``construct:compare-le``, regexes below, language-agnostic).
# 3. For each latent, take its top activations (the ``top_tokens`` tokens where it fires most).
#    A feature's *coverage* is the share of those tokens that carry it; its *base rate* the share of
#    all corpus tokens that do; its *lift* coverage / base rate.
# 4. Terms are the features with lift >= ``min_lift`` and support >= ``min_support``, ranked by
#    coverage * log2(lift) (over-represented *and* common among the top activations); up to
#    ``max_terms`` are kept while each adds coverage. A token term is dropped for a construct term
#    that covers all of its activations (the construct says it in words).
# 5. *Clarity* is the share of the top activations that carry at least one kept term. A latent is
#    described ("label") only when clarity >= ``min_clarity``; otherwise its label is null and the
#    bot never shows it as a reason. Ties break by feature name, so the result is reproducible.

LABEL_METHOD = "overrepresentation-v1"

CONSTRUCTS: tuple[tuple[str, str, str], ...] = (
    # (feature name, phrase for a reviewer, regex over the line's text)
    ("compare-le", "comparison with `<=`", r"<="),
    ("compare-ge", "comparison with `>=`", r">="),
    ("compare-lt-gt", "strict comparison `<` / `>`", r"(?<![<>=\-])[<>](?![<>=])"),
    ("compare-eq", "equality test `==` / `!=`", r"[=!]=="),
    ("length", "length of a collection", r"\blen\(|\.length\b|\.size\(\)|\.len\(\)|\bcount\b"),
    ("range-bound", "loop or range bound", r"\brange\(|\bfor\b.*;.*[<>]|\.\.=?"),
    ("division", "division", r"(?<![/*])/(?![/*=])|\bdiv\b"),
    ("modulo", "modulo `%`", r"%(?![sdrf(])"),
    ("off-by-one", "`+ 1` / `- 1` adjustment", r"[+-]\s*1\b"),
    ("index", "indexing with arithmetic", r"\[[^\]]*[+\-*/%][^\]]*\]"),
    ("slice", "slice bounds", r"\[[^\]]*:[^\]]*\]"),
    ("augmented", "accumulation (`+=`, `-=`)", r"[+\-*/]="),
    ("logic", "boolean `and` / `or`", r"\band\b|\bor\b|&&|\|\|"),
    ("negation", "negation", r"\bnot\b|![^=]"),
    ("null", "null / None check", r"\b(None|null|nil|undefined)\b"),
    ("return", "return value", r"^\s*return\b"),
    ("condition", "branch condition", r"^\s*(if|elif|else if|while)\b|\?.*:"),
    ("loop", "loop header", r"^\s*(for|while|do)\b"),
    ("raise", "error raising / handling", r"\b(raise|throw|except|catch|try)\b"),
    ("definition", "function signature", r"^\s*(def|function|fn|func|public|private|static)\b"),
    ("call-args", "call with several arguments", r"\w\([^()]*,[^()]*\)"),
    ("string-format", "string formatting", r"f[\"']|\.format\(|%[sd]|\$\{|`[^`]*\$"),
    ("import", "import", r"^\s*(import|from|#include|use|using|require)\b"),
)
_CONSTRUCT_RE = tuple((name, re.compile(rx)) for name, _, rx in CONSTRUCTS)
_PHRASES = {f"construct:{name}": phrase for name, phrase, _ in CONSTRUCTS}


@dataclass
class LabelConfig:
    """How latent descriptions are learned (see the method above)."""

    top_tokens: int = 64
    """The top activations of each latent that are summarised."""
    min_lift: float = 2.0
    """A term must be at least this many times as common in the top activations as in the corpus."""
    min_support: int = 4
    """A term must carry at least this many of the top activations."""
    min_clarity: float = 0.5
    """A latent is described only when its terms cover at least this share of its top activations."""
    max_terms: int = 2
    """At most this many terms per description."""
    n_examples: int = 5
    """Example lines kept per latent (distinct, by activation)."""


def token_features(token: str, line: str) -> set[str]:
    """The features of one token: itself (stripped; whitespace-only tokens have none) and the
    constructs its line holds."""
    feats = {f"construct:{name}" for name, rx in _CONSTRUCT_RE if rx.search(line)}
    tok = token.strip()
    if tok:
        feats.add(f"tok:{tok}")
    return feats


def feature_phrase(feature: str) -> str:
    """A feature as a reviewer reads it: ``construct:compare-le`` -> ``comparison with `<=```,
    ``tok:len`` -> ```len```."""
    if feature in _PHRASES:
        return _PHRASES[feature]
    return "`" + feature.split(":", 1)[1].replace("`", "'") + "`"


def describe_latents(
    acts,
    token_texts: list[str],
    line_texts: list[str],
    latents: list[int],
    cfg: LabelConfig | None = None,
    buggy=None,
    weights: dict[int, float] | None = None,
) -> dict:
    """Descriptions of ``latents`` from token activations (the statistics half of `label_latents`).

    ``acts``: [T, len(latents)] activations of each latent on each corpus token; ``token_texts`` and
    ``line_texts``: per token, its text and its line's text; ``buggy``: optional per-token booleans
    (the token's line is a known bug line). Returns ``{str(latent): entry}`` where entry holds
    ``label`` (None when unclear), ``clarity``, ``terms`` (feature, phrase, coverage, base_rate,
    lift), ``examples`` and, with ``buggy``, ``buggy_share`` of the top activations.
    """
    cfg = cfg or LabelConfig()
    acts = torch.as_tensor(acts, dtype=torch.float32)
    n_tok = acts.shape[0]
    feats = [token_features(t, l) for t, l in zip(token_texts, line_texts)]
    base = Counter(f for fs in feats for f in fs)
    out: dict = {}
    for j, lat in enumerate(latents):
        a = acts[:, j] if n_tok else acts.new_zeros(0)
        order = sorted(range(n_tok), key=lambda t: (-float(a[t]), t))
        top = [t for t in order[: cfg.top_tokens] if float(a[t]) > 0]
        entry: dict = {"label": None, "clarity": 0.0, "terms": [], "examples": []}
        if weights and lat in weights:
            entry["weight"] = round(float(weights[lat]), 5)
        if top:
            count = Counter(f for t in top for f in feats[t])
            scored = []
            for f, k in count.items():
                cov, rate = k / len(top), base[f] / n_tok
                lift = cov / rate
                if k >= cfg.min_support and lift >= cfg.min_lift:
                    scored.append((cov * math.log2(lift), f, cov, rate, lift))
            scored.sort(key=lambda x: (-x[0], x[1]))
            cover = {f: {t for t in top if f in feats[t]} for _, f, *_ in scored}
            constructs = [f for _, f, *_ in scored if f.startswith("construct:")]
            kept, covered = [], set()
            for _, f, cov, rate, lift in scored:
                if len(kept) >= cfg.max_terms:
                    break
                if f.startswith("tok:") and any(cover[c] >= cover[f] for c in constructs):
                    continue  # a construct covers the same activations and says it in words
                mine = cover[f]
                if not mine - covered:
                    continue  # adds nothing the terms before it do not already cover
                covered |= mine
                kept.append(
                    {
                        "feature": f,
                        "phrase": feature_phrase(f),
                        "coverage": round(cov, 4),
                        "base_rate": round(rate, 4),
                        "lift": round(lift, 2),
                    }
                )
            clarity = len(covered) / len(top)
            entry["terms"], entry["clarity"] = kept, round(clarity, 4)
            if kept and clarity >= cfg.min_clarity:
                entry["label"] = ", ".join(t["phrase"] for t in kept)
            if buggy is not None:
                entry["buggy_share"] = round(sum(bool(buggy[t]) for t in top) / len(top), 4)
            seen: set[str] = set()
            for t in top:
                text = line_texts[t].strip()
                if text and text not in seen:
                    seen.add(text)
                    entry["examples"].append({"activation": round(float(a[t]), 4), "line": text})
                if len(entry["examples"]) >= cfg.n_examples:
                    break
        out[str(lat)] = entry
    return out


def label_latents(
    loaded,
    bundle,
    codes: list[str],
    languages: list[str],
    enc_cfg,
    n_latents: int = 32,
    n_examples: int = 5,
    batch_files: int = 16,
    cfg: LabelConfig | None = None,
    buggy_lines: list[list[int]] | None = None,
) -> dict:
    """Describe the probe's heaviest risk-raising latents (positive weight) from the corpus
    ``codes`` by `describe_latents` (method above). Returns ``{str(index): entry}``, plus a
    ``"_method"`` entry recording the method name and its settings (so a run can be reproduced)."""
    from risk_core.candidates import candidate_mask
    from risk_core.encode import encode_tokens
    from risk_core.features import frame_text

    cfg = cfg or LabelConfig(n_examples=n_examples)
    w = bundle.probe.feature_weights().cpu()
    n_lat = bundle.sae.num_latents
    w = w[:n_lat]
    heavy = [int(i) for i in torch.argsort(w, descending=True)[:n_latents] if float(w[i]) > 0]
    if not heavy:
        return {}
    idx = torch.tensor(heavy)
    tok = loaded.tokenizer
    all_acts, tok_texts, line_texts, buggy = [], [], [], []
    for b in range(0, len(codes), batch_files):
        chunk_codes, chunk_langs = codes[b : b + batch_files], languages[b : b + batch_files]
        framed = [frame_text(c, lang, bundle.cfg.framing, tok) for c, lang in zip(chunk_codes, chunk_langs)]
        states = encode_tokens(loaded, [t for t, _ in framed], enc_cfg)
        for k, (code, lang, (text, off), ts) in enumerate(zip(chunk_codes, chunk_langs, framed, states)):
            bug = set(buggy_lines[b + k]) if buggy_lines else set()
            lines = code.splitlines()
            tl = ts.token_lines - off
            keep = (tl >= 0) & (tl < len(lines))
            # Only tokens of candidate code lines: the probe never sees comments or docstrings.
            cand = torch.tensor(candidate_mask(code, lang) or [False], dtype=torch.bool)
            keep &= cand[tl.clamp(0, max(len(lines) - 1, 0))]
            if not keep.any():
                continue
            ids = tok(text, add_special_tokens=False)["input_ids"]
            ids = [t for t, kk in zip(ids, keep.tolist()) if kk]
            with torch.no_grad():
                dev = next(bundle.sae.parameters()).device
                acts = bundle.sae.encode_dense(ts.states[keep].float().to(dev))[:, idx.to(dev)].cpu()
            all_acts.append(acts)
            for t, n in zip(ids, tl[keep].tolist()):
                tok_texts.append(tok.decode([t]))
                line_texts.append(lines[n])
                buggy.append(n + 1 in bug)
    acts = torch.cat(all_acts) if all_acts else torch.zeros(0, len(heavy))
    weights = {lat: float(w[lat]) for lat in heavy}
    out = describe_latents(
        acts, tok_texts, line_texts, heavy, cfg, buggy=buggy if buggy_lines else None, weights=weights
    )
    out["_method"] = {"name": LABEL_METHOD, **asdict(cfg), "files": len(codes), "tokens": len(tok_texts)}
    return out
