"""Latent descriptions learned from data (risk_core.latent_labels.describe_latents, docs/latents.md), on
synthetic activations: a latent that fires on one construct gets a phrase for it; one that fires
everywhere alike gets none; the method is deterministic; old-style labels are never shown."""

from __future__ import annotations

import random

import torch

from risk_core.evaluate import LabelConfig, describe_latents, feature_phrase, token_features

LINES = [
    ("if i <= n:", ["if", " i", " <=", " n", ":"]),
    ("total = total / count", ["total", " =", " total", " /", " count"]),
    ("items.append(x)", ["items", ".", "append", "(", "x", ")"]),
    ("name = 'a'", ["name", " =", " 'a'"]),
    ("return n - 1", ["return", " n", " -", " 1"]),
    ("for k in range(len(xs)):", ["for", " k", " in", " range", "(", "len", "(", "xs", "))", ":"]),
]


def corpus(seed=0, copies=40):
    rng = random.Random(seed)
    toks, lines = [], []
    for _ in range(copies):
        for line, parts in rng.sample(LINES, len(LINES)):
            toks += parts
            lines += [line] * len(parts)
    n = len(toks)
    acts = torch.zeros(n, 3)
    noise = torch.Generator().manual_seed(seed)
    for t, (tok, line) in enumerate(zip(toks, lines)):
        if tok.strip() == "<=":
            acts[t, 0] = 3.0 + float(torch.rand(1, generator=noise))  # fires on `<=` comparisons
        if "/" in line:
            acts[t, 2] = 1.0 + float(torch.rand(1, generator=noise))  # fires on lines with a division
    acts[:, 1] = torch.rand(n, generator=noise)  # fires on everything alike: no clear description
    return acts, toks, lines


def test_a_latent_is_described_by_what_is_over_represented_in_its_top_activations():
    acts, toks, lines = corpus()
    out = describe_latents(acts, toks, lines, [11, 22, 33], LabelConfig(top_tokens=30))
    le, noise, div = out["11"], out["22"], out["33"]
    assert "comparison with `<=`" in le["label"] and le["clarity"] == 1.0
    assert le["terms"][0]["lift"] >= 2.0 and le["examples"][0]["line"] == "if i <= n:"
    assert "division" in div["label"]
    assert noise["label"] is None and noise["clarity"] < 0.5  # unclear: never shown as a reason


def test_the_method_is_reproducible_and_reports_bug_share():
    acts, toks, lines = corpus()
    buggy = [line == "if i <= n:" for line in lines]
    a = describe_latents(acts, toks, lines, [1, 2, 3], buggy=buggy)
    b = describe_latents(acts.clone(), list(toks), list(lines), [1, 2, 3], buggy=buggy)
    assert a == b
    assert a["1"]["buggy_share"] == 1.0 and a["3"]["buggy_share"] == 0.0


def test_features_and_phrases():
    feats = token_features(" <=", "while lo <= hi:")
    assert {"tok:<=", "construct:compare-le", "construct:condition"} <= feats
    assert not any(f.startswith("tok:") for f in token_features("  ", "x = 1"))
    assert feature_phrase("construct:length") == "length of a collection"
    assert feature_phrase("tok:len") == "`len`"


def test_inactive_latent_and_empty_corpus():
    out = describe_latents(torch.zeros(0, 1), [], [], [5])
    assert out["5"]["label"] is None and out["5"]["examples"] == []


def test_only_learned_descriptions_are_shown(tmp_path):
    from types import SimpleNamespace

    from risk_core.artifacts import Bundle

    fake = SimpleNamespace(
        latents={
            "1": {"label": "= / if / ' '", "examples": []},  # a bag of tokens from before: not a description
            "2": {"label": "comparison with `<=`", "clarity": 0.8, "terms": []},
            "3": {"label": None, "clarity": 0.2, "terms": []},
        }
    )
    assert Bundle.latent_label(fake, 1) is None
    assert Bundle.latent_label(fake, 2) == "comparison with `<=`"
    assert Bundle.latent_label(fake, 3) is None and Bundle.latent_label(fake, 4) is None


def test_single_character_tokens_never_describe_a_latent():
    from risk_core.latent_labels import describe_latents, token_features

    assert token_features(")", "f(x)") == set()
    assert "tok:<=" in token_features("<=", "if a <= b:")
    # a latent that fires only on closing brackets (no construct in its lines) stays undescribed
    lines = ["f(x)", "g(y)", "h(z)", "k(w)"] * 4 + ["name = value"] * 40
    toks = [")"] * 16 + ["name"] * 40
    acts = torch.tensor([[1.0]] * 16 + [[0.0]] * 40)
    (entry,) = [v for k, v in describe_latents(acts, toks, lines, [0]).items()]
    assert entry["label"] is None
