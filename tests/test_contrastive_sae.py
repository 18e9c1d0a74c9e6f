"""The contrastive SAE phase: which fixed lines pair with a bug's lines, which tokens a pair reads, and
that the margin term (and only it) pushes a bug's latents away from its fix's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import SCRIPTS

from risk_core.contrastive_sae import (
    ContrastiveConfig,
    FixPairs,
    line_pool,
    pair_distance,
    replaced_lines,
    train_contrastive,
)
from risk_core.data.jsonl import Sample, write_jsonl
from risk_core.errors import UsageError
from risk_core.sae import SaeConfig, SparseCoder

BUGGY = "def f(xs):\n    n = len(xs)\n    for i in range(n + 1):\n        print(xs[i])\n    return n\n"
FIXED = (
    "def f(xs):\n    n = len(xs)\n    # the last index is n - 1\n    for i in range(n):\n        print(xs[i])\n"
    "    return n\n"
)


def test_replaced_lines_are_the_fixed_lines_of_the_blocks_that_touch_a_labeled_line():
    # difflib puts the inserted comment in the same block: its tokens are not a candidate line's, so
    # fix_pairs reads line 4 alone (below)
    assert replaced_lines(BUGGY, FIXED, [3]) == [3, 4]
    assert replaced_lines(BUGGY, FIXED, [5]) == []  # an unchanged line has no replacement
    deleted = "def f(xs):\n    n = len(xs)\n    return n\n"
    assert replaced_lines(BUGGY, deleted, [3, 4]) == []  # a fix that only deletes pairs with nothing
    two = BUGGY.replace("print(xs[i])", "print(xs[i], end='')").replace("n + 1", "n")
    assert replaced_lines(BUGGY, two, [3, 4]) == [3, 4]


def test_config_refuses_what_cannot_train():
    for bad in ({"steps": 0}, {"weight": -1.0}, {"margin": 0.0}, {"margin": 2.5}, {"lr": 0.0}):
        with pytest.raises(UsageError):
            ContrastiveConfig(**bad)


def _sae(d: int = 16, latents: int = 12, k: int = 4) -> SparseCoder:
    torch.manual_seed(0)
    sae = SparseCoder(d, SaeConfig(num_latents=latents, k=k))
    return sae


def test_line_pool_is_the_mean_of_each_groups_token_latents():
    sae = _sae()
    states = torch.randn(10, 16)
    groups = [torch.tensor([0, 1, 2]), torch.tensor([5]), torch.tensor([7, 9])]
    z = line_pool(sae, states, groups)
    with torch.no_grad():
        for g, row in zip(groups, z):
            torch.testing.assert_close(row, sae.encode_dense(states[g]).mean(0))


def _near_pairs(n_pairs: int, d: int, seed: int) -> tuple[torch.Tensor, FixPairs]:
    """States whose pairs differ by a small offset along one fixed direction: a bug and its fix read
    almost alike, as real ones do."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n_pairs, d, generator=g)
    direction = torch.zeros(d)
    direction[0] = 1.0
    states = torch.cat([base, base + 0.3 * direction, torch.randn(2000, d, generator=g)])
    pairs = FixPairs([torch.tensor([i]) for i in range(n_pairs)], [torch.tensor([n_pairs + i]) for i in range(n_pairs)])
    return states, pairs


