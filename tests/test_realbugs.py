"""The real-bug experiment helpers: the bind split's validation repositories and the line poolings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from risk_core.feature_cache import LineRows, pool_rows
from risk_core.realbugs import bind_val_split, pool_encoded, pool_token_risk, repo_of


def _samples(counts: dict[str, int]):
    return [SimpleNamespace(path=f"{repo}:src/f{i}.py@abc#L1") for repo, n in counts.items() for i in range(n)]


def test_validation_is_whole_repositories_about_the_fraction_asked():
    samples = _samples({f"owner/r{i}": 10 + i for i in range(12)})
    tr, va = bind_val_split(samples, fraction=0.15)
    assert sorted(tr + va) == list(range(len(samples)))
    train_repos, val_repos = {repo_of(samples[i]) for i in tr}, {repo_of(samples[i]) for i in va}
    assert train_repos and val_repos and not train_repos & val_repos
    assert 0.15 * len(samples) <= len(va) < 0.5 * len(samples)
    assert bind_val_split(samples, fraction=0.15) == (tr, va)  # by hash of the name: stable


def test_a_single_repository_still_gets_a_validation_split():
    tr, va = bind_val_split(_samples({"owner/only": 5}))
    assert va == list(range(5)) and tr == []


def test_token_risks_pool_to_line_max_and_soft_max():
    risk = torch.tensor([0.1, 0.9, 0.2, 0.2, 0.5])
    row = torch.tensor([0, 0, 1, 1, 2])
    assert pool_token_risk(risk, row, 3, "max").tolist() == pytest.approx([0.9, 0.2, 0.5])
    soft = pool_token_risk(risk, row, 3, "softmax")
    assert soft[1] == pytest.approx(0.2) and soft[2] == pytest.approx(0.5)
    assert 0.5 < soft[0] < 0.9  # between the mean and the max of its tokens


def test_encoded_pooling_matches_pooling_the_encoded_tokens():
    torch.manual_seed(0)
    states = torch.randn(7, 4)
    rows = LineRows(
        sample=torch.tensor([0, 0, 1]),
        line=torch.tensor([1, 2, 1]),
        label=torch.tensor([0.0, 1.0, 0.0]),
        token_row=torch.tensor([0, 0, -1, 1, 2, 2, 2]),
    )
    fn = torch.relu
    for pooling in ("mean", "max", "last"):
        got = pool_encoded(states, rows, fn, 4, pooling, chunk=3)  # chunks cut through a line
        assert torch.allclose(got, pool_rows(fn(states), rows, pooling), atol=1e-6)
    # last: row 0 is tokens 0-1, row 1 token 3, row 2 tokens 4-6; a row with no token stays 0
    assert torch.equal(pool_rows(states, rows, "last"), states[[1, 3, 6]])
    rows.token_row = torch.tensor([0, 0, -1, -1, 2, 2, 2])
    assert torch.equal(pool_rows(states, rows, "last")[1], torch.zeros(4))


def test_the_table_shows_bind_samples_and_validation_beside_held_out_figures():
    from risk_core.realbugs import markdown_table

    cell = {"top1": 0.25, "top3": 0.5, "top5": 0.6, "auroc": 0.73, "false_per_1000": 2.0, "precision": 0.5}
    rows = [
        {"variant": "random", "all": {**cell, "n_bugs": 3, "n_lines": 40}, "by_language": {"go": cell}},
        {
            "variant": "gru",
            "bind_samples": 3424,
            "all": cell,
            "by_language": {"python": cell},
            "validation": {**cell, "top1": 0.29, "auroc": 0.75},
        },
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0].split(" | ")[1] == "bind samples" and lines[0].endswith("validation top-1 / AUROC |")
    assert lines[2].startswith("| random | – | 0.25") and lines[2].endswith("| – | – |")  # no python, no validation
    assert lines[3].startswith("| gru | 3,424 | 0.25") and lines[3].endswith("| – | 0.25 / 0.73 | 0.29 / 0.75 |")
    assert lines[-1] == "3 held-out bugs, 40 candidate lines (buggy and fixed versions)."
