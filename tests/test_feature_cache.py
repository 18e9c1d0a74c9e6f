"""Feature cache: resumable chunks, candidate rows, pooling, export as a harvest; context probe; metrics."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from risk_core.context_probe import ContextProbe, ContextProbeConfig, LinePair, file_logits, train_context_probe
from risk_core.data.jsonl import Sample
from risk_core.encode import EncodeConfig, encode_lines
from risk_core.errors import UsageError
from risk_core.evaluate import probe_risk, real_bug_report, threshold_for_false_findings
from risk_core.feature_cache import build_cache, export_harvest, line_rows, load_tokens, pool_rows
from risk_core.model_loading import load_model

CODES = [
    ("python", 'def f(x):\n    """Doc."""\n    y = x + 1\n    return y\n', [3]),
    ("java", "int f(int x) {\n  // c\n  return x - 1;\n}\n", [3]),
    ("python", "def g(a, b):\n    if a < b:\n        return a\n    return b\n", []),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def samples():
    return [
        Sample(id=str(i), language=lang, path=f"o/r{i}:x@p#L1", code=code, buggy_lines=b)
        for i, (lang, code, b) in enumerate(CODES)
    ]


def test_cache_rows_match_the_scorers_pooling_and_resume(tiny, tmp_path):
    data = samples()
    out = build_cache(tiny, data, (1, 2), tmp_path / "c", chunk=2)
    tokens = load_tokens(out)
    rows = line_rows(tokens, [s.code for s in data], [s.language for s in data])
    # candidate lines only: docstring, comment and brace lines are absent
    got = [(int(s), int(ln), float(y)) for s, ln, y in zip(rows.sample, rows.line, rows.label)]
    assert got == [
        (0, 1, 0.0),
        (0, 3, 1.0),
        (0, 4, 0.0),
        (1, 1, 0.0),
        (1, 3, 1.0),
        (2, 1, 0.0),
        (2, 2, 0.0),
        (2, 3, 0.0),
        (2, 4, 0.0),
    ]
    pooled = pool_rows(tokens.states[2], rows)
    ref = encode_lines(tiny, [data[0].code], EncodeConfig(layer=2))[0]
    line3 = ref.states[ref.line_numbers.index(3)]
    assert torch.allclose(pooled[1], line3, atol=2e-3)  # fp16 storage
    # the last token of a line (the scorer's pooling="last"), pooled from the cache as the scorer pools it
    last = pool_rows(tokens.states[2], rows, "last")
    ref_last = encode_lines(tiny, [data[0].code], EncodeConfig(layer=2, pooling="last"))[0]
    assert torch.allclose(last[1], ref_last.states[ref_last.line_numbers.index(3)], atol=2e-3)
    assert not torch.allclose(last[1], line3, atol=2e-3)
    # a killed run resumes: remove one chunk, rebuild, same bytes
    chunk1 = (out / "chunk_00001.safetensors").read_bytes()
    (out / "chunk_00001.safetensors").unlink()
    with pytest.raises(UsageError, match="incomplete"):
        load_tokens(out)
    build_cache(tiny, data, (1, 2), out, chunk=2)
    assert (out / "chunk_00001.safetensors").read_bytes() == chunk1
    with pytest.raises(UsageError, match="other data"):
        build_cache(tiny, data[:2], (1, 2), out, chunk=2)


def test_an_echo_cache_keeps_both_readings_and_split_pools_either(tiny, tmp_path):
    """``echo`` keeps the plain states (as a cache without it) and the second reading's; a plain cache
    refuses to give echo states; Split pools the echo reading of the same rows."""
    from risk_core.data.jsonl import write_jsonl
    from risk_core.encode import encode_tokens
    from risk_core.realbugs import Split

    data = samples()
    plain = load_tokens(build_cache(tiny, data, (1, 2), tmp_path / "plain", chunk=2))
    out = build_cache(tiny, data, (1, 2), tmp_path / "echo", chunk=2, echo=True)
    echo = load_tokens(out, echo_layers=(2,))
    torch.testing.assert_close(echo.states[2], plain.states[2], rtol=0, atol=0)
    assert sorted(echo.echo) == [2] and load_tokens(out).echo == {}
    ref = encode_tokens(tiny, [data[1].code], EncodeConfig(layer=2, echo=True))[0].echo[2]
    got = echo.echo[2][echo.token_sample == 1].float()
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-3)  # fp16 storage
    with pytest.raises(UsageError, match="no echo states"):
        load_tokens(tmp_path / "plain", echo_layers=(2,))
    with pytest.raises(UsageError, match="other data"):  # an echo cache is not the plain cache's key
        build_cache(tiny, data, (1, 2), tmp_path / "plain", chunk=2, echo=True)
    write_jsonl(tmp_path / "d.jsonl", data)
    split = Split([f"{out}={tmp_path / 'd.jsonl'}"], (2,), echo_layers=(2,))
    rows = line_rows(echo, [s.code for s in data], [s.language for s in data])
    torch.testing.assert_close(split.raw(2, echo=True), pool_rows(echo.echo[2], rows))
    assert not torch.allclose(split.raw(2, echo=True), split.raw(2), atol=1e-3)


def test_a_review_framed_cache_keeps_the_codes_tokens_at_the_codes_lines(tiny, tmp_path):
    """``framing="review"`` encodes each sample inside the chat prompt that bind and the scorer use and
    keeps only the code's tokens: its rows are the scorer's review-framed line states, its token ids
    the code's, and its key is not the bare cache's."""
    from risk_core.features import compute_features

    data = samples()
    bare = load_tokens(build_cache(tiny, data, (2,), tmp_path / "bare", chunk=2, echo=True))
    out = build_cache(tiny, data, (2,), tmp_path / "review", chunk=2, echo=True, framing="review")
    review = load_tokens(out, echo_layers=(2,))
    assert json.loads((out / "cache.json").read_text())["key"]["framing"] == "review"
    torch.testing.assert_close(review.token_ids, bare.token_ids, rtol=0, atol=0)
    torch.testing.assert_close(review.token_line, bare.token_line, rtol=0, atol=0)
    rows = line_rows(review, [s.code for s in data], [s.language for s in data])
    for name, x in (("states", review.states[2]), ("echo", review.echo[2])):
        pooled = pool_rows(x, rows)
        echo = name == "echo"
        ref = compute_features(tiny, [data[0].code], ["python"], EncodeConfig(layer=2, echo=echo), framing="review")[0]
        for row in (0, 1):  # sample 0's lines 1 and 3
            want = ref.raw[ref.line_numbers.index(int(rows.line[row]))]
            torch.testing.assert_close(pooled[row], want, rtol=0, atol=2e-3)  # fp16 storage
        assert not torch.allclose(pooled, pool_rows(bare.states[2], rows), atol=1e-3)
    with pytest.raises(UsageError, match="other data"):
        build_cache(tiny, data, (2,), tmp_path / "bare", chunk=2, echo=True, framing="review")


def test_caches_of_different_framings_do_not_stack(tiny, tmp_path):
    from risk_core.data.jsonl import write_jsonl
    from risk_core.realbugs import Split

    data = samples()
    specs = []
    for name, part, framing in (("a", data[:2], "bare"), ("b", data[2:], "review")):
        write_jsonl(tmp_path / f"{name}.jsonl", part)
        build_cache(tiny, part, (2,), tmp_path / name, chunk=2, framing=framing)
        specs.append(f"{tmp_path / name}={tmp_path / name}.jsonl")
    assert Split(specs[1:], (2,)).framing == "review" and Split(specs[:1], (2,)).framing == "bare"
    with pytest.raises(UsageError, match="different framings"):
        Split(specs, (2,))


def _two_stacked_caches(tiny, tmp_path) -> tuple[list, list[str]]:
    """samples() cut in two caches (layer 2, chunks of 2) and their Split specs, in stacking order."""
    from risk_core.data.jsonl import write_jsonl

    data = samples()
    specs = []
    for name, part in (("a", data[:2]), ("b", data[2:])):
        write_jsonl(tmp_path / f"{name}.jsonl", part)
        build_cache(tiny, part, (2,), tmp_path / name, chunk=2)
        specs.append(f"{tmp_path / name}={tmp_path / name}.jsonl")
    return data, specs


def test_stacked_caches_are_named_by_every_parts_data(tiny, tmp_path):
    """An SAE harvested from two stacked caches (the sweep prefix + the tail) records a data hash
    naming both parts, not the first part's alone."""
    from risk_core.realbugs import Split

    data, specs = _two_stacked_caches(tiny, tmp_path)
    one, both = Split(specs[:1], (2,)), Split(specs, (2,))
    assert len(both.samples) == len(data)
    key_a, key_both = one.tokens.meta["key"], both.tokens.meta["key"]
    assert key_both["data_sha256"] not in {p["data_sha256"] for p in key_both["parts"]}
    assert key_both["parts"][0] == key_a
    assert key_both["data_sha256"] == Split(specs, (2,)).tokens.meta["key"]["data_sha256"]  # stable
    assert "parts" not in key_a


