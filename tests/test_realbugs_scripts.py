"""The recipe's choice of a context probe's training reads the bind validation figures only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import SCRIPTS, load_script

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


def test_experiments_on_a_missing_cache_say_so_in_one_line(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "realbugs-experiments"),
            "--bind",
            f"{tmp_path}/none={tmp_path}/none.jsonl",
            "--heldout",
            f"{tmp_path}/none={tmp_path}/none.jsonl",
            "--out",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
    )
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
