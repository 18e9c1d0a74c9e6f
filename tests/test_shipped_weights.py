"""The bundle shipped for the embedded model: its files load, match their recorded hashes, stay small,
and (with the real model) rank a known buggy line above its neighbours."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import risk_core
from risk_core.models import DEFAULT_MODEL, REGISTRY

SHIPPED = Path(risk_core.__file__).parent / "weights" / DEFAULT_MODEL

# A fixed example: the loop bound skips the last element (the classic off-by-one of a hand-written max).
BUGGY = '''def largest(values):
    """Return the largest element of a non-empty list."""
    best = values[0]
    for i in range(1, len(values) - 1):
        if values[i] > best:
            best = values[i]
    return best
'''
BUGGY_LINE = 4


def test_shipped_files_match_their_recorded_hashes():
    sums = (SHIPPED / "SHA256SUMS").read_text().splitlines()
    recorded = {name.strip().removeprefix("./"): digest for digest, name in (line.split(maxsplit=1) for line in sums)}
    on_disk = {str(p.relative_to(SHIPPED)) for p in SHIPPED.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert set(recorded) == on_disk
    for name, digest in recorded.items():
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name
    total = sum((SHIPPED / name).stat().st_size for name in recorded)
    assert total < 60 * 2**20


def test_shipped_bundle_loads_and_names_the_embedded_model():
    from safetensors import safe_open

    from risk_core.artifacts import Bundle

    bundle = Bundle.load(SHIPPED)
    assert bundle.cfg.model_sha256 == REGISTRY[DEFAULT_MODEL].sha256
    assert bundle.cfg.d_model == bundle.sae.d_in == 896
    with safe_open(str(SHIPPED / "sae" / "sae.safetensors"), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} <= {"F16"}
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert metrics["data_sha256"] and metrics["seed"] == 0
    sae_cfg = json.loads((SHIPPED / "sae" / "cfg.json").read_text())
    assert sae_cfg["layer"] == bundle.cfg.layer and sae_cfg["corpus_manifest_sha256"]


@pytest.mark.integration
def test_shipped_bundle_ranks_the_known_bug_above_its_neighbours():
    from bot.run import load_scorer
    from risk_core.score import FileToScore

    scorer, _, _ = load_scorer(None, None, device="cpu")
    (scores,) = scorer.score([FileToScore("largest.py", BUGGY)])
    risk = {lr.line: lr.risk for lr in scores.lines}
    neighbours = [risk[n] for n in (BUGGY_LINE - 1, BUGGY_LINE + 1) if n in risk]
    assert neighbours and all(risk[BUGGY_LINE] > r for r in neighbours), risk