def test_split_keeps_the_first_max_samples_of_the_stack(tiny, tmp_path):
    """Variants compared while the tail is still being encoded see the same prefix of the stack: its
    samples, their tokens and their rows, identical to the full stack's."""
    from risk_core.realbugs import Split

    data, specs = _two_stacked_caches(tiny, tmp_path)
    full = Split(specs, (2,))
    for n in (1, 2, len(data) - 1):
        cut = Split(specs, (2,), max_samples=n)
        assert [s.path for s in cut.samples] == [s.path for s in full.samples[:n]]
        assert cut.tokens.meta["n_samples"] == n
        keep = full.tokens.token_sample < n
        assert torch.equal(cut.tokens.token_sample, full.tokens.token_sample[keep])
        assert torch.equal(cut.tokens.states[2], full.tokens.states[2][keep])
        rows = full.rows.sample < n
        assert torch.equal(cut.rows.line, full.rows.line[rows])
        assert torch.equal(cut.raw(2), full.raw(2)[rows])
    assert len(Split(specs, (2,), max_samples=100).samples) == len(data)


def test_extra_parts_come_after_the_cut_of_the_others_and_are_cut_on_their_own(tiny, tmp_path):
    """Training-only samples (realbugs-experiments --train-only) are stacked after the bind parts:
    --bind-samples cuts only those (the first n of the bind stack, then every extra sample), and
    --train-only-samples cuts the extra parts alone, so that an extra cache still being encoded past
    that many samples gives the same stack."""
    from risk_core.realbugs import Split

    data, specs = _two_stacked_caches(tiny, tmp_path)
    full = Split(specs, (2,))
    for n in (1, 2):
        split = Split(specs[:1], (2,), max_samples=n, extra=specs[1:])
        assert split.n_capped == n and len(split.samples) == n + len(data) - 2
        assert [s.path for s in split.samples] == [s.path for s in data[:n] + data[2:]]
        keep = (full.tokens.token_sample < n) | (full.tokens.token_sample >= 2)
        assert torch.equal(split.tokens.states[2], full.tokens.states[2][keep])
    from risk_core.data.jsonl import write_jsonl

    write_jsonl(tmp_path / "c.jsonl", data)  # an extra part of three samples in chunks of 2: cuts inside and at a chunk
    build_cache(tiny, data, (2,), tmp_path / "c", chunk=2)
    extra = f"{tmp_path / 'c'}={tmp_path / 'c'}.jsonl"
    whole = Split(specs[:1], (2,), max_samples=1, extra=[extra])
    for m in (1, 2, 3, 100):
        split = Split(specs[:1], (2,), max_samples=1, extra=[extra], max_extra=m)
        kept = min(m, len(data))
        assert split.n_capped == 1 and len(split.samples) == 1 + kept
        assert [s.path for s in split.samples] == [s.path for s in data[:1] + data[:kept]]
        keep = whole.tokens.token_sample < 1 + kept
        assert torch.equal(split.tokens.states[2], whole.tokens.states[2][keep])
        assert torch.equal(split.raw(2), whole.raw(2)[whole.rows.sample < 1 + kept])
    assert Split(specs, (2,)).n_capped == len(data)


