"""The contrastive SAE phase: which fixed lines pair with a bug's lines, which tokens a pair reads, and
that the margin term (and only it) pushes a bug's latents away from its fix's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import SCRIPTS, load_script

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


def _paired(repo: str, i: int, code: str, buggy: list[int], fixed: bool = False) -> Sample:
    sid = f"{repo}:c{i}:a.py" + (":fixed" if fixed else "")
    return Sample(
        id=sid,
        language="python",
        path=f"{repo}:a.py@c{i}#L1",
        code=code,
        buggy_lines=buggy,
        operator="git-fix-fixed" if fixed else "git-fix",
    )


@pytest.fixture
def paired_cache(tmp_path, tiny_model_dir):
    """An echo cache (layer 2 of the tiny model) of four repositories, each with a bug beside its fixed
    version (samples 0, 3, 6, 9 and the one after each) and a bug whose fix was not kept; returns
    (the model, the samples, CACHE=DATA.jsonl)."""
    from risk_core.model_loading import load_model

    data = []
    for r in range(4):  # four repositories: the validation split takes whole ones
        repo = f"o/r{r}"
        data += [_paired(repo, 0, BUGGY, [3]), _paired(repo, 0, FIXED, [], fixed=True)]
        data.append(_paired(repo, 1, BUGGY.replace("print", "log"), [4]))  # no fixed version kept: no pair
    tiny = load_model(str(tiny_model_dir), device="cpu")
    return tiny, data, _echo_cache(tmp_path, tiny, data)


def _echo_cache(tmp_path, tiny, data: list[Sample]) -> str:
    """``data`` written and encoded (echo, layer 2 of the tiny model): its CACHE=DATA.jsonl."""
    from risk_core.feature_cache import build_cache

    write_jsonl(tmp_path / "d.jsonl", data)
    cache = build_cache(tiny, data, (2,), tmp_path / "c", chunk=4, echo=True)
    return f"{cache}={tmp_path / 'd.jsonl'}"


def _run_pairs(spec: str, out, *flags: str) -> subprocess.CompletedProcess:
    """``realbugs-pairs`` on one cache as bind and held-out set (layer 2, no shipped bundle, one thread)."""
    cmd = [sys.executable, str(SCRIPTS / "realbugs-pairs"), "--bind", spec, "--heldout", spec, "--layer", "2"]
    cmd += ["--shipped", "none", "--threads", "1", *flags, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_the_script_pairs_bugs_with_their_fixes_and_writes_a_loadable_sae(tmp_path, paired_cache):
    from risk_core.realbugs import Split, fix_pairs

    tiny, data, spec = paired_cache
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


def test_pair_rows_and_outcomes_compare_each_bug_with_its_own_fix(paired_cache):
    from risk_core.realbugs import Split, fix_pairs, pair_accuracy, pair_outcomes, pair_rows

    _, data, spec = paired_cache
    split = Split([spec], (), echo_layers=(2,))
    bug, fix = pair_rows(split, fix_pairs(split, list(range(len(data))))[0])
    assert len(bug) == len(fix) == 4
    for b, f, i in zip(bug, fix, [0, 3, 6, 9]):
        assert split.rows.sample[b].tolist() == [i] and split.rows.line[b].tolist() == [3]  # line 3 of the bug
        assert split.rows.sample[f].tolist() == [i + 1] and split.rows.line[f].tolist() == [4]  # line 4 of its fix
    scores = torch.zeros(len(split.rows.line))
    scores[torch.cat(bug[:2])] = 1.0  # two bugs above their fixes, two level with them
    assert pair_outcomes(scores, bug, fix).tolist() == [1.0, 1.0, 0.5, 0.5]
    assert pair_accuracy(scores, bug, fix) == 0.75
    assert pair_accuracy(-scores, bug, fix) == 0.25
    assert pair_accuracy(scores, [], []) is None


def test_the_pairs_script_reports_pair_accuracy_beside_the_ranking(tmp_path, paired_cache):
    _, _, spec = paired_cache
    out = tmp_path / "pairs.json"
    cmd = [sys.executable, str(SCRIPTS / "realbugs-pairs"), "--bind", spec, "--heldout", spec]
    run = subprocess.run(
        cmd + ["--check", f"again:{spec}", "--layer", "2", "--shipped", "none", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    names = [r["variant"] for r in report["rows"]]
    assert names[:3] == ["random", "the shorter line (fewer tokens)", "echo2 + logistic"]
    assert names[3].startswith("echo2 pair probe [l1=") and " x pair probe" in names[4]
    for row in report["rows"]:
        assert row["pairs"]["held out"] == row["pairs"]["again"] == 4  # every bug with its kept fix
        assert row["pairs"]["train"] + row["pairs"]["validation"] == 4  # the bind split, by repository
        cell = row["pooled"]["all"]
        assert cell["pairs"] == 8  # held out and --check, not validation
        assert 0.0 <= cell["accuracy"] <= 1.0 and cell["95%"][0] <= cell["accuracy"] <= cell["95%"][1]
        assert row["pairs"]["held out, same length"] == 0 and row["pooled"]["same length"] is None  # "+ 1" apart
    # within 8 tokens every pair is a same-length one too, and pooled once in each reading
    again = subprocess.run(
        cmd
        + ["--check", f"again:{spec}", "--layer", "2", "--shipped", "none", "--same-length-within", "8"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    for row in json.loads(out.read_text())["rows"]:
        assert row["pooled"]["all"]["pairs"] == row["pooled"]["same length"]["pairs"] == 8
        assert row["all"]["n_bugs"] == 8  # held-out ranking: every bug, with or without a kept fix
    bad = subprocess.run(cmd + ["--check", "nameless", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr == "error: --check 'nameless': expected NAME:CACHE=DATA.jsonl\n"
    clash = subprocess.run(cmd + ["--check", f"held out:{spec}", "--out", str(out)], capture_output=True, text=True)
    assert clash.returncode == 2 and clash.stderr.startswith("error: --check: each NAME once")


def test_the_pairs_script_can_give_the_pair_probe_each_lines_length(tmp_path, paired_cache):
    _, _, spec = paired_cache
    out = tmp_path / "pairs.json"
    run = _run_pairs(spec, out, "--with-length")
    assert run.returncode == 0, run.stderr
    rows = {r["variant"].split(" [")[0]: r for r in json.loads(out.read_text())["rows"]}
    assert "echo2 pair probe" in rows  # the states-only pair probe stays, under its name
    with_length = rows["echo2 pair probe with line length"]
    assert with_length["pooled"]["all"]["pairs"] == 4 and 0.0 <= with_length["pooled"]["all"]["accuracy"] <= 1.0
    assert any(" x pair probe with line length" in name for name in rows)


def test_no_bug_fix_pair_in_the_validation_repositories_is_a_one_line_error(tmp_path, tiny_model_dir):
    # o/r3's name hashes lowest, so it is the validation repository: its bugs kept no fixed version.
    from risk_core.model_loading import load_model

    data = []
    for r in range(3):
        data += [_paired(f"o/r{r}", 0, BUGGY, [3]), _paired(f"o/r{r}", 0, FIXED, [], fixed=True)]
    data += [_paired("o/r3", i, BUGGY, [3]) for i in range(3)]
    spec = _echo_cache(tmp_path, load_model(str(tiny_model_dir), device="cpu"), data)
    run = _run_pairs(spec, tmp_path / "o.json")
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1 and "validation" in run.stderr


def test_a_joint_probe_learns_from_the_pairs_what_the_line_labels_do_not_say():
    # Line labels follow feature 0 only; each pair's bug differs from its fix in feature 1 only.
    joint_probe = load_script("realbugs-pairs").joint_probe
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=gen)
    y = (x[:, 0] > 0.5).float()
    diff = torch.zeros(50, 3)
    diff[:, 1] = 1.0 + 0.1 * torch.rand(50, generator=gen)
    _, _, alone, _ = joint_probe(x, y, diff, weight=0.0)
    _, _, both, _ = joint_probe(x, y, diff, weight=1.0)
    assert alone[1].abs() < 0.2 < both[1]  # the pairs, and only they, put weight on feature 1
    assert both[0] > 1.0  # without losing the line labels' feature


def test_the_pairs_script_can_train_one_scorer_on_the_lines_and_the_pairs_at_once(tmp_path, paired_cache):
    _, _, spec = paired_cache
    out = tmp_path / "pairs.json"
    run = _run_pairs(spec, out, "--joint")
    assert run.returncode == 0, run.stderr
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    alone = rows["echo2 joint line + pair probe [pair weight=0]"]  # the same trainer without the pairs
    assert alone["pooled"]["all"]["pairs"] == 4 and 0.0 <= alone["all"]["auroc"] <= 1.0
    assert "joint: validation top-1 + AUROC by pair weight: 0:" in run.stdout


def test_line_pairs_number_each_pair_as_the_files_of_its_samples(paired_cache):
    from risk_core.realbugs import Split, fix_pairs, pair_rows

    _, data, spec = paired_cache
    split = Split([spec], (), echo_layers=(2,))
    bug, fix = pair_rows(split, fix_pairs(split, list(range(len(data))))[0])
    x = torch.arange(len(split.rows.line)).float().unsqueeze(1)  # each row's own number as its feature
    samples = [3, 4, 0, 1, 9]  # sample 10, the fix of bug 9, is left out: that pair is not among them
    files, pairs = split.files(x, samples), split.line_pairs(samples, bug, fix)
    assert [(p.bug_file, p.fix_file) for p in pairs] == [(2, 3), (0, 1)]
    for p, b, f in zip(pairs, bug[:2], fix[:2]):  # in the order of the pairs given
        assert files[p.bug_file][0][p.bug_lines, 0].tolist() == b.float().tolist()  # the same rows, as lines
        assert files[p.fix_file][0][p.fix_lines, 0].tolist() == f.float().tolist()


def test_the_pairs_script_can_train_the_context_probe_on_the_lines_and_the_pairs(tmp_path, paired_cache):
    _, _, spec = paired_cache
    out = tmp_path / "pairs.json"
    run = _run_pairs(spec, out, "--context", "0,1", "--members", "1")
    assert run.returncode == 0, run.stderr
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    for w in ("0", "1"):
        row = rows[f"echo2 + context-gru x1 [pair weight={w}]"]
        assert row["pooled"]["all"]["pairs"] == 4 and 0.0 <= row["all"]["auroc"] <= 1.0
    assert "context: validation top-1 + AUROC by pair weight: 0:" in run.stdout
    bad = _run_pairs(spec, out, "--context", "0,-1")
    assert bad.returncode == 2 and bad.stderr == "error: pair_weight must be >= 0 (got -1.0)\n"


def test_the_pairs_script_reads_the_models_likelihood_of_each_side_from_a_surprise_cache(tmp_path, paired_cache):
    from risk_core.feature_cache import build_cache

    tiny, data, spec = paired_cache
    data_path = spec.partition("=")[2]
    nll = build_cache(tiny, data, (2,), tmp_path / "nll", surprise=True, chunk=4)
    out = tmp_path / "pairs.json"
    run = _run_pairs(spec, out, "--surprise", f"pairs:{nll}={data_path}")
    assert run.returncode == 0, run.stderr
    surprise = json.loads(out.read_text())["surprise"]
    assert surprise["pairs"]["pairs"] == {"all": 4, "same length": 0}  # the fix drops "+ 1": two tokens
    assert surprise["pairs"]["the shorter line (fewer tokens)"]["all"] == 0.0  # here the bug is the longer
    for scorer in ("surprise (max NLL of the line)", "surprise (mean NLL of the line)"):
        pooled = surprise["pooled"][scorer]["all"]
        assert pooled["pairs"] == 4 and 0.0 <= pooled["accuracy"] <= 1.0
        assert surprise["pooled"][scorer]["same length"] is None  # no pair to pool
    # an echo-only cache holds no likelihood: said in one line
    bad = _run_pairs(spec, out, "--surprise", f"echo:{spec}")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --surprise echo:") and "no NLL" in bad.stderr


def test_the_experiments_script_trains_the_context_probe_on_the_bind_stacks_own_pairs(tmp_path, paired_cache):
    # --gru pair_weight=W: the bind split's training bugs whose fixed versions are training samples too
    # feed the pair term (before, the script passed no pairs and refused any pair weight)
    _, _, spec = paired_cache
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", spec, "--heldout", spec]
    cmd += ["--echo-only", "--layers", "2", "--threads", "1", "--gru", "pair_weight=1", "--gru", "epochs=2"]
    cmd += ["--members", "1", "--variants", "echo2 + context-gru (both) [pair_weight=1.0] [epochs=2]"]
    run = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "context probes: 3 bug / fix pairs among the training samples" in run.stdout  # one repo validates
    (row,) = json.loads(out.read_text())
    assert row["config"]["pair_weight"] == 1.0 and 0.0 <= row["all"]["auroc"] <= 1.0
