"""The real-bug experiment helpers: the bind split's validation repositories and the line poolings."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from risk_core.feature_cache import LineRows, pool_rows
from risk_core.realbugs import bind_val_split, centered_in_sample, pool_encoded, pool_token_risk, repo_of


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


def test_centering_takes_each_samples_own_mean_out_of_its_rows():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0], [10.0, 0.0], [4.0, 4.0], [7.0, 2.0]], dtype=torch.bfloat16)
    sample = torch.tensor([0, 0, 2, 1, 1])  # sample 2 has one row; ids need not be in order
    out = centered_in_sample(x, sample)
    assert out.dtype == torch.float32
    assert out.tolist() == [[-1.0, -2.0], [1.0, 2.0], [0.0, 0.0], [-1.5, 1.0], [1.5, -1.0]]


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


def _sample(id: str, code: str, buggy: list[int], language: str = "python"):
    from risk_core.data.jsonl import Sample

    return Sample(id=id, language=language, path=f"o/r:{id}", code=code, buggy_lines=buggy, operator="git-fix")


def test_fix_kinds_pair_each_bug_with_its_fixed_version_and_filter_training():
    from risk_core.errors import UsageError
    from risk_core.realbugs import fix_kinds, keep_fix_kinds

    code = "a = 1\nb = a\nreturn b\n"
    samples = [
        _sample("x", code, [2]),
        _sample("x:fixed", code.replace("b = a", "b = a + 1"), []),
        _sample("y", code, [3]),
        _sample("y:fixed", code.replace("return b", "check(b)\nreturn b"), []),
        _sample("z", code, [1]),  # its fixed version is not there: no kind
    ]
    kinds = fix_kinds(samples)
    assert kinds == {"x": "replace", "y": "insert"}
    assert keep_fix_kinds(samples, [0, 1, 2, 3], kinds, {"replace"}) == [0, 1, 3]  # clean samples stay
    with pytest.raises(UsageError, match="1 bind bugs"):
        keep_fix_kinds(samples, [0, 4], kinds, {"replace"})


def test_the_report_per_kind_of_fix_puts_every_clean_sample_beside_each_kind():
    from risk_core.metrics import real_bug_report

    samples = [_sample("x", "", [1]), _sample("y", "", [2]), _sample("x:fixed", "", [])]
    rows = SimpleNamespace(
        sample=torch.tensor([0, 0, 1, 1, 2, 2]), label=torch.tensor([1, 0, 0, 1, 0, 0]), line=torch.arange(6)
    )
    scores = [0.9, 0.1, 0.8, 0.2, 0.95, 0.0]  # x found first, y not; one clean line above the threshold
    rep = real_bug_report(scores, samples, rows, 0.5, {"x": "replace", "y": "insert"})
    assert rep["by_fix_kind"]["replace"]["top1"] == 1.0 and rep["by_fix_kind"]["insert"]["top1"] == 0.0
    assert rep["by_fix_kind"]["insert"]["false_per_1000"] == rep["all"]["false_per_1000"] == 500.0
    assert "by_fix_kind" not in real_bug_report(scores, samples, rows, 0.5)


def test_the_report_per_audited_class_puts_every_clean_sample_beside_each_class(tmp_path):
    import json

    from risk_core.errors import UsageError
    from risk_core.metrics import real_bug_report
    from risk_core.realbugs import audit_classes, markdown_table

    audit = tmp_path / "audit.json"
    answers = {
        "x": {"defect": "yes", "locatable": "yes"},
        "y": {"defect": "no", "locatable": "yes"},  # locatable, but no defect: "no defect"
        "z": {"defect": "yes", "locatable": "unclear"},
    }
    audit.write_text(json.dumps({"bugs": answers}))
    classes = audit_classes(audit)
    assert classes == {"x": "defect", "y": "no defect", "z": "unclear"}
    samples = [_sample("x", "", [1]), _sample("y", "", [2]), _sample("x:fixed", "", [])]
    rows = SimpleNamespace(
        sample=torch.tensor([0, 0, 1, 1, 2, 2]), label=torch.tensor([1, 0, 0, 1, 0, 0]), line=torch.arange(6)
    )
    rep = real_bug_report([0.9, 0.1, 0.8, 0.2, 0.95, 0.0], samples, rows, 0.5, audit=classes)
    assert set(rep["by_audit"]) == {"defect", "no defect"}  # no held-out bug is "unclear" here
    assert rep["by_audit"]["defect"]["top1"] == 1.0 and rep["by_audit"]["no defect"]["top1"] == 0.0
    assert rep["by_audit"]["defect"]["false_per_1000"] == rep["all"]["false_per_1000"] == 500.0
    table = markdown_table([{**rep, "variant": "gru"}]).splitlines()
    assert table[0].endswith(
        "| audit: defect top-1 / AUROC | audit: no defect top-1 / AUROC | validation top-1 / AUROC |"
    )
    audit.write_text(json.dumps({"bugs": {"x": {"defect": "maybe", "locatable": "yes"}}}))
    with pytest.raises(UsageError, match="x: defect and locatable must each be one of yes, no, unclear"):
        audit_classes(audit)
    with pytest.raises(UsageError, match="no such audit file"):
        audit_classes(tmp_path / "none.json")


def test_the_table_adds_a_column_per_kind_of_fix_when_reported():
    from risk_core.realbugs import markdown_table

    cell = {"top1": 0.25, "top3": 0.5, "top5": 0.6, "auroc": 0.73, "false_per_1000": 2.0, "precision": 0.5}
    row = {"variant": "gru", "all": cell, "by_language": {}, "by_fix_kind": {"insert": {**cell, "top1": 0.1}}}
    kept = {**row, "train_fix_kinds": ["mixed", "replace"]}
    head, _, line, line_kept = markdown_table([row, kept]).splitlines()[:4]
    assert head.endswith("| fix: insert top-1 / AUROC | validation top-1 / AUROC |")
    assert line.startswith("| gru | – |") and line.endswith("| 0.10 / 0.73 | – |")
    assert line_kept.startswith("| gru, bound on mixed + replace fixes only | – |")


def test_the_report_per_repository_keeps_each_repository_with_its_own_clean_samples():
    from risk_core.metrics import real_bug_report
    from risk_core.realbugs import repo_of

    samples = [_sample("x", "", [1]), _sample("y", "", [2]), _sample("x:fixed", "", [])]
    samples[1] = dataclasses.replace(samples[1], path="o/other:y")
    rows = SimpleNamespace(
        sample=torch.tensor([0, 0, 1, 1, 2, 2]), label=torch.tensor([1, 0, 0, 1, 0, 0]), line=torch.arange(6)
    )
    scores = [0.9, 0.1, 0.8, 0.2, 0.95, 0.0]  # o/r's bug found first, o/other's not; o/r's clean line flagged
    rep = real_bug_report(scores, samples, rows, 0.5, repository=repo_of)
    assert sorted(rep["by_repository"]) == ["o/other", "o/r"]
    assert rep["by_repository"]["o/r"]["top1"] == 1.0 and rep["by_repository"]["o/other"]["top1"] == 0.0
    assert rep["by_repository"]["o/r"]["false_per_1000"] == 500.0
    assert "by_repository" not in real_bug_report(scores, samples, rows, 0.5)


def test_the_report_counts_the_bugs_a_review_would_comment_on_and_breaks_findings_down_by_length():
    from risk_core.metrics import length_bucket, real_bug_report

    # x: a 2-line bug found; y: a 12-line bug whose flagged line is not the buggy one; a 2-line clean one
    samples = [_sample("x", "", [1]), _sample("y", "", [12]), _sample("x:fixed", "", [])]
    sample = torch.tensor([0, 0] + [1] * 12 + [2, 2])
    label = torch.zeros(16)
    label[0] = label[13] = 1
    rows = SimpleNamespace(sample=sample, label=label, line=torch.arange(16))
    scores = [0.9, 0.1] + [0.6] + [0.1] * 11 + [0.95, 0.0]
    rep = real_bug_report(scores, samples, rows, 0.5)
    assert rep["all"]["bugs_found"] == 0.5  # x has a finding on its buggy line, y only a false one
    assert rep["all"]["findings"] == 3 and rep["all"]["precision"] == round(1 / 3, 4)
    assert list(rep["by_length"]) == ["1-10", "11-20"]
    short, longer = rep["by_length"]["1-10"], rep["by_length"]["11-20"]
    assert (short["n_bugs"], short["bugs_found"], short["false_per_1000"]) == (1, 1.0, 500.0)
    assert (longer["n_bugs"], longer["bugs_found"], longer["false_per_1000"]) == (1, 0.0, None)
    assert [length_bucket(n) for n in (1, 10, 11, 40, 41, 500)] == ["1-10", "1-10", "11-20", "21-40", "41+", "41+"]
    assert real_bug_report(scores, samples, rows, None)["all"]["bugs_found"] is None