def test_a_splits_validation_is_repositories_of_its_parts_and_its_extra_samples_only_train(tiny, tmp_path):
    from risk_core.realbugs import Split, bind_val_split

    data, specs = _two_stacked_caches(tiny, tmp_path)
    split = Split(specs[:1], (2,), max_samples=2, extra=specs[1:])
    tr, va = split.train_val()
    assert ([i for i in tr if i < 2], va) == bind_val_split(split.samples[:2])
    assert [i for i in tr if i >= 2] == list(range(2, len(split.samples)))  # the extra samples: training only
    whole = Split(specs, (2,))
    assert whole.train_val() == bind_val_split(whole.samples)


def test_a_split_of_a_missing_or_wrong_cache_fails_in_one_line(tiny, tmp_path):
    """A cache directory that is not there, a layer it does not hold, a data file that is missing or
    shorter than the cache: each a UsageError naming the path, never a traceback from deep inside."""
    from risk_core.realbugs import Split

    data, specs = _two_stacked_caches(tiny, tmp_path)
    cache_a, data_a = specs[0].split("=", 1)
    with pytest.raises(UsageError, match="not a feature cache"):
        Split([f"{tmp_path / 'nope'}={data_a}"], (2,))
    with pytest.raises(UsageError, match="layer 5"):
        Split(specs, (5,))
    with pytest.raises(UsageError, match="not found"):
        Split([f"{cache_a}={tmp_path / 'nope.jsonl'}"], (2,))
    (tmp_path / "short.jsonl").write_text((tmp_path / "a.jsonl").read_text().splitlines()[0] + "\n")
    with pytest.raises(UsageError, match="1 samples, the cache 2"):
        Split([f"{cache_a}={tmp_path / 'short.jsonl'}"], (2,))
    with pytest.raises(UsageError, match="CACHE=DATA"):
        Split([cache_a], (2,))


