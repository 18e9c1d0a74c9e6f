"""The scorer on the tiny model with a random SAE and probe: exactness of targeted scoring and the
shape of what the bot receives (no claim about the quality of random weights)."""

from __future__ import annotations

import pytest
import torch

from risk_core.artifacts import ArtifactConfig, Bundle
from risk_core.models import load_model
from risk_core.probe import ProbeConfig, RiskProbe
from risk_core.sae import SaeConfig, SparseCoder
from risk_core.score import FileToScore, Scorer

CODE = "".join(f"def f{i}(a, b):\n    if a < b:\n        return a - b\n    return b + {i}\n\n" for i in range(12))


@pytest.fixture(scope="module")
def scorer(tiny_model_dir) -> Scorer:
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir))
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    probe = RiskProbe(ProbeConfig(n_features=sae.num_latents))
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2)
    return Scorer(loaded, Bundle(cfg, sae, probe))


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
    assert abs(lr.latents[0].contribution) >= abs(lr.latents[-1].contribution)