def test_the_margin_term_pushes_pairs_apart_and_reconstruction_alone_does_not():
    d = 16
    states, pairs = _near_pairs(200, d, seed=0)
    train_pairs, val_pairs = pairs.subset(list(range(150))), pairs.subset(list(range(150, 200)))
    tokens = torch.arange(400, len(states))
    train_tokens, val_tokens = tokens[:1500], tokens[1500:]
    results = {}
    for weight in (0.0, 4.0):
        sae = _sae(d)
        sae.fit_to_data(states[tokens])
        cfg = ContrastiveConfig(steps=300, batch_tokens=128, batch_pairs=32, weight=weight, margin=0.3, lr=1e-2)
        results[weight] = train_contrastive(sae, states, train_tokens, train_pairs, val_tokens, val_pairs, cfg)
        with torch.no_grad():
            assert results[weight]["after"]["pair_distance_median"] == pytest.approx(
                float(pair_distance(sae, states, val_pairs).median()), abs=1e-6
            )
    before = results[4.0]["before"]["pair_distance_median"]
    assert results[4.0]["after"]["pair_distance_median"] > 2 * before
    assert results[4.0]["after"]["pair_distance_median"] > 2 * results[0.0]["after"]["pair_distance_median"]
    assert results[4.0]["after"]["pairs_beyond_margin"] > results[0.0]["after"]["pairs_beyond_margin"]
    assert results[4.0]["after"]["fvu"] < 1.0  # still a reconstruction, not only a separator
    assert [h["step"] for h in results[4.0]["history"]] == [0, 300]


def test_the_script_pairs_bugs_with_their_fixes_and_writes_a_loadable_sae(tmp_path, tiny_model_dir):
    from risk_core.feature_cache import build_cache
    from risk_core.model_loading import load_model
    from risk_core.realbugs import Split, fix_pairs

    def sample(repo: str, i: int, code: str, buggy: list[int], fixed: bool = False) -> Sample:
        sid = f"{repo}:c{i}:a.py" + (":fixed" if fixed else "")
        return Sample(
            id=sid,
            language="python",
            path=f"{repo}:a.py@c{i}#L1",
            code=code,
            buggy_lines=buggy,
            operator="git-fix-fixed" if fixed else "git-fix",
        )

    data = []
    for r in range(4):  # four repositories: the validation split takes whole ones
        repo = f"o/r{r}"
        data += [sample(repo, 0, BUGGY, [3]), sample(repo, 0, FIXED, [], fixed=True)]
        data.append(sample(repo, 1, BUGGY.replace("print", "log"), [4]))  # no fixed version kept: no pair
    write_jsonl(tmp_path / "d.jsonl", data)
    tiny = load_model(str(tiny_model_dir), device="cpu")
    cache = build_cache(tiny, data, (2,), tmp_path / "c", chunk=4, echo=True)
    spec = f"{cache}={tmp_path / 'd.jsonl'}"

    split = Split([spec], (), echo_layers=(2,))
    pairs, owners = fix_pairs(split, list(range(len(data))))
    assert owners == [0, 3, 6, 9]
    ts, tl = split.tokens.token_sample, split.tokens.token_line
    for (b, f), i in zip(zip(pairs.buggy, pairs.fixed), owners):
        assert set(ts[b].tolist()) == {i} and set(tl[b].tolist()) == {2}  # line 3 of the bug
        assert set(ts[f].tolist()) == {i + 1} and set(tl[f].tolist()) == {3}  # line 4 of its fix
    assert fix_pairs(split, [0, 2])[1] == []  # the fix is not among the samples kept

    start = tmp_path / "start"
    sae = SparseCoder(tiny.d_model, SaeConfig(num_latents=8, k=2))
    sae.fit_to_data(split.states(2, echo=True).float())
    sae.save(start, extra={"layer": 2})
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "realbugs-contrastive-sae"),
            str(start),
            str(out),
            "2",
            spec,
            "--steps",
            "3",
            "--batch-tokens",
            "8",
            "--batch-pairs",
            "2",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["layer"] == 2 and cfg["contrastive"]["steps"] == 3 and cfg["contrastive"]["train_pairs"] >= 1
    assert cfg["contrastive"]["bind_data_sha256"] == split.tokens.meta["key"]["data_sha256"]
    assert SparseCoder.load(out).num_latents == 8
    assert json.loads((out / "metrics.json").read_text())["after"]["step"] == 3

    bad = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-contrastive-sae"), str(tmp_path / "nope"), str(out), "2", spec],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
