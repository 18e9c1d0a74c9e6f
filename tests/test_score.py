"""The scorer on the tiny model with a random SAE and probe: exactness of targeted scoring and the
shape of what the bot receives (no claim about the quality of random weights)."""

from __future__ import annotations

import pytest
import torch

from risk_core.artifacts import ArtifactConfig, Bundle
from risk_core.model_loading import load_model
from risk_core.probe import ProbeConfig, RiskProbe
from risk_core.sae import SaeConfig, SparseCoder
from risk_core.score import FileToScore, Scorer, layers_needed

CODE = "".join(f"def f{i}(a, b):\n    if a < b:\n        return a - b\n    return b + {i}\n\n" for i in range(12))


@pytest.fixture(scope="module")
def scorer(tiny_model_dir) -> Scorer:
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir))
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    probe = RiskProbe(ProbeConfig(n_features=sae.num_latents))
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2)
    return Scorer(loaded, Bundle(cfg, sae, probe))


@pytest.fixture
def encoded(monkeypatch) -> list[str]:
    """The window texts the scorer sends to the model, in order."""
    import risk_core.score as score_mod

    seen: list[str] = []
    real = score_mod.compute_features

    def spy(loaded, texts, *args, **kwargs):
        seen.extend(texts)
        return real(loaded, texts, *args, **kwargs)

    monkeypatch.setattr(score_mod, "compute_features", spy)
    return seen


def test_targeted_scoring_equals_scoring_the_whole_file(scorer):
    (whole,) = scorer.score([FileToScore("m.py", CODE)])
    targets = [6, 7, 8, 21]
    (part,) = scorer.score([FileToScore("m.py", CODE, targets)])
    by_line = {lr.line: lr for lr in whole.lines}
    assert [lr.line for lr in part.lines] == targets
    for lr in part.lines:
        assert lr.risk == pytest.approx(by_line[lr.line].risk, abs=1e-5)
        assert [x.index for x in lr.latents] == [x.index for x in by_line[lr.line].latents]


def test_scores_carry_text_latents_and_skip_blank_lines(scorer):
    (fs,) = scorer.score([FileToScore("m.py", CODE, [1, 2, 5, 6])], top_latents=3)
    assert [lr.line for lr in fs.lines] == [1, 2, 6]  # line 5 is blank: not a candidate
    lr = fs.lines[1]
    assert lr.text == "    if a < b:" and 0.0 <= lr.risk <= 1.0
    assert len(lr.latents) == 3
    assert [x.contribution for x in lr.latents] == sorted((x.contribution for x in lr.latents), reverse=True)


def test_a_one_line_change_in_a_huge_file_encodes_only_its_window(scorer, encoded):
    big = CODE * 200  # 12,000 lines
    line = len(big.splitlines()) - 2  # "return a - b" of the last function
    (fs,) = scorer.score([FileToScore("m.py", big, [line])])
    assert [lr.line for lr in fs.lines] == [line]
    assert encoded == ["def f11(a, b):\n    if a < b:\n        return a - b\n    return b + 11\n"]
    # the same line scored alone in its small file gets the same risk: the window is all it sees
    (small,) = scorer.score([FileToScore("m.py", CODE, [len(CODE.splitlines()) - 2])])
    assert fs.lines[0].risk == pytest.approx(small.lines[0].risk, abs=1e-5)


def test_a_module_level_line_is_read_without_the_functions_around_it(scorer, encoded):
    """A changed class header or module statement between long functions encodes the lines between
    them, not a 60-line block of the file that drags in the functions' bodies."""
    code = CODE + "LIMIT = 3\nclass Box:\n    size = LIMIT\n\n" + CODE  # module lines 61-63
    (fs,) = scorer.score([FileToScore("m.py", code, [62])])
    assert [lr.line for lr in fs.lines] == [62]
    assert encoded == ["\nLIMIT = 3\nclass Box:\n    size = LIMIT\n\n"]  # from after f11 to before f0


