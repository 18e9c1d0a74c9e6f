"""The recipe's choice of a context probe's training reads the bind validation figures only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import SCRIPTS, git, load_script

from risk_core.errors import UsageError
from risk_core.realbugs import variant_suffix


def _row(
    variant: str,
    val: tuple[float, float] | None,
    held: tuple[float, float],
    config: dict | None,
    features: str = "raw12",
) -> dict:
    row = {"variant": variant, "features": features, "all": {"top1": held[0], "auroc": held[1]}}
    if val is not None:
        row["validation"] = {"top1": val[0], "auroc": val[1]}
    if config is not None:
        row["config"] = config
    return row


def test_the_choice_is_the_best_validation_context_row_never_the_held_out_one(tmp_path):
    from dataclasses import asdict

    from risk_core.context_probe import ContextProbeConfig

    cfg = lambda **kw: asdict(ContextProbeConfig(**kw))  # noqa: E731
    rows = [
        _row("random", None, (0.1, 0.5), None),
        _row("raw12 + logistic", (0.5, 0.9), (0.2, 0.7), None),  # not a context probe: never chosen
        _row("gru (bce)", (0.28, 0.75), (0.23, 0.74), cfg(loss="bce")),
        _row("gru (listwise)", (0.29, 0.65), (0.40, 0.90), cfg(loss="listwise")),  # best held out: ignored
        _row("gru (both) [listwise_weight=0.3]", (0.29, 0.75), (0.25, 0.73), cfg(loss="both", listwise_weight=0.3)),
        _row("gru (both) [w=0.3, again]", (0.29, 0.75), (0.25, 0.73), cfg(loss="both", listwise_weight=0.3, hidden=8)),
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(rows))
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-choose"), str(results)], capture_output=True, text=True, check=True
    )
    loss, gru, suffix, variant = run.stdout.splitlines()
    assert (loss, gru, suffix) == ("both", "--gru listwise_weight=0.3", " [listwise_weight=0.3]")  # the first tie
    assert variant == "gru (both) [listwise_weight=0.3]"
    assert "gru (both) [listwise_weight=0.3]" in run.stderr
    # the suffix is the one realbugs-experiments gives a variant trained with those --gru arguments
    experiments = load_script("realbugs-experiments")
    overrides = experiments.context_overrides(gru.split()[1::2])
    assert "".join(f" [{k}={v}]" for k, v in overrides.items()) == suffix
    # the arch is named in the variant (context-transformer), never in the suffix
    assert variant_suffix({"arch": "transformer", "listwise_weight": 0.3}) == " [listwise_weight=0.3]"


def test_sae_only_chooses_among_the_rows_that_read_sae_latents(tmp_path):
    from dataclasses import asdict

    from risk_core.context_probe import ContextProbeConfig

    cfg = asdict(ContextProbeConfig(loss="both"))
    rows = [
        _row("echo12 + gru", (0.30, 0.80), (0.3, 0.8), cfg, features="echo12"),  # best, but no SAE
        _row("sae:a+raw + gru", (0.25, 0.74), (0.3, 0.8), cfg, features="sae:a+raw"),
        _row("sae:b+raw + gru", (0.26, 0.75), (0.2, 0.7), cfg, features="sae:b+raw"),
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(rows))
    script = str(SCRIPTS / "realbugs-choose")
    run = subprocess.run([sys.executable, script, "--sae-only", str(results)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.splitlines()[-1] == "sae:b+raw + gru"
    anyone = subprocess.run([sys.executable, script, str(results)], capture_output=True, text=True)
    assert anyone.stdout.splitlines()[-1] == "echo12 + gru"
    results.write_text(json.dumps(rows[:1]))
    none = subprocess.run([sys.executable, script, "--sae-only", str(results)], capture_output=True, text=True)
    assert none.returncode != 0 and "no SAE context-probe row" in none.stderr


def test_no_context_row_with_validation_figures_is_an_error(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps([_row("gru (bce)", None, (0.2, 0.7), {"loss": "bce"})]))
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-choose"), str(results)], capture_output=True, text=True
    )
    assert run.returncode != 0 and "no context-probe row" in run.stderr


def test_gru_overrides_are_typed_and_refuse_what_is_not_a_field():
    experiments = load_script("realbugs-experiments")
    assert experiments.context_overrides(["hidden=128", "dropout=0.4"]) == {"hidden": 128, "dropout": 0.4}
    assert experiments.context_overrides(["arch=transformer"]) == {"arch": "transformer"}
    # a bad value fails here, in one line, not after minutes of loading caches
    for bad in (["hidden"], ["width=3"], ["loss=bce"], ["hidden=wide"], ["arch=lstm"], ["heads=3"]):
        with pytest.raises(UsageError, match="--gru"):
            experiments.context_overrides(bad)


def _experiments_on_missing_caches(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    script = str(SCRIPTS / "realbugs-experiments")
    args = ["--bind", missing, "--heldout", missing, *extra, "--out", str(tmp_path / "out.json")]
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True)


def test_experiments_on_a_missing_cache_say_so_in_one_line(tmp_path):
    run = _experiments_on_missing_caches(tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "not a feature cache" in run.stderr
    assert "Traceback" not in run.stderr


def test_mining_without_a_grammar_is_an_error_not_an_empty_data_set(tmp_path, monkeypatch):
    """Run by a Python without the tree-sitter grammars, the miner skipped every commit as no-grammar
    and wrote 0 bugs for every repository with exit 0; now it stops at once, naming what is missing."""
    mine = load_script("mine-bug-fixes")
    repos = tmp_path / "repos.tsv"
    repos.write_text("owner/name\t" + "0" * 40 + "\tpython\tbind\n")
    monkeypatch.setattr(mine, "has_grammar", lambda language: language != "go")
    assert mine.main([str(tmp_path / "mirror"), str(tmp_path / "out"), "--repos", str(repos)]) == 2
    assert not (tmp_path / "out").exists()


def test_mutants_come_from_another_function_of_the_real_samples_file_at_its_commit(tmp_path):
    from risk_core.data.jsonl import Sample, read_jsonl, write_jsonl

    work = tmp_path / "work"
    work.mkdir()
    first = "def buggy(xs):\n    total = 0\n    for x in xs:\n        total += x\n    total *= 2\n    return total\n"
    other = "def other(a, b):\n    if a < b:\n        return b - a\n    out = a - b\n    out += 1\n    return out\n"
    (work / "m.py").write_text(first + "\n\n" + other)
    (work / "one.py").write_text(first)  # one function only: nothing else to mutate
    git(work, "init", "-q")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "c")
    sha = git(work, "rev-parse", "HEAD").strip()
    mirror = tmp_path / "mirror"
    (mirror / "o+p").mkdir(parents=True)
    git(tmp_path, "clone", "-q", "--bare", str(work), str(mirror / "o+p" / "repo"))
    at = f"@{sha[:12]}#L1"
    order = [
        Sample("a", "python", f"o/p:m.py{at}", first, [4], "git-fix"),
        Sample("b", "python", f"o/p:one.py{at}", first, [4], "git-fix"),
        Sample("c", "typescript", f"o/p:m.ts{at}", "let x = 1;\n", [1], "git-fix"),  # no operators for it
        Sample("d", "python", f"o/p:m.py{at}", first, [], "git-fix-fixed"),  # only function left is taken
    ]
    write_jsonl(tmp_path / "order.jsonl", order)
    out = tmp_path / "mutants.jsonl"
    script = [sys.executable, str(SCRIPTS / "realbugs-mutants"), str(tmp_path / "order.jsonl"), str(mirror), str(out)]
    res = subprocess.run([*script, "--first", "4"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("1 mutants of 4 samples (3 gave none)")
    (m,) = read_jsonl(out)
    assert m.path == f"o/p:m.py@{sha[:12]}#L9" and m.id == "a:mutant:other" and m.language == "python"
    assert m.code != other and len(m.code.splitlines()) >= 4 and m.buggy_lines and m.operator
    assert all(1 <= n <= len(m.code.splitlines()) for n in m.buggy_lines)
    # a sample that is not a mined one is a one-line error, not a traceback
    write_jsonl(tmp_path / "bad.jsonl", [Sample("x", "python", "somewhere.py", first, [1])])
    res = subprocess.run(
        [*script[:2], str(tmp_path / "bad.jsonl"), str(mirror), str(out)], capture_output=True, text=True
    )
    assert res.returncode == 1 and res.stderr.strip().startswith("error: x: path 'somewhere.py'")
    assert "Traceback" not in res.stderr
    # --first counts samples from the start of the order: zero or fewer is an error, not a slice from the end
    res = subprocess.run([*script, "--first", "-3"], capture_output=True, text=True)
    assert res.returncode == 2 and "--first" in res.stderr.strip().splitlines()[-1]


def test_an_unknown_kind_of_fix_is_a_one_line_usage_error(tmp_path):
    run = _experiments_on_missing_caches(tmp_path, "--train-fix-kinds", "replace,typo")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "--train-fix-kinds replace,typo: kinds are replace, insert, mixed" in run.stderr


def test_a_variant_of_another_context_arch_is_refused_before_any_work(tmp_path):
    """`--variants "echo12 + context-transformer ..."` without `--gru arch=transformer` ran nothing for
    that name and exited 0, after minutes of loading: the row was silently missing from the table."""
    run = _experiments_on_missing_caches(tmp_path, "--variants", "echo12 + context-transformer (both) x3")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "--gru arch=transformer" in run.stderr and "not a feature cache" not in run.stderr
    run = _experiments_on_missing_caches(
        tmp_path, "--gru", "arch=transformer", "--variants", "echo12 + context-gru (both) x3"
    )
    assert run.returncode == 2 and "--gru arch=gru" in run.stderr, run.stderr


def test_combined_tables_keep_a_variant_bound_on_other_data_as_its_own_row(tmp_path):
    """realbugs-combine kept one row per variant name, so the same probe bound on more samples (or on
    some kinds of fix only) vanished from the combined table."""
    cell = {"top1": 0.2, "top3": 0.4, "top5": 0.5, "auroc": 0.7, "false_per_1000": 1.0, "precision": 0.5}
    row = lambda n, **kw: {"variant": "gru", "bind_samples": n, "all": cell, "by_language": {}, **kw}  # noqa: E731
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    small.write_text(json.dumps([row(2112), row(2112, train_fix_kinds=["replace"])]))
    large.write_text(json.dumps([row(4864), row(2112)]))  # the last one repeats the first run's row
    out = tmp_path / "all.json"
    subprocess.run([sys.executable, str(SCRIPTS / "realbugs-combine"), str(out), str(small), str(large)], check=True)
    kept = [(r["bind_samples"], r.get("train_fix_kinds", "all")) for r in json.loads(out.read_text())]
    assert kept == [(2112, "all"), (2112, ["replace"]), (4864, "all")]


def test_the_missing_code_head_reads_each_line_beside_the_line_before_it_in_its_own_sample():
    import torch

    with_previous = load_script("realbugs-missing-code").with_previous
    x = torch.arange(10.0).reshape(5, 2)
    out = with_previous(x, torch.tensor([0, 0, 0, 1, 1]))
    assert out[:, :2].tolist() == x.tolist()
    assert out[:, 2:].tolist() == [[0, 0], [0, 1], [2, 3], [0, 0], [6, 7]]  # rows 0 and 3 open a sample


def test_the_missing_code_measure_on_a_missing_cache_says_so_in_one_line(tmp_path):
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    bundle = SCRIPTS.parent / "risk_core/weights/qwen2.5-coder-0.5b"
    args = [str(bundle), "--bind", missing, "--heldout", missing, "--fix-kinds", str(tmp_path / "none.jsonl")]
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-missing-code"), *args], capture_output=True, text=True
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr


def test_rethresholding_on_a_missing_cache_says_so_in_one_line_and_writes_nothing(tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(SCRIPTS.parent / "risk_core/weights/qwen2.5-coder-0.5b", bundle)
    before = [(bundle / name).read_text() for name in ("metrics.json", "eval-threshold.json")]
    (tmp_path / "order.jsonl").write_text("")
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    args = [str(bundle), "--order", str(tmp_path / "order.jsonl"), "--bind", missing, "--heldout", missing, "--write"]
    run = subprocess.run([sys.executable, str(SCRIPTS / "realbugs-threshold"), *args], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert [(bundle / name).read_text() for name in ("metrics.json", "eval-threshold.json")] == before


def test_training_windows_cover_every_line_of_a_long_function_in_half_overlapping_pieces():
    import torch

    windows = load_script("realbugs-ablations").windows
    short = (torch.zeros(5, 1), torch.tensor([0, 1, 0, 0, 0]))
    long_x = torch.arange(23.0)[:, None]  # a line's feature is its index: where each window came from
    long_y = (torch.arange(23) == 17).long()
    out = windows([short, (long_x, long_y)], 8, seed=3)
    assert out[0][0] is short[0] and out[0][1] is short[1]  # a function of <= 8 lines stays whole
    pieces = out[1:]
    assert all(2 <= len(y) <= 8 for _, y in pieces)
    assert {int(i) for x, _ in pieces for i in x[:, 0]} == set(range(23))  # every line in some window
    for x, y in pieces:  # each window's labels are its own lines' labels
        assert y.tolist() == long_y[x[:, 0].long()].tolist()
    starts = [int(x[0, 0]) for x, _ in pieces]
    assert all(b - a == 4 for a, b in zip(starts[1:], starts[2:]))  # overlapping by half after the first


def test_commit_subjects_are_read_from_the_mirrored_history(tmp_path):
    from types import SimpleNamespace

    repo = tmp_path / "owner+name" / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "Fix wrong bound in the pager\n\nA body that is not the subject.")
    sha = git(repo, "rev-parse", "HEAD").strip()[:12]
    samples = [SimpleNamespace(id=f"owner/name:{sha}:a.py"), SimpleNamespace(id=f"owner/name:{sha}:a.py:fixed")]
    ablations = load_script("realbugs-ablations")
    assert ablations.commit_subjects(samples, tmp_path) == {f"owner/name:{sha}": "Fix wrong bound in the pager"}
    assert ablations.DEFECT_SUBJECT.search("Fix wrong bound in the pager")
    assert not ablations.DEFECT_SUBJECT.search("Fix the label of the graph")


@pytest.mark.parametrize("rows", ["crop1", "subject", "crop"])
def test_an_unknown_ablation_row_is_a_one_line_usage_error(tmp_path, rows):
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    args = ["--order", missing, "--bind", missing, "--heldout", missing, "--rows", rows, "--out", str(tmp_path / "o")]
    run = subprocess.run([sys.executable, str(SCRIPTS / "realbugs-ablations"), *args], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: --rows: unknown") and run.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_the_audit_rows_without_an_audit_of_the_training_bugs_are_a_one_line_usage_error(tmp_path):
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    args = ["--order", missing, "--bind", missing, "--heldout", missing, "--rows", "whole,audit-defect"]
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-ablations"), *args, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: the rows audit-all, audit-defect, audit-kept, audit-random need --audit-bind")
    assert run.stderr.strip().count("\n") == 0 and not (tmp_path / "o").exists()


def test_ablations_on_a_missing_cache_say_so_in_one_line(tmp_path):
    (tmp_path / "order.jsonl").write_text("")
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    args = ["--order", str(tmp_path / "order.jsonl"), "--bind", missing, "--heldout", missing, "--rows", "whole"]
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-ablations"), *args, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr


def test_the_ablation_table_names_each_row_and_marks_what_a_row_lacks():
    cell = {"top1": 0.25, "top3": 0.5, "top5": 0.6, "auroc": 0.75}
    row = {"training_windows": 1200, "training_bugs": 900, "heldout": cell, "validation": cell}
    rows = [
        {**row, "row": "crop24", "heldout_by_length": {"1-10": cell, "41+": cell}},
        {**row, "row": "strong", "heldout_by_length": {}, "heldout_by_subject": {"strong": cell, "other": cell}},
    ]
    lines = load_script("realbugs-ablations").markdown({"rows": rows}).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| windows of 24 lines | 1,200 | 900 | 0.25 |")
    assert "| 0.25 / – / – / 0.25 | – | – |" in lines[2]  # no subject classes: marked, not zero
    assert lines[3].startswith("| bugs whose subject names a defect |") and "0.25 / 0.750 | 0.25 / 0.750" in lines[3]


def test_the_position_prior_reads_each_line_s_fifth_of_its_own_function_beyond_ten_lines():
    import numpy as np

    ablations = load_script("realbugs-ablations")
    sample = np.array([0] * 3 + [1] * 11)  # a short function, then one of 11 lines
    x = ablations.position_features(np.full(14, 0.5), sample)
    assert x[:, 0].tolist() == [0.0] * 14  # the logit of 0.5
    assert x[:3, 1:].sum() == 0  # no prior in a function of <= 10 lines
    assert x[3:, 1:].argmax(1).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4]  # place i / 10
    w = ablations.fit_logistic(np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1]))
    assert w[0] > 0  # a larger logit, more often buggy


def test_misses_count_only_long_functions_whose_top_line_is_not_the_bug():
    import numpy as np

    ablations = load_script("realbugs-ablations")
    n = 21
    risk = np.r_[np.linspace(0, 1, n), np.linspace(1, 0, n), np.linspace(0, 1, 5)]
    label = np.zeros(2 * n + 5)
    label[n - 1] = 1  # function 0: its top line (the last) is the bug - a hit
    label[n + 10] = 1  # function 1: top line first, the bug in the middle - a miss
    label[2 * n + 1] = 1  # function 2: too short to count
    sample = np.r_[[0] * n, [1] * n, [2] * 5]
    out = ablations.misses_by_place(risk, sample, label)
    assert out == {"misses": 1, "top_line_by_fifth": [1, 0, 0, 0, 0], "bug_by_fifth": [0, 0, 1, 0, 0]}


def test_an_infill_prompt_holds_the_lines_around_the_line_and_asks_for_the_line_back():
    infill = load_script("realbugs-infill")
    lines = [f"x{i} = {i}" for i in range(10)]
    prompt, middle = infill.infill_prompt(lines, 4, 2)
    assert middle == "x4 = 4\n"
    assert prompt == "<|fim_prefix|>x2 = 2\nx3 = 3\n<|fim_suffix|>x5 = 5\nx6 = 6\n<|fim_middle|>"
    first, _ = infill.infill_prompt(lines, 0, 2)  # nothing before the first line
    assert first == "<|fim_prefix|><|fim_suffix|>x1 = 1\nx2 = 2\n<|fim_middle|>"


def test_a_line_s_infill_mean_and_max_skip_whitespace_tokens_and_its_sum_counts_them():
    infill = load_script("realbugs-infill")
    s = infill.line_summary([9.0, 1.0, 3.0, 0.5], ["    ", "x", " = y", "\n"])
    assert s == {"infill-mean": 2.0, "infill-max": 3.0, "infill-sum": 13.5}


def test_ranks_within_a_sample_run_from_0_to_1_and_ignore_the_other_samples():
    from risk_core.realbugs import within_sample_rank

    ranks = within_sample_rank(np.array([5.0, 1.0, 3.0, 100.0, -100.0]), np.array([0, 0, 0, 1, 1]))
    assert ranks.tolist() == [1.0, 0.0, 0.5, 1.0, 0.0]


def test_batched_infill_nll_is_each_middle_token_s_nll_under_the_model_read_alone(tiny_model_dir):
    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    infill = load_script("realbugs-infill")
    lm = Qwen2ForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lines = ["def add(a, b):", "    c = a + b", "    return c"]
    prompts = [infill.infill_prompt(lines, i, 1) for i in range(3)]  # three lengths: padding in one batch
    got = infill.infill_nll(lm, tok, prompts, batch=3)
    for (ctx, mid), (nll, pieces) in zip(prompts, got):
        c, m = tok(ctx)["input_ids"], tok(mid)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([c + m])).logits[0], dim=-1)
        want = [-logp[len(c) - 1 + j, t].item() for j, t in enumerate(m)]
        assert nll == pytest.approx(want, abs=1e-4)
        assert "".join(pieces) == mid


def test_infill_on_missing_data_or_a_language_with_no_bugs_says_so_in_one_line(tmp_path):
    script = str(SCRIPTS / "realbugs-infill")
    run = subprocess.run(
        [sys.executable, script, str(tmp_path / "none.jsonl"), str(tmp_path / "o.json")], capture_output=True, text=True
    )
    assert run.returncode == 2 and run.stderr.strip() == f"error: data not found: {tmp_path / 'none.jsonl'}"
    data = tmp_path / "bugs.jsonl"
    data.write_text(json.dumps({"id": "a", "language": "java", "code": "int x;\n", "buggy_lines": [1]}) + "\n")
    run = subprocess.run([sys.executable, script, str(data), str(tmp_path / "o.json")], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip() == f"error: no bugs in {data} for --languages python"
    assert not (tmp_path / "o.json").exists()


def test_a_resumed_infill_run_refuses_a_cache_scored_with_another_context(tmp_path):
    data = tmp_path / "bugs.jsonl"
    data.write_text(json.dumps({"id": "a", "language": "python", "code": "x = 1\n", "buggy_lines": [1]}) + "\n")
    cache = tmp_path / "o.lines.jsonl"
    cache.write_text(json.dumps({"id": "a", "context_lines": 5, "lines": [1], "scores": [{}]}) + "\n")
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-infill"), str(data), str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"error: {cache}:1: scored with --context-lines 5, not 12: give another OUT, or delete that cache"
    )


def test_a_line_s_surface_is_its_tokens_its_neighbours_and_its_place_with_literals_folded():
    surface = load_script("realbugs-surface")
    code = "def f(x):\n    y = x + 1234\n\n    return y\n"
    first, middle, last = surface.surface_features(code, "python", [1, 2, 4])
    assert "t:<num>" in middle and "t:1234" not in middle and "t:python:+" in middle
    assert "prev:def" in middle and "next:return" in middle and "head:y" in middle
    assert "first:True" in first and not any(f.startswith("prev:") for f in first)
    assert "last:True" in last and not any(f.startswith("next:") for f in last)
    assert "t:1" in surface.surface_features("i = 1\n", "python", [1])[0]  # 0, 1, 2 keep their value


def _code_sample(code: str):
    from risk_core.data.jsonl import Sample

    return Sample(id="s", language="python", path="o/r:x.py@c#L1", code=code, buggy_lines=[])


def test_a_sub_bag_holds_exactly_the_picked_rows_features():
    surface = load_script("realbugs-surface")
    rows = surface.bag([_code_sample("a = 1\nb = 2\nc = 3\n")], [[1, 2, 3]])
    whole = [rows[0][rows[1][i] : (rows[1][i + 1] if i < 2 else len(rows[0]))].tolist() for i in range(3)]
    ids, offsets = surface.rows_of_bag(rows, np.array([0, 2]))
    assert ids.tolist() == whole[0] + whole[2] and offsets.tolist() == [0, len(whole[0])]


def test_the_surface_model_learns_a_token_that_marks_the_buggy_line():
    import torch

    surface = load_script("realbugs-surface")
    rng = np.random.default_rng(0)
    samples, lines, labels = [], [], []
    for _ in range(60):
        bug = int(rng.integers(0, 5))
        samples.append(_code_sample("".join(f"x{j} = {'risky(x)' if j == bug else 'safe(x)'}\n" for j in range(5))))
        lines.append([1, 2, 3, 4, 5])
        labels += [float(j == bug) for j in range(5)]
    rows, y = surface.bag(samples, lines), torch.tensor(labels)
    tr, va = np.arange(200), np.arange(200, 300)
    model, val_auroc = surface.train(rows, y, tr, va, epochs=3, seed=0, lr=0.05)
    with torch.no_grad():
        score = model(surface.rows_of_bag(rows, va)).numpy()
    assert score[y[va].numpy() > 0].min() > score[y[va].numpy() == 0].max()
    assert val_auroc == 1.0


def test_surface_on_a_missing_cache_says_so_in_one_line(tmp_path):
    (tmp_path / "order.jsonl").write_text("")
    args = [str(tmp_path / "order.jsonl"), "--heldout", f"{tmp_path / 'nocache'}={tmp_path / 'none.jsonl'}"]
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-surface"), *args, "--out", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


def _bug(sid: str, code: str, lines: list[int], fixed: bool = False):
    from risk_core.data.jsonl import Sample

    return Sample(
        id=sid + (":fixed" if fixed else ""),
        language="python",
        path=f"owner/secret-repo:pkg/mod.py@{'b' * 12 if fixed else 'a' * 12}#L3",
        code=code,
        buggy_lines=[] if fixed else lines,
        operator="git-fix-fixed" if fixed else "git-fix",
    )


def test_the_reviewer_s_files_are_blind_and_the_audit_s_mark_the_labeled_lines(tmp_path):
    from risk_core.data.jsonl import write_jsonl

    reviewer = load_script("realbugs-reviewer")
    bugs = [_bug(f"owner/secret-repo:{i:012d}:pkg/mod.py", f"def f(x):\n    return x + {i}\n", [2]) for i in range(5)]
    write_jsonl(tmp_path / "bugs.jsonl", bugs)
    write_jsonl(tmp_path / "all.jsonl", bugs + [_bug(b.id, b.code.replace("+", "-"), [], True) for b in bugs])
    reviewer.export(str(tmp_path / "bugs.jsonl"), str(tmp_path / "all.jsonl"), tmp_path / "out", 4, 2, 0)
    blind = sorted((tmp_path / "out" / "blind").glob("*/*.txt"))
    assert [f.parent.name for f in blind] == ["00", "00", "01", "01"]
    for f in blind:
        text = f.read_text()
        assert "secret-repo" not in text and "mod.py" not in text and ">>" not in text
        assert text.startswith("language: python\n1 | def f(x):\n2 |     return x + ")
    key = json.loads((tmp_path / "out" / "key.json").read_text())
    assert [s["n"] for s in key["samples"]] == ["000", "001", "002", "003"]
    assert all(bugs[s["index"]].id == s["id"] for s in key["samples"])
    audit = (tmp_path / "out" / "audit" / "00" / "000.txt").read_text()
    assert ">> 2 |     return x +" in audit and "   1 | def f(x):" in audit and "2 |     return x - " in audit
    again = tmp_path / "again"
    reviewer.export(str(tmp_path / "bugs.jsonl"), str(tmp_path / "all.jsonl"), again, 4, 2, 0)
    assert (again / "key.json").read_text() == (tmp_path / "out" / "key.json").read_text()


def test_a_reviewer_s_ranking_counts_only_candidate_lines_and_chance_is_exact():
    reviewer = load_script("realbugs-reviewer")
    ranking = reviewer.ranked([4, "4", 9, 2, 7], {2, 4, 7})  # 9: a blank line; 4 named twice
    assert ranking == [4, 2, 7]
    assert reviewer.hits(ranking, {2}) == {1: False, 3: True, 5: True}
    assert reviewer.chance(5, 1) == pytest.approx({1: 0.2, 3: 0.6, 5: 1.0})
    assert reviewer.chance(4, 2) == pytest.approx({1: 0.5, 3: 1.0, 5: 1.0})  # fewer lines than k


def test_reviewer_answers_that_are_not_json_are_a_one_line_error(tmp_path):
    (tmp_path / "answers").mkdir()
    (tmp_path / "answers" / "00.json").write_text("{not json")
    (tmp_path / "key.json").write_text(json.dumps({"samples": [], "bugs_sha256": "", "seed": 0}))
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-reviewer"), "score", str(tmp_path), "--heldout", "c=d.jsonl"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1
    assert "00.json: not JSON" in run.stderr


def test_the_audit_file_keys_the_answers_by_bug_id_and_keeps_no_reviewer_words(tmp_path):
    from risk_core.data.jsonl import write_jsonl
    from risk_core.realbugs import audit_classes

    reviewer = load_script("realbugs-reviewer")
    bugs = [_bug(f"o/r:{i:012d}:m.py", f"def f(x):\n    return x + {i}\n", [2]) for i in range(3)]
    write_jsonl(tmp_path / "bugs.jsonl", bugs)
    write_jsonl(tmp_path / "all.jsonl", bugs + [_bug(b.id, b.code, [], True) for b in bugs])
    out = tmp_path / "out"
    reviewer.export(str(tmp_path / "bugs.jsonl"), str(tmp_path / "all.jsonl"), out, 3, 40, 0)
    (out / "audit-answers").mkdir()
    answers = {"000": {"defect": "yes", "locatable": "yes", "why": "x + 0 is x"}, "001": {"defect": "no"}}
    (out / "audit-answers" / "00.json").write_text(json.dumps(answers))
    with pytest.raises(UsageError, match="001: defect and locatable must be"):
        reviewer.write_audit(out, tmp_path / "audit.json")
    answers["001"]["locatable"] = "no"
    (out / "audit-answers" / "00.json").write_text(json.dumps(answers))
    with pytest.raises(UsageError, match="no answer for 002"):
        reviewer.write_audit(out, tmp_path / "audit.json")
    answers["002"] = {"defect": "unclear", "locatable": "no"}
    (out / "audit-answers" / "00.json").write_text(json.dumps(answers))
    doc = reviewer.write_audit(out, tmp_path / "audit.json")
    assert "why" not in json.dumps(doc["bugs"]) and list(doc["bugs"]) == sorted(b.id for b in bugs)
    assert sorted(audit_classes(tmp_path / "audit.json").values()) == ["defect", "no defect", "unclear"]


def test_the_answer_s_probability_of_a_line_number_ends_with_a_non_digit():
    ask = load_script("realbugs-ask")
    assert ask.prefixes([3, 12]) == ["", "1", "3", "12"]
    uniform = np.log(np.full(10, 0.05))  # each digit 5%: the number ends with 50%
    logp = {"": uniform, "1": uniform, "3": uniform, "12": np.log(np.full(10, 1e-9))}
    got = ask.number_logprobs(logp, [1, 3, 12])
    assert got[1] == pytest.approx(np.log(0.05 * 0.5))  # "1", then not a digit
    assert got[3] == pytest.approx(np.log(0.05 * 0.5))
    assert got[12] == pytest.approx(np.log(0.05 * 0.05 * 1.0), rel=1e-6)  # nothing follows "12"


@pytest.mark.integration
def test_the_question_shows_the_numbered_window_and_begins_the_answer_before_the_digit():
    from risk_core.model_loading import load_model
    from risk_core.models import DEFAULT_MODEL

    ask = load_script("realbugs-ask")
    tok = load_model(DEFAULT_MODEL, engine="transformers").hf_tokenizer
    ids = ask.prompt_ids(tok, "def f(x):\n    return x + 1\n", "python")
    text = tok.decode(ids)
    assert "1 | def f(x):\n2 |     return x + 1" in text and text.endswith(ask.ANSWER)
    # the answer's digits follow the prompt's tokens one by one, as ask() feeds them
    whole = tok(text + "12.", add_special_tokens=False)["input_ids"]
    assert whole[: len(ids)] == ids
    assert whole[len(ids) : len(ids) + 2] == [tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")]


def test_asking_on_a_missing_cache_says_so_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-ask"), str(tmp_path / "o.json"), "--heldout", f"{tmp_path}/c=none"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


def test_scoring_a_folder_that_was_never_exported_says_to_export_first(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-reviewer"), "score", str(tmp_path / "none"), "--heldout", "c=d.jsonl"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith(
        f"error: {tmp_path / 'none'}/key.json: not found (write it with realbugs-reviewer export)"
    )


def test_answers_cached_under_another_question_or_model_are_refused_not_mixed_in(tmp_path):
    ask = load_script("realbugs-ask")
    cache = tmp_path / "o.lines.jsonl"
    asked = ask.asked_key("qwen2.5-coder-0.5b")
    rec = {"id": "a", "lines": [1, 2], "logp": [-1.0, -2.0], "asked": asked}
    cache.write_text(json.dumps(rec) + "\n")
    assert ask.read_answers(cache, asked) == {"a": rec}
    assert ask.read_answers(tmp_path / "none.lines.jsonl", asked) == {}
    with pytest.raises(UsageError, match=r"o.lines.jsonl:1: asked with another question or model"):
        ask.read_answers(cache, ask.asked_key("qwen2.5-coder-1.5b"))
    del rec["asked"]  # a cache written before answers were keyed by their question
    cache.write_text(json.dumps(rec) + "\n")
    with pytest.raises(UsageError, match="another question or model"):
        ask.read_answers(cache, asked)


def test_stage1_on_a_missing_cache_says_so_in_one_line_and_trains_nothing(tmp_path):
    missing = f"{tmp_path}/none={tmp_path}/none.jsonl"
    env = {**os.environ, "PY": sys.executable, "READING": "echo", "EXTRA": missing}
    run = subprocess.run(
        ["bash", str(SCRIPTS / "realbugs-sae"), str(tmp_path / "sae"), "12", missing],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "not a feature cache" in run.stderr
    assert not (tmp_path / "sae").exists()


def _lease_files(tmp_path, bound_val: float | None, shipped_val: float) -> tuple:
    """What a lease brings back (results.tgz, bundles.tgz) with the two rows ship compares (no bound
    row where ``bound_val`` is None: a bind cut short), and a copy of the weights folder to ship into."""
    import shutil
    import tarfile

    figures = {"top1": 0.3, "top3": 0.5, "top5": 0.6, "auroc": 0.8, "false_per_1000": 0.0, "precision": 1.0}
    bound = "sae:shipped+raw + context-gru (both) x3 [listwise_weight=0.3]"
    rows = [
        {"variant": name, "features": "sae:shipped", "all": figures, "by_language": {}, "bind_samples": 9,
         "validation": {**figures, "top1": val}}
        for name, val in (("shipped bundle", shipped_val), (bound, bound_val))
        if val is not None
    ]  # fmt: skip
    src, staged = tmp_path / "lease", tmp_path / "staged"
    (staged / "bundle" / "probe").mkdir(parents=True)
    (staged / "bundle" / "sae").mkdir()
    (staged / "bundle" / "sae" / "sae.safetensors").write_text("the shipped SAE, saved again")
    (staged / "with-extra.json").write_text(json.dumps(rows))
    (staged / "bundle" / "cfg.json").write_text('{"bound": true}')
    (staged / "bundle" / "probe" / "probe.safetensors").write_text("bound probe")
    src.mkdir()
    (staged / "pairs-all.json").write_text('{"rows": []}')
    with tarfile.open(src / "results.tgz", "w:gz") as t:
        t.add(staged / "with-extra.json", "with-extra.json")
        t.add(staged / "pairs-all.json", "pairs-all.json")
    with tarfile.open(src / "bundles.tgz", "w:gz") as t:
        t.add(staged / "bundle", "sae-shipped-raw-context-gru-both-x3-listwise-weight-0-3")
    ship = tmp_path / "weights"
    shutil.copytree(SCRIPTS.parent / "risk_core/weights/qwen2.5-coder-0.5b", ship)
    env = {**os.environ, "PY": sys.executable, "RUNS": str(tmp_path / "runs"), "SHIP": str(ship)}
    cmd = ["bash", str(SCRIPTS / "device-realbugs"), "ship", str(src)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env), ship


@pytest.mark.parametrize("bound_val, shipped", [(0.4, True), (0.2, False)])
def test_a_lease_s_bundle_is_shipped_only_where_the_validation_repositories_prefer_it(tmp_path, bound_val, shipped):
    run, ship = _lease_files(tmp_path, bound_val, 0.3)
    assert run.returncode == 0, run.stderr
    assert (ship / "eval-realbugs-device.json").is_file()
    assert (ship / "eval-pairs-device.json").read_text() == '{"rows": []}'  # the bug / fix pairs of every pair
    assert ((ship / "cfg.json").read_bytes() == b'{"bound": true}') is shipped
    assert ((ship / "probe/probe.safetensors").read_bytes() == b"bound probe") is shipped
    # the shipped SAE's training metrics stay beside it whichever probe ships
    before = SCRIPTS.parent / "risk_core/weights/qwen2.5-coder-0.5b/sae/metrics.json"
    assert (ship / "sae/metrics.json").read_bytes() == before.read_bytes()
    listed = {line.split()[1] for line in (ship / "SHA256SUMS").read_text().splitlines()}
    assert "./eval-realbugs-device.json" in listed


def test_shipping_without_a_lease_s_files_is_a_one_line_error(tmp_path):
    env = {**os.environ, "PY": sys.executable, "RUNS": str(tmp_path / "runs"), "SHIP": str(tmp_path / "w")}
    run = subprocess.run(
        ["bash", str(SCRIPTS / "device-realbugs"), "ship", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1


def test_a_lease_cut_short_before_its_bundle_row_is_a_one_line_error_and_ships_nothing(tmp_path):
    run, ship = _lease_files(tmp_path, None, 0.3)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1
    before = SCRIPTS.parent / "risk_core/weights/qwen2.5-coder-0.5b/cfg.json"
    assert (ship / "cfg.json").read_bytes() == before.read_bytes()


def test_the_order_deals_repositories_in_turn_and_paired_keeps_only_bugs_beside_their_fixes(tmp_path):
    from risk_core.data.jsonl import Sample, read_jsonl, write_jsonl

    def sample(repo: str, i: int, fixed: bool = False) -> Sample:
        sid = f"{repo}:c{i}:a.py" + (":fixed" if fixed else "")
        op = "git-fix-fixed" if fixed else "git-fix"
        return Sample(
            id=sid,
            language="python",
            path=f"{repo}:a.py@c{i}#L1",
            code="x = 1\n",
            buggy_lines=[] if fixed else [1],
            operator=op,
        )

    bugs = [sample(r, i) for r in ("o/a", "o/b") for i in range(3)]
    fixes = [sample("o/a", 0, fixed=True), sample("o/b", 2, fixed=True)]
    write_jsonl(tmp_path / "bugs.jsonl", bugs)
    write_jsonl(tmp_path / "fixed.jsonl", fixes)  # a second file: read as one with the first
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, str(SCRIPTS / "realbugs-order"), *a], capture_output=True, text=True, check=True
    )
    run(
        str(tmp_path / "bugs.jsonl"),
        str(tmp_path / "fixed.jsonl"),
        str(tmp_path / "order.jsonl"),
        "--fixed-every",
        "100",
    )
    order = [s.id for s in read_jsonl(tmp_path / "order.jsonl")]
    assert len(order) == 6 and [i.split(":")[0] for i in order] == ["o/a", "o/b"] * 3  # no fixed version at 1 in 100
    run(str(tmp_path / "bugs.jsonl"), str(tmp_path / "fixed.jsonl"), str(tmp_path / "paired.jsonl"), "--paired")
    paired = [s.id for s in read_jsonl(tmp_path / "paired.jsonl")]
    assert paired == ["o/a:c0:a.py", "o/a:c0:a.py:fixed", "o/b:c2:a.py", "o/b:c2:a.py:fixed"]


def test_the_order_of_a_missing_data_file_is_a_one_line_error(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "realbugs-order"), str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr == f"error: {tmp_path / 'nope.jsonl'}: no such data file\n"
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("realbugs-features", ["{tmp}/nope.jsonl", "{tmp}/out"], "{tmp}/nope.jsonl: no such data file"),
        ("realbugs-choose", ["{tmp}/nope.json"], "{tmp}/nope.json: no such results file"),
        ("realbugs-combine", ["{tmp}/out.json", "{tmp}/nope.json"], "{tmp}/nope.json: no such results file"),
        ("realbugs-label-latents", ["--cache", "{tmp}/c", "--bundle", "{tmp}"], "{tmp}: not a bundle (no cfg.json)"),
    ],
)
def test_a_script_given_a_missing_input_says_so_in_one_line(tmp_path, script, args, message):
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *(a.format(tmp=tmp_path) for a in args)], capture_output=True, text=True
    )
    assert run.returncode == 2 and run.stderr == f"error: {message.format(tmp=tmp_path)}\n"
    assert not (tmp_path / "out.json").exists()