def test_experiment_rows_keep_their_line_scores_for_a_later_threshold_rule(tiny, tmp_path):
    """realbugs-experiments --scores: each row's bind and held-out line scores, one file per variant,
    in the order of the splits' rows (a threshold rule re-applied later needs no training)."""
    import subprocess
    import sys

    from conftest import SCRIPTS
    from safetensors.torch import load_file

    from risk_core.realbugs import Split

    _, specs = _two_stacked_caches(tiny, tmp_path)
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", specs[0], "--heldout", specs[1]]
    cmd += ["--layers", "2", "--variants", "random", "--out", str(out), "--scores", str(tmp_path / "scores")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    kept = load_file(str(tmp_path / "scores" / "random.safetensors"))
    assert len(kept["bind"]) == len(Split(specs[:1], (2,)).rows.line)
    assert len(kept["held"]) == len(Split(specs[1:], (2,)).rows.line)
    assert json.loads(out.read_text())[0]["variant"] == "random"


def test_train_only_samples_train_and_never_validate(tiny, tmp_path):
    """realbugs-experiments --train-only: the samples join training, whatever their repositories'
    hashes, and the validation repositories are the --bind ones' alone; rows say how many there were."""
    import subprocess
    import sys

    from conftest import SCRIPTS

    data, specs = _two_stacked_caches(tiny, tmp_path)
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", specs[0], "--train-only", specs[1]]
    cmd += ["--heldout", specs[1], "--layers", "2", "--variants", "random", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"bind: {len(data)} samples ({len(data) - 1} train / 1 val)" in run.stdout  # 1 val: a --bind repository
    row = json.loads(out.read_text())[0]
    assert row["bind_samples"] == len(data) and row["train_only_samples"] == len(data) - 2
    assert f"random, {len(data) - 2:,} of them for training only" in (tmp_path / "rows.md").read_text()


def test_echo_only_loads_the_second_reading_alone(tiny, tmp_path):
    """realbugs-experiments --echo-only: the plain reading's states are not loaded (half the memory of
    an echo cache: 24k bind samples fit in 24 GB), its rows are not offered, the echo rows score the same."""
    import subprocess
    import sys

    from conftest import SCRIPTS

    from risk_core.data.jsonl import write_jsonl
    from risk_core.realbugs import Split

    data = samples()
    write_jsonl(tmp_path / "d.jsonl", data)
    spec = f"{build_cache(tiny, data, (2,), tmp_path / 'echo', chunk=2, echo=True)}={tmp_path / 'd.jsonl'}"
    echo_only = Split([spec], (), echo_layers=(2,))
    assert echo_only.tokens.states == {} and torch.equal(
        echo_only.raw(2, echo=True), Split([spec], (2,), echo_layers=(2,)).raw(2, echo=True)
    )
    rows = {}
    for flag in ("--echo", "--echo-only"):
        out = tmp_path / f"rows{flag}.json"
        cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", spec, "--heldout", spec, flag]
        cmd += ["--layers", "2", "--variants", "echo2 + logistic", "--out", str(out)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        rows[flag] = json.loads(out.read_text())[0]["all"]
    assert rows["--echo"] == rows["--echo-only"]
    cmd[cmd.index("echo2 + logistic")] = "raw2 + logistic"
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2 and "no row is named 'raw2 + logistic'" in run.stderr, run.stderr


def test_the_centered_rows_run_beside_the_echo_row(tiny, tmp_path):
    """echo<L>-centered (each line minus its sample's mean), echo<L>+centered and echo<L>@mean+max (the
    line's mean and max over tokens side by side) are rows of their own; their names are not a layer's
    raw-state probe (an int() of '2-centered' ended the run)."""
    import subprocess
    import sys

    from conftest import SCRIPTS

    from risk_core.data.jsonl import write_jsonl

    data = samples()
    write_jsonl(tmp_path / "d.jsonl", data)
    spec = f"{build_cache(tiny, data, (2,), tmp_path / 'echo', chunk=2, echo=True)}={tmp_path / 'd.jsonl'}"
    out = tmp_path / "rows.json"
    names = ["echo2 + logistic", "echo2@mean+max + logistic", "echo2-centered + logistic", "echo2+centered + logistic"]
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", spec, "--heldout", spec, "--echo-only"]
    cmd += ["--layers", "2", "--variants", ",".join(names), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {r["variant"]: r for r in json.loads(out.read_text())}
    assert list(rows) == names
    assert rows["echo2 + logistic"]["all"] != rows["echo2-centered + logistic"]["all"]
    assert rows["echo2@mean+max + logistic"]["features"] == "echo2@mean+max"


def test_each_l1_weight_asked_for_is_a_logistic_row_of_its_own(tiny, tmp_path):
    import subprocess
    import sys

    from conftest import SCRIPTS

    _, specs = _two_stacked_caches(tiny, tmp_path)
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", specs[0], "--heldout", specs[1]]
    cmd += ["--layers", "2", "--l1", "1e-3,0.01", "--variants", "raw2 + logistic,raw2 + logistic [l1=0.01]"]
    cmd += ["--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {r["variant"]: r["binding"] for r in json.loads(out.read_text())}
    assert rows == {"raw2 + logistic": "logistic l1=0.001", "raw2 + logistic [l1=0.01]": "logistic l1=0.01"}
    cmd[cmd.index("1e-3,0.01")] = "1e-3,much"
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == "error: --l1: expected a comma list of numbers, got '1e-3,much'"


def test_a_saved_bundle_carries_the_raw_state_probe_of_the_usual_l1_whatever_others_are_tried(tiny, tmp_path):
    """With --l1 1e-3,0.3 the raw-state probe a saved sae+raw bundle carries is the plainly named row's
    (1e-3), not the last one trained."""
    import subprocess
    import sys

    from conftest import SCRIPTS
    from safetensors.torch import load_file

    from risk_core.artifacts import Bundle
    from risk_core.realbugs import Split
    from risk_core.sae import SaeConfig, SparseCoder

    _, specs = _two_stacked_caches(tiny, tmp_path)
    held = Split(specs[1:], (2,))
    torch.manual_seed(0)
    SparseCoder(int(held.raw(2).shape[1]), SaeConfig(num_latents=8, k=2)).save(tmp_path / "sae")
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", specs[0], "--heldout", specs[1]]
    cmd += ["--layers", "2", "--sae", f"tiny={tmp_path / 'sae'}:2", "--l1", "1e-3,0.3", "--variants"]
    cmd += ["raw2 + logistic [l1=0.3],raw2 + logistic,sae:tiny+raw + logistic", "--out", str(tmp_path / "rows.json")]
    cmd += ["--save", str(tmp_path / "bundles"), "--scores", str(tmp_path / "scores")]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (saved,) = (tmp_path / "bundles").iterdir()
    raw_probe = Bundle.load(saved).raw_probe
    assert raw_probe is not None
    with torch.no_grad():
        carried = raw_probe.risk(held.raw(2)).numpy()
    for name, same in (("raw2-logistic", True), ("raw2-logistic-l1-0-3", False)):
        want = load_file(str(tmp_path / "scores" / f"{name}.safetensors"))["held"].numpy()
        assert np.allclose(carried, want, atol=1e-6) == same, name


def test_a_variant_name_that_matches_no_row_is_an_error_after_the_rows_that_ran(tiny, tmp_path):
    """A misspelt --variants name ran nothing for it and exited 0: the row was silently missing."""
    import subprocess
    import sys

    from conftest import SCRIPTS

    _, specs = _two_stacked_caches(tiny, tmp_path)
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPTS / "realbugs-experiments"), "--bind", specs[0], "--heldout", specs[1]]
    cmd += ["--layers", "2", "--variants", "random,raw2 + logistc", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip() == "error: --variants: no row is named 'raw2 + logistc' (the rows that ran are written)"
    assert [r["variant"] for r in json.loads(out.read_text())] == ["random"]  # what ran is kept


def test_export_harvest_skips_sample_starts_and_splits(tiny, tmp_path):
    data = samples()
    tokens = load_tokens(build_cache(tiny, data, (2,), tmp_path / "c", chunk=8))
    out = export_harvest(tokens, 2, tmp_path / "h", "tiny", train_samples={0, 1}, val_samples={2}, ctx_len=4)
    doc = json.loads((out / "harvest.json").read_text())
    n = {0: 0, 1: 0, 2: 0}
    for s in tokens.token_sample.tolist():
        n[s] += 1
    assert doc["n_tokens"] == {"train": n[0] + n[1] - 2, "val": n[2] - 1}
    assert doc["config"]["layer"] == 2 and doc["d_model"] == tiny.d_model


def test_export_harvest_of_the_echo_reading_writes_the_second_readings_states(tiny, tmp_path):
    from safetensors.torch import load_file

    data = samples()
    tokens = load_tokens(build_cache(tiny, data, (2,), tmp_path / "c", chunk=8, echo=True), echo_layers=(2,))
    for echo, name in ((False, "plain"), (True, "echo")):
        out = export_harvest(tokens, 2, tmp_path / name, "tiny", {0, 1, 2}, set(), echo=echo)
        assert json.loads((out / "harvest.json").read_text())["reading"] == name
        acts = load_file(str(out / "train/shard_00000.safetensors"))["acts"]
        source = tokens.echo[2] if echo else tokens.states[2]
        first = torch.ones(len(tokens.token_sample), dtype=torch.bool)
        first[1:] = tokens.token_sample[1:] != tokens.token_sample[:-1]
        want = source[~first]  # every token but each sample's first, shuffled
        assert sorted(acts[:, 0].tolist()) == sorted(want[:, 0].tolist())


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_context_probe_learns_a_pattern_only_context_reveals(tmp_path, arch):
    # A line is buggy when its feature 0 is set AND a *later* line has feature 1 set: a causal,
    # line-local probe cannot see it; the bidirectional one can (either context reader).
    gen = torch.Generator().manual_seed(0)

    def make(n):
        files = []
        for _ in range(n):
            x = torch.randn(8, 4, generator=gen) * 0.1
            i = int(torch.randint(0, 6, (1,), generator=gen))
            x[i, 0] = 1.0
            decoy = int(torch.randint(0, 8, (1,), generator=gen))
            x[decoy, 0] = 1.0 if decoy != i else x[decoy, 0]
            x[7, 1] = 1.0
            y = torch.zeros(8)
            y[i] = 1.0
            x[i, 2] = 0.0
            # the decoy has no later marker: move the marker right after the real one
            x[7, 1] = 0.0
            x[i + 1, 1] = 1.0
            files.append((x, y))
        return files

    cfg = ContextProbeConfig(arch=arch, epochs=30, hidden=16, loss="both")
    probe = train_context_probe(make(300), cfg, make(60))
    test = make(100)
    hits = sum(int(probe.risk(x).argmax()) == int(y.argmax()) for x, y in test)
    assert hits >= 80
    probe.save(tmp_path / "p")
    again = ContextProbe.load(tmp_path / "p")
    x = test[0][0]
    assert again.cfg.arch == arch and torch.allclose(again.risk(x), probe.risk(x))
    assert again.contributions(x).shape == x.shape


def test_a_transformer_context_probe_scores_a_file_in_a_padded_batch_as_alone():
    """Padding is masked out of attention: a short file beside long ones gets its own risks."""
    torch.manual_seed(0)
    probe = ContextProbe(ContextProbeConfig(arch="transformer", n_features=5, hidden=8, heads=2, members=2)).eval()
    xs = [torch.randn(n, 5) for n in (3, 11, 1, 7)]
    batched = probe.risk_of_files(xs)
    for x, got in zip(xs, batched):
        torch.testing.assert_close(got, probe.risk(x), rtol=1e-5, atol=1e-6)
    # line order matters to it (the positions), as it does to the GRU
    x = xs[1]
    assert not torch.allclose(probe.risk(x.flip(0)).flip(0), probe.risk(x))
    with pytest.raises(UsageError, match="arch"):
        ContextProbeConfig(arch="lstm")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="heads"):
        ContextProbeConfig(arch="transformer", hidden=8, heads=3)


def test_context_probe_contributions_are_each_lines_gradient_times_input():
    """One batched backward gives what a backward per line gives: d logit_i / d z_i * z_i."""
    torch.manual_seed(0)
    probe = ContextProbe(ContextProbeConfig(n_features=6, hidden=8, members=2)).eval()
    x = torch.randn(9, 6)
    z = probe.standardize(x).detach().requires_grad_(True)
    logits = probe._padded_logits(z.unsqueeze(0), torch.tensor([9]))[0]
    want = []
    for i in (0, 4, 8, 4):
        (g,) = torch.autograd.grad(logits[i], z, retain_graph=True)
        want.append(g[i] * z[i].detach())
    torch.testing.assert_close(probe.contributions(x, [0, 4, 8, 4]), torch.stack(want), rtol=1e-4, atol=1e-6)
    assert probe.contributions(x, []).shape == (0, 6)
    assert probe.contributions(x).shape == (9, 6)


def test_a_context_probe_of_several_members_averages_their_logits_and_round_trips(tmp_path):
    gen = torch.Generator().manual_seed(1)
    files = []
    for _ in range(40):
        x = torch.randn(6, 3, generator=gen)
        y = (x[:, 0] > 1.0).float()
        y[int(x[:, 0].argmax())] = 1.0
        files.append((x, y))
    cfg = ContextProbeConfig(epochs=3, hidden=8, members=3, seed=5)
    probe = train_context_probe(files[:30], cfg, files[30:])
    assert len(probe.nets) == 3
    x = files[0][0]
    z = probe.standardize(x).unsqueeze(0)
    each = torch.stack([net(z, torch.tensor([6]))[0] for net in probe.nets])
    assert not torch.allclose(each[0], each[1])  # seeds 5, 6, 7 train different members
    assert torch.allclose(probe.logits(x), each.mean(0), atol=1e-6)
    single = train_context_probe(files[:30], ContextProbeConfig(epochs=3, hidden=8, seed=5), files[30:])
    assert torch.allclose(single.nets[0].project.weight, probe.nets[0].project.weight)  # member 0 = seed 5 alone
    probe.save(tmp_path / "p")
    again = ContextProbe.load(tmp_path / "p")
    assert again.cfg.members == 3 and torch.allclose(again.risk(x), probe.risk(x))
    assert again.feature_weights().shape == (3,)
    with pytest.raises(UsageError, match="members"):
        ContextProbeConfig(members=0)


def test_a_context_probe_saved_before_members_existed_still_loads(tmp_path):
    """Bundles trained before the ensemble held one GRU at the top level of the state dict."""
    from safetensors.torch import load_file, save_file

    probe = ContextProbe(ContextProbeConfig(n_features=3, hidden=4)).eval()
    probe.save(tmp_path / "p")
    state = load_file(str(tmp_path / "p" / "probe.safetensors"))
    old = {k.replace("nets.0.", ""): v for k, v in state.items()}
    assert "project.weight" in old
    save_file(old, str(tmp_path / "p" / "probe.safetensors"))
    cfg = json.loads((tmp_path / "p" / "cfg.json").read_text())
    del cfg["members"]
    (tmp_path / "p" / "cfg.json").write_text(json.dumps(cfg))
    again = ContextProbe.load(tmp_path / "p")
    x = torch.randn(5, 3)
    assert torch.allclose(again.risk(x), probe.risk(x))


def test_batched_file_logits_equal_each_file_alone():
    """Validation and calibration read files in padded batches; a file's logits must not depend on
    the files it is batched with (lengths differ, one file is empty)."""
    from risk_core.context_probe import file_logits

    torch.manual_seed(0)
    probe = ContextProbe(ContextProbeConfig(n_features=6, hidden=8, members=2)).eval()
    xs = [torch.randn(n, 6) for n in (7, 1, 0, 30, 12)]
    got = file_logits(probe, xs, batch=3)
    assert [len(g) for g in got] == [7, 1, 0, 30, 12]
    for x, g in zip(xs, got):
        if len(x):
            assert torch.allclose(g, probe.logits(x), atol=1e-5)
    # probe_risk (eval, experiments) batches a sample's rows the same way, wherever they sit
    sample_index = torch.tensor([2, 0, 2, 1, 0, 2])
    x = torch.randn(6, 6)
    risk = probe_risk(probe, x, sample_index)
    for s in (0, 1, 2):
        m = sample_index == s
        assert np.allclose(risk[m.numpy()], probe.risk(x[m]).detach().numpy(), atol=1e-6)


def test_threshold_and_finding_metrics():
    class Rows:
        sample = torch.tensor([0, 0, 0, 1, 1, 1])
        label = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])

    data = [Sample("a", "python", "o/a:x", "x\ny\nz\n", [2]), Sample("b", "python", "o/b:x", "x\ny\nz\n", [])]
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.1, 0.2])
    t = threshold_for_false_findings(scores, data, Rows, lines_per_finding=3, reference="fixed")
    assert t == pytest.approx(np.quantile([0.3, 0.1, 0.2], 2 / 3))
    wide = threshold_for_false_findings(scores, data, Rows, lines_per_finding=3, reference="not-buggy")
    assert wide == pytest.approx(np.quantile([0.1, 0.2, 0.3, 0.1, 0.2], 2 / 3))  # every line but the bug
    # the default holds the rate on both: the higher threshold, whichever reference gives it
    assert threshold_for_false_findings(scores, data, Rows, lines_per_finding=3) == pytest.approx(max(t, wide))
    hot_fixed = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.2])  # clean code scored above the lines beside the bug
    both = threshold_for_false_findings(hot_fixed, data, Rows, lines_per_finding=3)
    assert both == pytest.approx(np.quantile([0.8, 0.7, 0.2], 2 / 3))
    assert both > threshold_for_false_findings(hot_fixed, data, Rows, lines_per_finding=3, reference="not-buggy")
    no_fixed = [data[0], Sample("b", "python", "o/b:x", "x\ny\nz\n", [1])]
    assert threshold_for_false_findings(scores, no_fixed, Rows, lines_per_finding=3) == pytest.approx(
        threshold_for_false_findings(scores, no_fixed, Rows, lines_per_finding=3, reference="not-buggy")
    )  # no fixed version: the lines not labeled buggy alone
    rep = real_bug_report(scores, data, Rows, threshold=0.25)
    a = rep["all"]
    assert (a["top1"], a["auroc"], a["n_bugs"]) == (1.0, 1.0, 1)
    assert a["false_per_1000"] == pytest.approx(1000 / 3, abs=0.01)
    assert a["precision"] == 0.5 and a["findings"] == 2