def test_line_windows_group_a_files_candidate_target_lines_by_window():
    from risk_core.score import line_windows

    code = CODE + "LIMIT = 3\nclass Box:\n    size = LIMIT\n\n" + CODE
    got = line_windows(code, "python", [62, 7, 8, 61, 5, 10_000, 8])  # 5 is blank, 10,000 past the end
    assert got == {(6, 9): [7, 8], (60, 64): [61, 62]}
    assert sum(len(v) for v in line_windows(CODE, "python").values()) == 48  # every code line, once


def test_prose_and_string_lines_get_no_risk(scorer):
    code = 'def f(x):\n    """Doc.\n    Output: 3\n    """\n    return x\n\n\nUSAGE = """\nExamples:\nf(1)\n"""\n'
    (fs,) = scorer.score([FileToScore("m.py", code)])
    assert [lr.line for lr in fs.lines] == [1, 5, 8]
    (md,) = scorer.score([FileToScore("notes.md", "Some prose.\nMore.\n")])
    assert md.lines == []


def test_a_context_probe_bundle_scores_every_target_line(tiny_model_dir):
    from risk_core.context_probe import ContextProbe, ContextProbeConfig

    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir))
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    probe = ContextProbe(ContextProbeConfig(n_features=sae.num_latents, hidden=8)).eval()
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2)
    sc = Scorer(loaded, Bundle(cfg, sae, probe))
    (fs,) = sc.score([FileToScore("m.py", CODE, [2, 3, 7])], top_latents=2)
    assert [lr.line for lr in fs.lines] == [2, 3, 7]
    assert all(0.0 <= lr.risk <= 1.0 and len(lr.latents) == 2 for lr in fs.lines)
    # the context probe reads the whole window: scoring one line alone gives the same risk
    (one,) = sc.score([FileToScore("m.py", CODE, [3])])
    assert one.lines[0].risk == pytest.approx(fs.lines[1].risk, abs=1e-5)


def test_an_sae_plus_raw_bundle_reads_latents_then_raw_states_and_explains_with_latents(tiny_model_dir, tmp_path):
    from risk_core.context_probe import ContextProbe, ContextProbeConfig
    from risk_core.features import feature_matrix

    latents, raw = torch.ones(3, 2), torch.full((3, 4), 2.0)
    assert feature_matrix("sae+raw", latents, raw, None).tolist() == [[1, 1, 2, 2, 2, 2]] * 3
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir))
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    probe = ContextProbe(ContextProbeConfig(n_features=sae.num_latents + 64, hidden=8)).eval()
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2, features="sae+raw")
    Bundle(cfg, sae, probe).save(tmp_path / "b")
    sc = Scorer(loaded, Bundle.load(tmp_path / "b"))  # the width check counts latents + d_model
    (fs,) = sc.score([FileToScore("m.py", CODE, [2, 3])], top_latents=2)
    assert [lr.line for lr in fs.lines] == [2, 3]
    assert all(x.index < sae.num_latents for lr in fs.lines for x in lr.latents)
    wrong = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2, features="sae")
    Bundle(wrong, sae, probe).save(tmp_path / "w")
    with pytest.raises(Exception, match="wide"):
        Bundle.load(tmp_path / "w")


def test_an_echo_bundle_scores_from_the_second_reading(tiny_model_dir, tmp_path):
    """A bundle bound on the echo reading keeps it through save/load, and the review scores its lines
    from the second reading's states: the same risks as the probe on echo-pooled features of the
    window, not those of the plain reading."""
    from risk_core.context_probe import ContextProbe, ContextProbeConfig
    from risk_core.encode import encode_tokens, pool_lines
    from risk_core.errors import UsageError
    from risk_core.score import window_text

    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir))
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    probe = ContextProbe(ContextProbeConfig(n_features=sae.num_latents + 64, hidden=8)).eval()
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2, features="sae+raw", reading="echo")
    Bundle(cfg, sae, probe).save(tmp_path / "b")
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.cfg.reading == "echo" and bundle.cfg.encode_config().echo
    (fs,) = Scorer(loaded, bundle).score([FileToScore("m.py", CODE, [1, 2, 3, 4])])
    text = window_text(CODE, 1, 4)
    ts = encode_tokens(loaded, [text], bundle.cfg.encode_config())[0]
    for reading, states in (("echo", ts.echo[2]), ("plain", ts.states)):
        raw, _ = pool_lines(states, ts.token_lines, ts.n_lines, "mean")
        latents, _ = pool_lines(sae.encode_dense(states), ts.token_lines, ts.n_lines, "mean")
        want = probe.risk(torch.cat([latents, raw], dim=1)).tolist()
        got = [lr.risk for lr in fs.lines]
        if reading == "echo":
            assert got == pytest.approx(want, abs=1e-5)
        else:
            assert got != pytest.approx(want, abs=1e-5)
    with pytest.raises(UsageError, match="reading"):
        ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, reading="twice")  # type: ignore[arg-type]


