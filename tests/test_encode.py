"""The line-state encoder on the tiny random Qwen2: exactness of the truncated forward, windows,
batching, line mapping, pooling, surprise, and the `pttrust encode` CLI."""

from __future__ import annotations

import math
import platform
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_CORPUS

from risk_core.encode import EncodeConfig, encode_lines, encode_tokens, plan_windows, pool_lines, token_line_indices
from risk_core.errors import UsageError
from risk_core.model_loading import LoadedModel, load_model

LONG_TEXT = "".join(TINY_CORPUS) * 3


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> LoadedModel:
    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def tiny_local_attention(tiny) -> LoadedModel:
    """The tiny model with 4-token sliding-window attention in every layer: a token's state depends
    only on its last 4 * (4 - 1) = 12 tokens, so windows with >= 12 tokens of left context must
    reproduce one full pass exactly (up to float rounding)."""
    from transformers import Qwen2ForCausalLM

    cfg = tiny.model.config.__class__.from_dict(tiny.model.config.to_dict())
    cfg.use_sliding_window, cfg.sliding_window, cfg.max_window_layers = True, 4, 0
    cfg.layer_types = ["sliding_attention"] * cfg.num_hidden_layers
    model = Qwen2ForCausalLM(cfg).eval()
    model.load_state_dict(tiny.model.state_dict())
    return LoadedModel(model, tiny.tokenizer, "tiny-local", None, tiny.num_layers, tiny.d_model, tiny.device)


def _ids(loaded, text):
    return loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids


