"""Evaluation of line risk scorers on labeled data, all methods on the very same candidate lines.

The metrics are ``risk_core.metrics``'s (re-exported here); per sample, where ``passed`` is known:
AUROC of the max line score against failure. Latent descriptions are ``risk_core.latent_labels``'s
(re-exported here too: the CLI and scripts import them from this module).

Methods: random (seeded), surprise (max token NLL of the line), surprise-mean, entropy, raw-probe (the
bundle's probe on raw pooled states), pttrust (the bundle's probe on SAE latents).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

from risk_core.errors import UsageError
from risk_core.features import raw_counterpart
from risk_core.latent_labels import (  # noqa: F401  (re-exported)
    CONSTRUCTS,
    LABEL_METHOD,
    LabelConfig,
    describe_latents,
    feature_phrase,
    label_latents,
    token_features,
)
from risk_core.metrics import (  # noqa: F401  (re-exported)
    LENGTH_BUCKET_NAMES,
    auprc,
    auroc,
    cell,
    ece,
    finding_cell,
    real_bug_report,
    rounded,
    row_length_buckets,
    threshold_for_false_findings,
    topk_hits,
)

METHODS = ("random", "surprise", "surprise-mean", "entropy", "raw-probe", "pttrust")
PROBABILISTIC = {"raw-probe", "pttrust"}


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
            x = table.matrix(raw_counterpart(bundle.cfg.features))
            out["raw-probe"] = bundle.raw_probe.risk(x).double().numpy() + jitter
        out["pttrust"] = probe_risk(bundle.probe, table.matrix(bundle.cfg.features), table.sample_index) + jitter
    return out


def probe_risk(probe, x: torch.Tensor, sample_index: torch.Tensor) -> np.ndarray:
    """A probe's risk for rows of many samples: a sequence (context) probe reads each sample's rows
    together, in order; a line probe reads each row alone."""
    if not getattr(probe, "sequence", False):
        return probe.risk(x).double().numpy()
    order = torch.argsort(sample_index, stable=True)  # stable: each sample's rows stay in file order
    counts = torch.unique_consecutive(sample_index[order], return_counts=True)[1].tolist()
    out = np.zeros(len(x))
    if counts:
        risks = probe.risk_of_files(list(torch.split(x[order], counts)))
        out[order.numpy()] = torch.cat(risks).double().numpy()
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
            lang: {"auroc": rounded(auroc([a for a, _ in xs], [b for _, b in xs])), "n": len(xs)}
            for lang, xs in by_lang.items()
        }
    clean = np.array([not samples[i].buggy_lines and samples[i].passed is not False for i in si], dtype=bool)
    pick = line_labeled | clean
    report["threshold"] = rounded(threshold)
    report["findings"], report["findings_by_length"] = {}, {}
    lengths = row_length_buckets(si)
    for m, s in scores.items():
        t = threshold if m in PROBABILISTIC else None
        report["findings"][m] = {
            lang: finding_cell(s[sel], y[sel], si[sel], clean[sel], t)
            for lang in ["all"] + sorted(set(langs.tolist()))
            for sel in [pick & ((langs == lang) if lang != "all" else True)]
        }
        report["findings_by_length"][m] = {
            k: finding_cell(s[sel], y[sel], si[sel], clean[sel], t)
            for k in LENGTH_BUCKET_NAMES
            for sel in [pick & (lengths == k)]
            if sel.any()
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
    from risk_core.features import line_table, uses_raw

    if not samples:
        raise UsageError("no samples to evaluate")
    bundle.check_compatible(loaded)
    table = line_table(
        loaded,
        samples,
        enc_cfg,
        sae=bundle.sae,
        framing=bundle.cfg.framing,
        keep_raw=bundle.raw_probe is not None or uses_raw(bundle.cfg.features),
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
            f"### findings at the bundle threshold ({fmt(t)}): top-5, false findings per 1,000 clean lines, "
            "bugs with a finding on a buggy line",
            "",
            "| method | language | bugs | top-5 | false / 1,000 | precision | bugs found |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for m, per in found.items():
            for lang, c in per.items():
                lines.append(
                    f"| {m} | {lang} | {c['n_bugs']} | {fmt(c['top5'])} | {fmt(c['false_per_1000'])} | "
                    f"{fmt(c['precision'])} | {fmt(c.get('bugs_found'))} |"
                )
        lines.append("")
    by_length = report.get("findings_by_length", {}).get("pttrust")
    if by_length and report.get("threshold") is not None:
        lines += [
            "### pttrust findings by function length (candidate lines): a line's risk falls with its "
            "function's length, so findings gather in short functions",
            "",
            "| length | bugs | findings | false / 1,000 | precision | bugs found |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k, c in by_length.items():
            lines.append(
                f"| {k} | {c['n_bugs']} | {c['findings']} | {fmt(c['false_per_1000'])} | {fmt(c['precision'])} | "
                f"{fmt(c['bugs_found'])} |"
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
    """What is behind one line's score. ``latents``: the ``top`` SAE latents by the size of their
    contribution to the logit, with activation and label. ``inputs``: the bundle's other inputs, one
    entry per kind (an sae+raw bundle's raw states, a surprise bundle's surprise), their summed
    contribution and their largest three: hundreds of unnamed dimensions would otherwise crowd out
    every latent a reviewer can read. The line is read as the review reads it: in its scoring window
    (``candidates.scoring_window``), through the bundle's probe (a context probe sees the window's
    candidate lines), so the risk is the review's."""
    from risk_core.candidates import candidate_mask, definition_spans, scoring_window
    from risk_core.features import SURPRISE_NAMES, compute_features, uses_raw
    from risk_core.score import candidate_rows, probe_lines, window_text

    bundle.check_compatible(loaded)
    n_lines = len(code.splitlines())
    if not 1 <= line <= n_lines or not candidate_mask(code, language)[line - 1]:
        raise UsageError(f"line {line} holds no code token (file has {n_lines} lines)")
    lo, hi = scoring_window(definition_spans(code, language), n_lines, line)
    text = window_text(code, lo, hi)
    ff = compute_features(
        loaded,
        [text],
        [language],
        enc_cfg,
        sae=bundle.sae,
        framing=bundle.cfg.framing,
        keep_raw=uses_raw(bundle.cfg.features),
    )[0]
    if ff.latents is None:  # compute_features was given the bundle's SAE
        raise UsageError("the bundle has no SAE latents to explain")
    rows = candidate_rows(ff, text, language)
    row_of = {ff.line_numbers[i]: r for r, i in enumerate(rows)}
    if line - lo + 1 not in row_of:
        raise UsageError(f"line {line} holds no code token (file has {n_lines} lines)")
    x_all = ff.matrix(bundle.cfg.features)[rows]
    r = row_of[line - lo + 1]
    with torch.no_grad():
        risks, contribs = probe_lines(bundle.probe, x_all, [r])
    risk, contrib = float(risks[0]), contribs[0]
    n_lat = ff.latents.shape[1]
    extra = list(SURPRISE_NAMES) if bundle.cfg.features.endswith("+surprise") else []

    def name_of(i: int) -> str:
        return extra[i - n_lat] if extra else f"raw{i - n_lat}"

    lat = contrib[:n_lat]
    latents = [
        {
            "index": i,
            "activation": round(float(x_all[r, i]), 4),
            "contribution": round(float(lat[i]), 4),
            "label": bundle.latent_label(i),
        }
        for i in torch.argsort(lat.abs(), descending=True)[:top].tolist()
        if float(lat[i]) != 0.0
    ]
    inputs = []
    rest = contrib[n_lat:]
    if len(rest):
        largest = torch.argsort(rest.abs(), descending=True)[:3].tolist()
        inputs.append(
            {
                "kind": "surprise" if extra else "raw states",
                "count": len(rest),
                "contribution": round(float(rest.sum()), 4),
                "largest": [{"index": name_of(n_lat + i), "contribution": round(float(rest[i]), 4)} for i in largest],
            }
        )
    return {
        "line": line,
        "text": code.splitlines()[line - 1],
        "risk": round(risk, 4),
        "latents": latents,
        "inputs": inputs,
    }