def test_a_threshold_by_length_holds_the_false_finding_rate_in_short_functions_too():
    """Defect: the all-lines 1-in-N quantile averaged many false findings in short functions with none in
    long ones, so a pull request of short clean functions got far more than one per N lines."""
    from types import SimpleNamespace

    # 20 clean 5-line functions scored high (0.5-0.9), 18 clean 50-line ones low (0.0-0.2)
    short = [0.5 + 0.4 * ((7 * i) % 100) / 99 for i in range(100)]  # every score once, in no order
    longer = [0.2 * ((7 * i) % 900) / 899 for i in range(900)]
    sample = torch.tensor([i // 5 for i in range(100)] + [20 + i // 50 for i in range(900)])
    rows = SimpleNamespace(sample=sample, label=torch.zeros(1000))
    data = [Sample(f"s{i}", "python", f"o/r:{i}", "", []) for i in range(38)]
    scores = np.array(short + longer)
    in_short = np.arange(1000) < 100

    def false_per_line(t: float, where: np.ndarray) -> float:
        return float((scores[where] > t).mean())  # a finding is a line above the threshold (bot.rank)

    flat = threshold_for_false_findings(scores, data, rows, lines_per_finding=100)
    assert false_per_line(flat, in_short) >= 0.09  # the defect: one false finding per 11 short lines
    fixed = threshold_for_false_findings(scores, data, rows, lines_per_finding=100, by_length=True)
    assert false_per_line(fixed, in_short) <= 0.01 and false_per_line(fixed, ~in_short) <= 0.01
    assert fixed == pytest.approx(np.quantile(short, 0.99))
    # a length with fewer reference lines than N has no quantile of its own (it would be its maximum)
    few = threshold_for_false_findings(scores, data, rows, lines_per_finding=200, by_length=True)
    assert few == pytest.approx(threshold_for_false_findings(scores, data, rows, lines_per_finding=200))


def test_a_context_probe_needs_at_least_one_epoch():
    """The best epoch's validation is what a member reports: with no epoch there is none."""
    with pytest.raises(UsageError, match="epochs"):
        ContextProbeConfig(epochs=0)


def test_the_listwise_weight_scales_the_listwise_term_of_both():
    """loss both = BCE + listwise_weight x listwise; the weight is not read by bce or listwise alone."""
    from risk_core.context_probe import _loss

    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    y = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 1, 0]], dtype=torch.float)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    bce, lw = (_loss(logits, y, mask, 3.0, kind) for kind in ("bce", "listwise"))
    for w in (0.25, 1.0, 4.0):
        assert torch.allclose(_loss(logits, y, mask, 3.0, "both", w), bce + w * lw)
        assert torch.allclose(_loss(logits, y, mask, 3.0, "listwise", w), lw)
    assert lw > 0 and bce > 0
    with pytest.raises(UsageError, match="listwise_weight"):
        ContextProbeConfig(listwise_weight=0)