def test_a_model_loaded_only_up_to_the_bundles_layer_scores_the_same(scorer, tiny_model_dir):
    bundle = scorer.bundle
    assert layers_needed(bundle) == 2
    truncated = Scorer(load_model(str(tiny_model_dir), up_to_layer=layers_needed(bundle)), bundle)
    (want,) = scorer.score([FileToScore("m.py", CODE)])
    (got,) = truncated.score([FileToScore("m.py", CODE)])
    assert [lr.line for lr in got.lines] == [lr.line for lr in want.lines]
    for a, b in zip(got.lines, want.lines):
        assert a.risk == pytest.approx(b.risk, abs=1e-6)


def test_a_bundle_with_surprise_needs_the_whole_model():
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2, features="sae+surprise")
    assert layers_needed(Bundle(cfg, None, None)) is None


def test_explain_gives_the_reviews_risk_for_a_context_sae_plus_raw_bundle(tiny_model_dir):
    """`pttrust explain` reads the line in the window the review scores it in, through the same
    (context) probe, and names the raw-state inputs of an sae+raw bundle (it raised IndexError)."""
    from risk_core.context_probe import ContextProbe, ContextProbeConfig
    from risk_core.evaluate import explain_line

    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir))
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    probe = ContextProbe(ContextProbeConfig(n_features=sae.num_latents + 64, hidden=8)).eval()
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2, features="sae+raw")
    bundle = Bundle(cfg, sae, probe)
    sc = Scorer(loaded, bundle)
    (fs,) = sc.score([FileToScore("m.py", CODE, [7])])
    res = explain_line(loaded, bundle, CODE, "python", 7, sc.encode_cfg, top=200)
    assert res["risk"] == pytest.approx(fs.lines[0].risk, abs=1e-4)
    # the latents apart, largest contribution first; the 64 raw states summed as one input
    lat_sizes = [abs(x["contribution"]) for x in res["latents"]]
    assert 0 < len(lat_sizes) <= 200 and lat_sizes == sorted(lat_sizes, reverse=True)
    assert all(isinstance(x["index"], int) and x["index"] < sae.num_latents for x in res["latents"])
    assert all(x["label"] is None or isinstance(x["label"], str) for x in res["latents"])
    (raw,) = res["inputs"]
    assert raw["kind"] == "raw states" and raw["count"] == 64 and len(raw["largest"]) == 3
    assert all(x["index"].startswith("raw") for x in raw["largest"])
    sizes = [abs(x["contribution"]) for x in raw["largest"]]
    assert sizes == sorted(sizes, reverse=True)


def test_explain_names_raw_state_inputs_as_inputs_not_latents():
    """The shipped sae+raw bundle's explain printed "latent raw123 ... raw state"."""
    from bot.cli.evaluate import explain_rows

    res = {
        "latents": [{"index": 7, "activation": 0.5, "contribution": 0.1, "label": "branch condition"}],
        "inputs": [
            {
                "kind": "raw states",
                "count": 896,
                "contribution": 0.25,
                "largest": [{"index": "raw123", "contribution": 0.07}, {"index": "raw5", "contribution": -0.05}],
            }
        ],
    }
    latent, raw = explain_rows(res)
    assert latent.split()[:2] == ["latent", "7"] and latent.endswith("branch condition")
    assert raw.strip() == "raw states (896): contrib +0.2500 in all; largest raw123 +0.0700, raw5 -0.0500"
