"""End to end on the real embedded model: prepare qwen2.5-coder-0.5b from its installed part packages
into a fresh cache (assembly, sha256, GGUF conversion, ~1 min) and encode a small file on CPU."""

from __future__ import annotations

import pytest
import torch

from risk_core import model_loading, models
from risk_core.encode import EncodeConfig, encode_lines, encode_tokens

SOURCE = '''def mean(xs):
    """Average of a list."""


    total = 0
    for x in xs:
        total += x
    return total / len(xs)
'''


@pytest.mark.integration
def test_prepare_and_encode_the_embedded_model():
    spec = models.REGISTRY[models.DEFAULT_MODEL]
    models.installed_part_files(spec)  # fails with the exact pip command when the parts are missing
    path = models.prepare(spec.name)
    assert models.cache_problem(spec, path, verify=True) is None

    loaded = model_loading.load_model(spec.name, device="cpu")
    assert (loaded.num_layers, loaded.d_model, loaded.sha256) == (24, 896, spec.sha256)
    assert loaded.tokenizer.is_fast

    cfg = EncodeConfig(layer=12, surprise=True)
    (lines,) = encode_lines(loaded, [SOURCE], cfg)
    assert lines.states.shape == (len(lines.line_numbers), 896)
    assert torch.isfinite(lines.states).all()
    # Qwen's tokenizer merges the run of newlines after the docstring into one token, which leaves
    # the blank line(s) it swallows tokenless: reported, not dropped.
    assert lines.blank_lines and set(lines.blank_lines) <= {3, 4}
    assert sorted(lines.line_numbers + lines.blank_lines) == list(range(1, 9))
    # A code model finds the body of `mean` predictable: low surprise on the `return` line.
    assert lines.surprise_mean[-1] < 3.0

    ids = loaded.tokenizer(SOURCE, add_special_tokens=False, return_tensors="pt").input_ids
    ref = loaded.model(ids, output_hidden_states=True).hidden_states[12][0]
    tokens = encode_tokens(loaded, [SOURCE], cfg)[0]
    torch.testing.assert_close(tokens.states, ref, rtol=0, atol=1e-3)