def test_a_large_cache_loads_and_pools_without_a_second_copy(tmp_path):
    """An 11k-sample cache (11 GB) was killed for memory on a 24 GB machine: ``load_tokens`` held every
    chunk and their concatenation at once, a one-part Split concatenated it again, and ``pool_rows``
    made a float32 copy of every token. Now a cache costs its own size once: the peak resident memory
    of loading and pooling a 256 MB cache (bfloat16, in 8 chunks) stays under 1.5 times that."""
    import subprocess
    import sys
    import textwrap

    from safetensors.torch import save_file

    tokens, d, chunks = 1 << 17, 1024, 8  # 2**17 tokens x 1,024 x 2 bytes = 256 MB
    per = tokens // chunks
    for c in range(chunks):
        save_file(
            {
                "token_sample": torch.full((per,), c, dtype=torch.long),
                "token_line": torch.arange(per) % 64,
                "layer12": torch.ones(per, d, dtype=torch.bfloat16),
            },
            str(tmp_path / f"chunk_{c:05d}.safetensors"),
        )
    meta = {"n_samples": chunks, "chunk": 1, "key": {"layers": [12]}, "samples": [{}] * chunks}
    (tmp_path / "cache.json").write_text(json.dumps(meta))
    script = textwrap.dedent(
        f"""
        import resource, torch
        from risk_core.feature_cache import LineRows, load_tokens, pool_rows

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = load_tokens({str(tmp_path)!r}, (12,))
        rows = LineRows(
            sample=torch.zeros(64, dtype=torch.long), line=torch.arange(64), label=torch.zeros(64),
            token_row=t.token_line,
        )
        pooled = pool_rows(t.states[12], rows)
        assert pooled.shape == (64, {d}) and bool((pooled == 1).all())
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(run.stdout.split()[-1]) < 1.5 * 256, run.stdout


def test_build_cache_reports_the_time_in_the_model_and_in_writing(tiny, tmp_path):
    spent: dict[str, float] = {}
    build_cache(tiny, samples(), (2,), tmp_path / "c", chunk=2, timings=spent)
    assert set(spent) == {"model", "write"} and spent["model"] > 0 and spent["write"] > 0
    # a resumed run finds every chunk on disk: neither clock moves
    again: dict[str, float] = {}
    build_cache(tiny, samples(), (2,), tmp_path / "c", chunk=2, timings=again)
    assert again == {"model": 0.0, "write": 0.0}


def _edited_site_files(n: int, seed: int) -> tuple[list, list]:
    """Bug / fix window pairs in which the line labels cannot tell a bug from its fix: each window marks
    its edited line (feature 0) and labels it, in the bug and in the fix alike; only feature 1 (+0.5 on
    the bug's line, -0.5 on the fix's) says which side is the bug."""
    gen = torch.Generator().manual_seed(seed)
    files, pairs = [], []
    for _ in range(n):
        site = int(torch.randint(0, 6, (1,), generator=gen))
        for sign in (1.0, -1.0):
            x = torch.randn(6, 3, generator=gen) * 0.3
            x[site, 0] = 2.0
            x[site, 1] += 0.5 * sign
            y = torch.zeros(6)
            y[site] = 1.0
            files.append((x, y))
        pairs.append(LinePair(len(files) - 2, torch.tensor([site]), len(files) - 1, torch.tensor([site])))
    return files, pairs


def test_the_pair_term_teaches_a_context_probe_what_tells_a_bug_from_its_own_fix():
    files, pairs = _edited_site_files(60, 0)
    val, _ = _edited_site_files(20, 1)
    test, test_pairs = _edited_site_files(60, 2)

    def pair_accuracy(probe) -> float:
        s = file_logits(probe, [x for x, _ in test])
        right = [bool(s[p.bug_file][p.bug_lines].mean() > s[p.fix_file][p.fix_lines].mean()) for p in test_pairs]
        return sum(right) / len(right)

    cfg = ContextProbeConfig(epochs=15, hidden=8, loss="both", listwise_weight=0.3)
    alone = train_context_probe(files, cfg, val, pairs=pairs)  # weight 0: the pairs are not read
    with_pairs = train_context_probe(files, dataclasses.replace(cfg, pair_weight=3.0), val, pairs=pairs)
    assert pair_accuracy(alone) < 0.75
    assert pair_accuracy(with_pairs) > 0.9
    assert with_pairs.cfg.pair_weight == 3.0


def test_a_pair_term_without_pairs_or_with_lines_a_file_lacks_is_one_clear_error():
    files, pairs = _edited_site_files(4, 0)
    cfg = ContextProbeConfig(epochs=1, hidden=4, pair_weight=1.0)
    with pytest.raises(UsageError, match="needs bug / fix pairs"):
        train_context_probe(files, cfg, files)
    with pytest.raises(UsageError, match="has 6"):
        train_context_probe(files, cfg, files, pairs=[LinePair(0, torch.tensor([6]), 1, torch.tensor([0]))])
    with pytest.raises(UsageError, match="pair_weight"):
        ContextProbeConfig(pair_weight=-1)