def test_load_model_from_directory(tiny):
    assert tiny.tokenizer.is_fast
    assert (tiny.num_layers, tiny.d_model, tiny.device.type) == (4, 64, "cpu")
    assert tiny.sha256 is None and not tiny.model.training
    assert next(tiny.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("layer", [0, 1, 2, 3, 4])
def test_truncated_forward_equals_hidden_states(tiny, layer):
    ref = tiny.model(_ids(tiny, LONG_TEXT), output_hidden_states=True).hidden_states[layer][0]
    got = encode_tokens(tiny, [LONG_TEXT], EncodeConfig(layer=layer, window=4096))[0].states
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer", [0, 1, 2, 3, 4])
def test_a_model_loaded_up_to_the_layer_gives_the_full_models_states(tiny, tiny_model_dir, layer):
    ref = tiny.model(_ids(tiny, LONG_TEXT), output_hidden_states=True).hidden_states[layer][0]
    truncated = load_model(str(tiny_model_dir), up_to_layer=layer)
    got = encode_tokens(truncated, [LONG_TEXT], EncodeConfig(layer=layer, window=4096))[0].states
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_a_truncated_model_refuses_deeper_layers_and_surprise(tiny_model_dir):
    truncated = load_model(str(tiny_model_dir), up_to_layer=2)
    with pytest.raises(UsageError, match="deepest"):
        encode_tokens(truncated, ["x = 1\n"], EncodeConfig(layer=3))
    with pytest.raises(UsageError, match="LM head"):
        encode_tokens(truncated, ["x = 1\n"], EncodeConfig(layer=2, surprise=True))


def test_int8_states_stay_close_to_float32(tiny, tiny_model_dir):
    ref = encode_tokens(tiny, [LONG_TEXT], EncodeConfig(layer=3))[0].states
    q = load_model(str(tiny_model_dir), quantize="int8", up_to_layer=3)
    got = encode_tokens(q, [LONG_TEXT], EncodeConfig(layer=3))[0].states
    assert not torch.equal(got, ref)  # the quantized path is really taken
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    assert cos.min() > 0.95


def test_extra_layers_come_from_the_same_pass(tiny):
    ref = tiny.model(_ids(tiny, LONG_TEXT), output_hidden_states=True).hidden_states
    got = encode_tokens(tiny, [LONG_TEXT], EncodeConfig(layer=3, extra_layers=(0, 1), window=4096))[0]
    torch.testing.assert_close(got.states, ref[3][0], rtol=0, atol=1e-5)
    assert sorted(got.extra) == [0, 1]
    for layer in (0, 1):
        torch.testing.assert_close(got.extra[layer], ref[layer][0], rtol=0, atol=1e-5)


def test_echo_reads_the_text_twice_in_one_pass(tiny):
    """The second reading is the states of the text's ids repeated, at the repeat; the first reading is
    the plain encoding, for every layer captured."""
    text = TINY_CORPUS[0]
    ids = _ids(tiny, text)
    ref = tiny.model(torch.cat([ids, ids], dim=1), output_hidden_states=True).hidden_states
    n = ids.shape[1]
    got = encode_tokens(tiny, [text], EncodeConfig(layer=3, extra_layers=(1,), echo=True))[0]
    plain = encode_tokens(tiny, [text], EncodeConfig(layer=3, extra_layers=(1,)))[0]
    torch.testing.assert_close(got.states, plain.states, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.extra[1], plain.extra[1], rtol=0, atol=1e-5)
    assert sorted(got.echo) == [1, 3]
    for layer in (1, 3):
        torch.testing.assert_close(got.echo[layer], ref[layer][0, n:], rtol=0, atol=1e-5)
    assert not torch.allclose(got.echo[3], got.states, atol=1e-3)  # it did see the whole text first
    assert encode_tokens(tiny, [text], EncodeConfig(layer=3))[0].echo == {}


def test_echo_on_the_torch_engine_matches_transformers(tiny, tiny_model_dir):
    """The review's engine (a stack loaded up to the layer) gives the same second reading."""
    lean = load_model(str(tiny_model_dir), up_to_layer=3)
    assert lean.engine == "torch"
    texts = [TINY_CORPUS[0], TINY_CORPUS[3]]
    cfg = EncodeConfig(layer=3, echo=True)
    for want, got in zip(encode_tokens(tiny, texts, cfg), encode_tokens(lean, texts, cfg)):
        torch.testing.assert_close(got.echo[3], want.echo[3], rtol=0, atol=1e-5)


def test_echo_windows_and_batches_like_the_plain_reading(tiny):
    """Long texts are cut into windows of half the size (each read twice), every token is kept once,
    and a text's echo states do not depend on what it is batched with."""
    texts = [LONG_TEXT, TINY_CORPUS[0], "", TINY_CORPUS[3]]
    cfg = dict(layer=2, window=96, min_context=20, echo=True)
    batched = encode_tokens(tiny, texts, EncodeConfig(batch_size=8, **cfg))
    for text, got in zip(texts, batched):
        alone = encode_tokens(tiny, [text], EncodeConfig(batch_size=1, **cfg))[0]
        assert got.echo[2].shape == got.states.shape
        torch.testing.assert_close(got.echo[2], alone.echo[2], rtol=0, atol=1e-5)
    first = _ids(tiny, LONG_TEXT)[:, :48]  # the first window: 48 tokens, read twice
    ref = tiny.model(torch.cat([first, first], dim=1), output_hidden_states=True).hidden_states[2][0, 48:]
    torch.testing.assert_close(batched[0].echo[2][:48], ref, rtol=0, atol=1e-5)
    with pytest.raises(UsageError, match="echo"):
        encode_tokens(tiny, ["x = 1\n"], EncodeConfig(layer=1, window=40, min_context=20, echo=True))


def test_stopping_early_leaves_the_model_intact(tiny):
    ids = _ids(tiny, TINY_CORPUS[0])
    before = tiny.model(ids).logits
    encode_tokens(tiny, [TINY_CORPUS[0]], EncodeConfig(layer=1))
    torch.testing.assert_close(tiny.model(ids).logits, before, rtol=0, atol=0)


def test_layer_out_of_range_names_the_valid_range(tiny):
    with pytest.raises(UsageError, match=r"layers 0\.\.4"):
        encode_tokens(tiny, ["x = 1\n"], EncodeConfig(layer=5))
    with pytest.raises(UsageError, match="min_context"):
        encode_tokens(tiny, ["x = 1\n"], EncodeConfig(layer=1, window=8, min_context=8))


@pytest.mark.parametrize("window,min_context", [(64, 16), (40, 12), (33, 20)])
def test_window_boundaries_do_not_matter(tiny_local_attention, window, min_context):
    full = encode_tokens(tiny_local_attention, [LONG_TEXT], EncodeConfig(layer=4, window=4096))[0]
    windowed = encode_tokens(
        tiny_local_attention, [LONG_TEXT], EncodeConfig(layer=4, window=window, min_context=min_context)
    )[0]
    assert full.states.shape[0] > 3 * window  # several windows were needed
    torch.testing.assert_close(windowed.states, full.states, rtol=0, atol=1e-4)


def test_first_window_is_exact_and_windows_cover_every_token_once(tiny):
    full = encode_tokens(tiny, [LONG_TEXT], EncodeConfig(layer=3, window=4096))[0].states
    windowed = encode_tokens(tiny, [LONG_TEXT], EncodeConfig(layer=3, window=50, min_context=20))[0].states
    torch.testing.assert_close(windowed[:50], full[:50], rtol=0, atol=1e-5)
    for n in (0, 1, 49, 50, 51, 500):
        spans = plan_windows(n, 50, 20)
        kept = [t for start, end, keep in spans for t in range(keep, end)]
        assert kept == list(range(n))
        assert all(end - start <= 50 and (start == 0 or keep - start >= 20) for start, end, keep in spans)


def test_batching_does_not_leak_padding(tiny):
    texts = [LONG_TEXT, TINY_CORPUS[0], "", TINY_CORPUS[3], LONG_TEXT[:300]]
    cfg = dict(layer=4, window=96, min_context=32, surprise=True)
    batched = encode_tokens(tiny, texts, EncodeConfig(batch_size=8, **cfg))
    for text, got in zip(texts, batched):
        alone = encode_tokens(tiny, [text], EncodeConfig(batch_size=1, **cfg))[0]
        torch.testing.assert_close(got.states, alone.states, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.nll, alone.nll, rtol=0, atol=1e-5, equal_nan=True)


def test_short_windows_are_packed_many_to_a_pass(tiny, monkeypatch):
    """Windows of a few tokens (a changed import, a class header) share one forward pass up to
    batch_tokens padded tokens, rather than batch_size at a time; the states are the same as alone."""
    import risk_core.encode as encode_mod

    passes = []
    real = encode_mod.forward_states

    def spy(loaded, ids, *args, **kwargs):
        passes.append(tuple(ids.shape))
        return real(loaded, ids, *args, **kwargs)

    monkeypatch.setattr(encode_mod, "forward_states", spy)
    texts = [f"x{i} = {i}\n" for i in range(40)] + [LONG_TEXT[:400]]
    packed = encode_tokens(tiny, texts, EncodeConfig(layer=4, batch_size=8, batch_tokens=4096))
    widths = [w for _, w in passes]
    # the long window goes alone (the short ones would be mostly padding beside it); the 40 short
    # ones share one pass, where eight at a time took five
    assert [rows for rows, _ in passes] == [1, 40], passes
    assert all(rows * w <= max(4096, 8 * w) for rows, w in passes), widths
    passes.clear()
    for text, got in zip(texts, packed):
        alone = encode_tokens(tiny, [text], EncodeConfig(layer=4, batch_size=1))[0]
        torch.testing.assert_close(got.states, alone.states, rtol=0, atol=1e-5)


def test_token_lines_follow_the_documented_rule():
    text = "ab\n\n  cd\nx"
    # tokens: "ab" | "\n\n" (ends line 0 and swallows blank line 1) | "  cd" | "\n" | "x"
    offsets = [(0, 2), (2, 4), (4, 8), (8, 9), (9, 10)]
    lines, n = token_line_indices(text, offsets)
    assert lines.tolist() == [0, 0, 2, 2, 3] and n == 4


def test_blank_lines_and_empty_text(tiny):
    text = "a = 1\n\n\n\nb = 2\n"
    out = encode_lines(tiny, [text, ""], EncodeConfig(layer=2))
    held, blank = out[0].line_numbers, out[0].blank_lines
    assert held[0] == 1 and held[-1] == 5
    assert sorted(held + blank) == [1, 2, 3, 4, 5]  # every line is either encoded or reported
    # (the tiny tokenizer gives every newline its own token; the real model's "\n\n" tokens leave
    # blank lines tokenless, checked in the integration test)
    assert out[0].states.shape == (len(held), 64)
    assert out[1].states.shape == (0, 64) and out[1].line_numbers == [] and out[1].blank_lines == []


def test_pooling_modes():
    x = torch.tensor([[1.0, 5.0], [3.0, -1.0], [2.0, 2.0], [7.0, 0.0]])
    lines = torch.tensor([0, 0, 2, 2])
    mean, numbers = pool_lines(x, lines, 4, "mean")
    assert numbers == [1, 3]
    assert mean.tolist() == [[2.0, 2.0], [4.5, 1.0]]
    assert pool_lines(x, lines, 4, "max")[0].tolist() == [[3.0, 5.0], [7.0, 2.0]]
    assert pool_lines(x, lines, 4, "last")[0].tolist() == [[3.0, -1.0], [7.0, 0.0]]
    with pytest.raises(UsageError):
        pool_lines(x, lines, 4, "median")


def test_pooling_ignores_nan():
    nll = torch.tensor([math.nan, 2.0, 4.0, math.nan])
    lines = torch.tensor([0, 0, 1, 2])
    for mode, want in [("mean", [2.0, 4.0]), ("max", [2.0, 4.0]), ("last", [2.0, 4.0])]:
        got, numbers = pool_lines(nll, lines, 3, mode)
        assert numbers == [1, 2, 3] and got[:2].tolist() == want and math.isnan(got[2])


def test_surprise_matches_a_manual_computation(tiny):
    text = TINY_CORPUS[2]
    ts = encode_tokens(tiny, [text], EncodeConfig(layer=2, surprise=True))[0]
    ids = _ids(tiny, text)[0]
    logp = torch.log_softmax(tiny.model(ids[None]).logits[0].float(), -1)
    nll = -logp[:-1].gather(-1, ids[1:, None])[:, 0]
    entropy = -(logp[:-1].exp() * logp[:-1]).sum(-1)
    assert math.isnan(ts.nll[0]) and math.isnan(ts.entropy[0])
    torch.testing.assert_close(ts.nll[1:], nll, rtol=0, atol=1e-4)
    torch.testing.assert_close(ts.entropy[1:], entropy, rtol=0, atol=1e-4)
    lines = encode_lines(tiny, [text], EncodeConfig(layer=2, surprise=True))[0]
    assert lines.surprise_mean.shape == (len(lines.line_numbers),)
    assert not torch.isnan(lines.surprise_mean).any()  # line 1 has tokens after the NaN one


# ---------------------------------------------------------------------------------------------- CLI


def _cli(args):
    from bot.cli import main

    return CliRunner().invoke(main, args)


def test_cli_encode_writes_line_states(tiny_model_dir, tmp_path):
    from safetensors import safe_open

    src = tmp_path / "a.py"
    src.write_text("def f(x):\n\n    return x\n")
    out = tmp_path / "states.safetensors"
    res = _cli(["encode", str(src), "--layer", "2", "--out", str(out), "--model", str(tiny_model_dir)])
    assert res.exit_code == 0, res.output
    with safe_open(str(out), "pt") as f:
        assert f.get_tensor("states").shape[1] == 64
        assert f.get_tensor("line_numbers").tolist()[0] == 1
        assert f.metadata()["layer"] == "2"


@pytest.mark.parametrize(
    "case,args,message",
    [
        ("layer", ["--layer", "7"], "layers 0..4"),
        ("model", ["--model", "no-such-model"], "known: qwen2.5-coder-0.5b"),
        ("big", ["--max-bytes", "3"], "over the limit"),
        ("empty", [], "empty file"),
    ],
)
def test_cli_encode_errors_are_one_line(tiny_model_dir, tmp_path, case, args, message):
    src = tmp_path / "a.py"
    src.write_text("" if case == "empty" else "x = 1\n")
    model = [] if case == "model" else ["--model", str(tiny_model_dir)]
    res = _cli(["encode", str(src), "--out", str(tmp_path / "o.safetensors"), *model, *args])
    assert res.exit_code == 2
    assert message in res.output and res.output.strip().startswith("error:")
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_cli_encode_warns_once_on_invalid_utf8(tiny_model_dir, tmp_path):
    src = tmp_path / "a.py"
    src.write_bytes(b"x = '\xff\xfe'\ny = 2\n")
    res = _cli(
        ["encode", str(src), "--layer", "1", "--out", str(tmp_path / "o.safetensors"), "--model", str(tiny_model_dir)]
    )
    assert res.exit_code == 0 and res.output.count("not valid UTF-8") == 1


_CHURN = """
import ctypes
from risk_core.encode import release_freed_memory

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def rss_mb():
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmRSS")) / 1e3

# 400 MB in 100 kB heap blocks (torch's CPU tensors are malloc'd too), then every other one freed: the
# freed ones cannot merge into the heap's top, so glibc keeps them, as it kept the surprise pass's buffers.
blocks = [libc.malloc(100_000) for _ in range(4000)]
for block in blocks:
    ctypes.memset(block, 1, 100_000)
for block in blocks[::2]:
    libc.free(block)
held = rss_mb()
release_freed_memory()
print(held - rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap trim is glibc's")
def test_freed_tensor_memory_goes_back_to_the_os():
    # Without it a --surprise encode held 15 GB after 64 samples (1.8 GB with it): glibc kept every
    # freed logits buffer of the pass, and the next window's buffers, of another size, did not reuse them.
    out = subprocess.run([sys.executable, "-c", _CHURN], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 100  # of the 200 MB freed


def test_a_surprise_pass_hands_its_freed_buffers_back(tiny, monkeypatch):
    import risk_core.encode as encode

    calls = []
    monkeypatch.setattr(encode, "release_freed_memory", lambda: calls.append(1))
    one_window_a_pass = dict(layer=2, window=64, min_context=16, batch_size=1, batch_tokens=1)
    encode_tokens(tiny, ["x = 1\n" * 60], EncodeConfig(surprise=True, **one_window_a_pass))
    assert len(calls) >= 2  # once per forward pass, not once per call
    calls.clear()
    encode_tokens(tiny, ["x = 1\n" * 60], EncodeConfig(**one_window_a_pass))
    assert not calls  # the states-only pass frees little, and a trim per pass would cost it page faults
