"""Latent descriptions learned from data (docs/latents.md): which tokens and constructs make an SAE
latent fire, in words a reviewer reads, or no label when the latent is not clear enough."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass

import torch

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
    """The features of one token: itself (stripped) and the constructs its line holds. A token of
    one character (``)``, ``{``, ``i``) is no feature: "fires on `)`" tells a reviewer nothing, and
    such latents must stay undescribed rather than be shown with a bracket for a reason."""
    feats = {f"construct:{name}" for name, rx in _CONSTRUCT_RE if rx.search(line)}
    tok = token.strip()
    if len(tok) >= 2:
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


def heaviest_latents(bundle, n_latents: int) -> dict[int, float]:
    """The probe's ``n_latents`` most important latents with positive weight, heaviest first: {index:
    weight} (``probe.feature_weights()`` over the SAE part of its input)."""
    w = bundle.probe.feature_weights().detach().cpu()[: bundle.sae.num_latents]
    return {int(i): float(w[i]) for i in torch.argsort(w, descending=True)[:n_latents] if float(w[i]) > 0}


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
    weights = heaviest_latents(bundle, n_latents)
    heavy = list(weights)
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
                acts = bundle.sae.encode_dense(ts.read(enc_cfg)[keep].float().to(dev))[:, idx.to(dev)].cpu()
            all_acts.append(acts)
            for t, n in zip(ids, tl[keep].tolist()):
                tok_texts.append(tok.decode([t]))
                line_texts.append(lines[n])
                buggy.append(n + 1 in bug)
    acts = torch.cat(all_acts) if all_acts else torch.zeros(0, len(heavy))
    out = describe_latents(
        acts, tok_texts, line_texts, heavy, cfg, buggy=buggy if buggy_lines else None, weights=weights
    )
    out["_method"] = {"name": LABEL_METHOD, **asdict(cfg), "files": len(codes), "tokens": len(tok_texts)}
    return out
