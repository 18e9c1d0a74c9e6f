"""The torch engine (risk_core/qwen2.py, risk_core/tokenizer.py): the review's model without
transformers. Its hidden states equal transformers' at every layer, with and without padding; int8
works on it; the float32 copy of the blocks is written once, mapped after, rebuilt when the weights
change; its tokenizer gives transformers' ids and offsets; nothing on the review path imports
transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import TINY_CORPUS

from risk_core import model_loading
from risk_core.encode import EncodeConfig, encode_tokens
from risk_core.errors import UsageError
from risk_core.model_loading import BFLOAT16_BLOCKS, FLOAT32_BLOCKS, load_model, mapped_safetensors, review_dtype
from risk_core.qwen2 import Qwen2Model
from risk_core.tokenizer import FastTokenizer, UnsupportedTokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "".join(TINY_CORPUS) * 2,
    "def f(x):\r\n\treturn x  # café = cafe\u0301 Å A\u030a ﬁ 中文 😀\r\n",
    "x = 1\n",
    "\tif a:\n\t\tb = '<|endoftext|>'\r\n" * 3,
]


def _save_fp16(src: Path, out: Path) -> Path:
    """A copy of the tiny model directory with its weights stored in float16 (as the registry's are)."""
    from safetensors.torch import save_file

    shutil.copytree(src, out)
    tensors = {k: v.half().contiguous() for k, v in mapped_safetensors(src).items()}
    (out / "model.safetensors").unlink()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def tiny_fp16(tiny_model_dir, tmp_path_factory) -> Path:
    return _save_fp16(tiny_model_dir, tmp_path_factory.mktemp("fp16") / "tiny")


def _states(loaded, layer: int, texts: list[str], batch_size: int = 8):
    return encode_tokens(loaded, texts, EncodeConfig(layer=layer, batch_size=batch_size, window=4096))


# --------------------------------------------------------------------------------------------------
# The engine picked


def test_the_review_load_takes_the_torch_engine_and_the_rest_transformers(tiny_model_dir, tmp_path):
    lean = load_model(str(tiny_model_dir), up_to_layer=2)
    assert (lean.engine, type(lean.model)) == ("torch", Qwen2Model)
    assert isinstance(lean.tokenizer, FastTokenizer) and lean.tokenizer.is_fast
    assert (lean.num_layers, lean.max_layer, lean.d_model, lean.device.type) == (4, 2, 64, "cpu")
    assert lean.model.base_model is lean.model and len(lean.model.base_model.layers) == 2
    assert lean.model.get_output_embeddings() is None and not lean.model.training
    assert lean.model.config.hidden_size == 64 and lean.model.config.num_key_value_heads == 2
    assert load_model(str(tiny_model_dir)).engine == "transformers"  # the causal LM, with its head
    assert load_model(str(tiny_model_dir), up_to_layer=2, engine="transformers").engine == "transformers"
    fresh = tmp_path / "m"  # a bfloat16 load writes its copy of the blocks: not into the shared fixture
    shutil.copytree(tiny_model_dir, fresh)
    assert load_model(str(fresh), up_to_layer=2, dtype="bfloat16").engine == "torch"
    assert load_model(str(tiny_model_dir), up_to_layer=2, dtype="float16").engine == "transformers"
    with pytest.raises(UsageError, match="loaded by the torch engine"):
        lean.causal_lm  # noqa: B018 - the property raises


def test_the_torch_engine_says_why_it_cannot_serve_a_load(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="torch engine cannot load .* not the causal LM"):
        load_model(str(tiny_model_dir), engine="torch")
    with pytest.raises(UsageError, match="cpu in float32, bfloat16"):
        load_model(str(tiny_model_dir), up_to_layer=2, dtype="float16", engine="torch")
    with pytest.raises(UsageError, match="unknown engine"):
        load_model(str(tiny_model_dir), engine="jax")
    gelu = tmp_path / "gelu"
    shutil.copytree(tiny_model_dir, gelu)
    cfg = json.loads((gelu / "config.json").read_text())
    (gelu / "config.json").write_text(json.dumps({**cfg, "hidden_act": "gelu"}))
    with pytest.raises(UsageError, match="hidden_act 'gelu'"):
        load_model(str(gelu), up_to_layer=2, engine="torch")
    assert load_model(str(gelu), up_to_layer=2).engine == "transformers"  # auto: explicitly the other one
    custom = tmp_path / "custom-tokenizer"
    shutil.copytree(tiny_model_dir, custom)
    tcfg = json.loads((custom / "tokenizer_config.json").read_text())
    (custom / "tokenizer_config.json").write_text(json.dumps({**tcfg, "auto_map": {"AutoTokenizer": ["x", None]}}))
    with pytest.raises(UnsupportedTokenizer, match="its own tokenizer code"):
        FastTokenizer.qwen2(custom)


def test_errors_of_the_torch_engine_are_those_of_the_loader(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="out of range"):
        load_model(str(tiny_model_dir), up_to_layer=5)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 63)
    with pytest.raises(UsageError) as caught:
        load_model(str(broken), up_to_layer=2, engine="torch")
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"cannot load model {str(broken)!r}")


# --------------------------------------------------------------------------------------------------
# Exactness against transformers


@pytest.mark.parametrize("stored", ["float32", "float16"])
@pytest.mark.parametrize("layer", [0, 2, 4])
def test_hidden_states_equal_transformers_with_and_without_padding(tiny_model_dir, tiny_fp16, stored, layer):
    """Layer 0 (the embeddings), a middle layer, and the last one (through the final norm); one text
    alone (no padding, the causal kernel) and all texts in one right-padded batch."""
    directory = str(tiny_model_dir if stored == "float32" else tiny_fp16)
    lean = load_model(directory, up_to_layer=layer)
    ref = load_model(directory, up_to_layer=layer, engine="transformers")
    assert (lean.engine, ref.engine) == ("torch", "transformers")
    for batch_size in (1, 8):
        for got, want in zip(_states(lean, layer, TEXTS, batch_size), _states(ref, layer, TEXTS, batch_size)):
            torch.testing.assert_close(got.states, want.states, rtol=0, atol=1e-5)
            assert torch.equal(got.token_lines, want.token_lines)


def test_bfloat16_blocks_are_a_mapped_copy_and_compute_like_transformers(tiny_fp16, tmp_path):
    """In bfloat16 the torch engine maps a bfloat16 copy of the blocks (written once, beside the float32
    one) and computes in bfloat16 what transformers computes in bfloat16, to bfloat16's precision; the
    states stay within a few percent of float32's."""
    from risk_core.model_loading import BFLOAT16_BLOCKS

    directory = _fresh_copy(tiny_fp16, tmp_path / "m")
    lean = load_model(str(directory), up_to_layer=3, dtype="bfloat16")
    assert (lean.engine, lean.model.dtype) == ("torch", torch.bfloat16)
    assert (directory / BFLOAT16_BLOCKS).is_file() and not (directory / FLOAT32_BLOCKS).exists()
    block = lean.model.layers[0].mlp.down_proj.weight
    assert block.dtype == torch.bfloat16
    assert block.untyped_storage().nbytes() == (directory / BFLOAT16_BLOCKS).stat().st_size
    written = _stamp(directory / BFLOAT16_BLOCKS)
    load_model(str(directory), up_to_layer=3, dtype="bfloat16")
    assert _stamp(directory / BFLOAT16_BLOCKS) == written  # mapped, not rewritten
    ref = load_model(str(directory), up_to_layer=3, dtype="bfloat16", engine="transformers")
    fp32 = load_model(str(directory), up_to_layer=3)
    for got, want, full in zip(_states(lean, 3, TEXTS), _states(ref, 3, TEXTS), _states(fp32, 3, TEXTS)):
        assert got.states.dtype == torch.float32  # handed on in float32 whatever the compute dtype
        torch.testing.assert_close(got.states, want.states, rtol=0.02, atol=0.02)
        rel = (got.states - full.states).norm(dim=1) / full.states.norm(dim=1)
        assert float(rel.median()) < 0.05


def test_every_layer_of_one_pass_equals_the_full_models_hidden_states(tiny_model_dir):
    lean = load_model(str(tiny_model_dir), up_to_layer=4)
    full = load_model(str(tiny_model_dir))
    ids = full.tokenizer(TEXTS[0], add_special_tokens=False, return_tensors="pt").input_ids
    ref = full.model(ids, output_hidden_states=True).hidden_states
    got = encode_tokens(lean, [TEXTS[0]], EncodeConfig(layer=4, extra_layers=(0, 1, 2, 3), window=4096))[0]
    torch.testing.assert_close(got.states, ref[4][0], rtol=0, atol=1e-5)
    for layer in range(4):
        torch.testing.assert_close(got.extra[layer], ref[layer][0], rtol=0, atol=1e-5)


def test_left_padding_keeps_the_tokens_states_finite_and_equal(tiny_model_dir):
    """A padding query before every token sees no key: it must not turn the tokens' sums NaN."""
    lean = load_model(str(tiny_model_dir), up_to_layer=4)
    ids = torch.tensor([lean.tokenizer("x = 1\n", add_special_tokens=False)["input_ids"]])
    n = ids.shape[1]
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, n, dtype=torch.long)], dim=1)
    positions = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.arange(n)[None]], dim=1)
    with torch.no_grad():
        alone = lean.model(input_ids=ids).last_hidden_state
        left = lean.model(input_ids=padded, attention_mask=mask, position_ids=positions).last_hidden_state
    assert torch.isfinite(left).all()
    torch.testing.assert_close(left[:, 3:], alone, rtol=0, atol=1e-5)


def test_int8_quantizes_the_torch_engines_linear_layers(tiny_fp16):
    q = load_model(str(tiny_fp16), quantize="int8", up_to_layer=3)
    assert q.engine == "torch"
    assert not [m for m in q.model.modules() if type(m) is torch.nn.Linear]
    assert len([m for m in q.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]) == 3 * 7
    ref = _states(load_model(str(tiny_fp16), up_to_layer=3), 3, TEXTS)
    for got, want in zip(_states(q, 3, TEXTS), ref):
        assert not torch.equal(got.states, want.states)
        assert torch.nn.functional.cosine_similarity(got.states, want.states, dim=1).min() > 0.95


# --------------------------------------------------------------------------------------------------
# The float32 copy of the blocks


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _fresh_copy(src: Path, out: Path) -> Path:
    """A copy of a float16 model directory without its float32 copy (other tests wrote one)."""
    shutil.copytree(src, out)
    (out / FLOAT32_BLOCKS).unlink(missing_ok=True)
    return out


def test_float32_blocks_are_written_once_then_mapped(tiny_fp16, tmp_path):
    directory = _fresh_copy(tiny_fp16, tmp_path / "m")
    copy = directory / FLOAT32_BLOCKS
    messages: list[str] = []
    first = load_model(str(directory), up_to_layer=2, say=messages.append)
    assert copy.is_file() and any("float32 copy" in m for m in messages)
    written = _stamp(copy)
    header = json.loads(copy.read_bytes()[8 : 8 + int.from_bytes(copy.read_bytes()[:8], "little")])
    assert {k for k in header if k != "__metadata__"} == {
        k for k in mapped_safetensors(directory) if k.startswith(("model.layers.0.", "model.layers.1."))
    }
    assert "model.safetensors:" in header["__metadata__"]["source"]

    again = load_model(str(directory), up_to_layer=2, say=messages.append)
    assert _stamp(copy) == written  # not rewritten
    # The blocks are views of the mapped copy, float32; the embedding table stays the float16 file's.
    block = again.model.layers[1].mlp.down_proj.weight
    assert block.dtype == torch.float32 and block.untyped_storage().nbytes() == copy.stat().st_size
    assert again.model.embed_tokens.weight.dtype == torch.float16
    for a, b in zip(_states(first, 2, TEXTS), _states(again, 2, TEXTS)):
        assert torch.equal(a.states, b.states)

    load_model(str(directory), up_to_layer=4)  # deeper: the copy grows to every block and the norm
    assert _stamp(copy) != written and "model.norm.weight" in mapped_safetensors_of(copy)
    grown = _stamp(copy)
    load_model(str(directory), up_to_layer=1)  # shallower: what it holds is enough
    assert _stamp(copy) == grown
    # The weights themselves never include the copy (transformers' loader reads them as before).
    assert len(mapped_safetensors(directory)) == len(mapped_safetensors(tiny_fp16))


def mapped_safetensors_of(file: Path) -> dict:
    n, header = model_loading._read_header(file)
    return model_loading._map_file(file, n, header)


def test_changed_weights_rebuild_the_float32_copy(tiny_fp16, tmp_path):
    from safetensors.torch import save_file

    directory = _fresh_copy(tiny_fp16, tmp_path / "m")
    before = _states(load_model(str(directory), up_to_layer=2), 2, TEXTS[:1])[0].states
    written = _stamp(directory / FLOAT32_BLOCKS)
    tensors = {k: v.clone() for k, v in mapped_safetensors(directory).items()}
    tensors["model.layers.1.mlp.down_proj.weight"] *= 2
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})

    lean = load_model(str(directory), up_to_layer=2)
    assert _stamp(directory / FLOAT32_BLOCKS) != written
    after = _states(lean, 2, TEXTS[:1])[0].states
    assert not torch.allclose(after, before)
    ref = _states(load_model(str(directory), up_to_layer=2, engine="transformers"), 2, TEXTS[:1])[0].states
    torch.testing.assert_close(after, ref, rtol=0, atol=1e-5)


def test_an_unwritable_directory_converts_in_memory(tiny_fp16, tmp_path, monkeypatch):
    directory = _fresh_copy(tiny_fp16, tmp_path / "m")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(model_loading, "_write_copy", refuse)
    lean = load_model(str(directory), up_to_layer=2)
    assert not (directory / FLOAT32_BLOCKS).exists()
    assert lean.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    ref = load_model(str(directory), up_to_layer=2, engine="transformers")
    for got, want in zip(_states(lean, 2, TEXTS), _states(ref, 2, TEXTS)):
        torch.testing.assert_close(got.states, want.states, rtol=0, atol=1e-5)


def test_a_float32_model_maps_its_own_file_and_writes_no_copy(tiny_model_dir):
    lean = load_model(str(tiny_model_dir), up_to_layer=2)
    assert not (tiny_model_dir / FLOAT32_BLOCKS).exists()
    storages = {p.untyped_storage().data_ptr() for p in lean.model.parameters()}
    assert len(storages) == 1  # every parameter is a view of the one mapped model.safetensors


# --------------------------------------------------------------------------------------------------
# The tokenizer


def _check_tokenizer_equals_transformers(directory: Path, texts: list[str]) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    ours = FastTokenizer.qwen2(directory)
    want = hf(texts, add_special_tokens=False, return_offsets_mapping=True)
    got = ours(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert got["input_ids"] == want["input_ids"]
    assert got["offset_mapping"] == [[tuple(o) for o in row] for row in want["offset_mapping"]]
    assert ours(texts[1])["input_ids"] == hf(texts[1])["input_ids"]  # one text, special tokens as called
    assert ours.pad_token_id == hf.pad_token_id and ours.pad_token_id is not None
    assert ours.is_fast and len(ours) == len(hf)
    ids = want["input_ids"][1]
    assert ours.decode(ids) == hf.decode(ids) and [ours.decode([t]) for t in ids] == [hf.decode([t]) for t in ids]


def test_the_tokenizer_gives_transformers_ids_and_offsets(tiny_model_dir):
    _check_tokenizer_equals_transformers(tiny_model_dir, TEXTS)


# --------------------------------------------------------------------------------------------------
# No transformers on the review path


def test_the_review_cli_never_imports_transformers(tiny_fp16, tmp_path):
    """A registry model whose cache is prepared, reviewed through the CLI by the torch engine: neither
    prepare, nor the load, nor the review import transformers (they cost seconds of a cold start)."""
    from risk_core import models
    from risk_core.artifacts import ArtifactConfig, Bundle
    from risk_core.probe import ProbeConfig, RiskProbe
    from risk_core.sae import SaeConfig, SparseCoder

    cache = tmp_path / "cache"
    spec = models.ModelSpec("tiny-lean", "none/tiny", ("tiny-part1",), "0.0.1", "ab" * 32, None)
    dest = cache / "models" / spec.name
    # the module's fp16 copy may hold block files other tests wrote: this review must write its own
    shutil.copytree(tiny_fp16, dest, ignore=shutil.ignore_patterns("blocks-*"))
    models._write_manifest(spec, dest)
    torch.manual_seed(0)
    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    bundle = Bundle(
        ArtifactConfig(model_name=spec.name, model_sha256=None, d_model=64, layer=2),
        sae,
        RiskProbe(ProbeConfig(n_features=sae.num_latents)),
    )
    bundle.save(tmp_path / "bundle")
    script = textwrap.dedent(f"""
        import json, sys
        from risk_core import models
        from risk_core.models import ModelSpec
        spec = ModelSpec(*{tuple(spec.__dict__.values())!r})
        models.REGISTRY[spec.name] = spec
        assert models.prepare(spec.name, locate=lambda s: 1 / 0) is not None  # prepared: reused
        from bot.cli import main
        try:
            main(["review", "--diff", {str(ROOT / "examples" / "example.diff")!r}, "--repo", {str(ROOT)!r},
                  "--model", spec.name, "--bundle", {str(tmp_path / "bundle")!r}, "--device", "cpu",
                  "--format", "json", "--out", {str(tmp_path / "report.json")!r}, "-q"])
        except SystemExit as done:
            assert done.code in (0, None, 1), done.code
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "transformers")))
    """)
    env = {**os.environ, "PTTRUST_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["lines_scored"] > 0
    # the lean engine wrote the blocks of the dtype a review computes in here (bfloat16 on CPUs that
    # multiply it in hardware)
    assert (dest / (BFLOAT16_BLOCKS if review_dtype("cpu") == "bfloat16" else FLOAT32_BLOCKS)).is_file()


def test_a_review_framed_bundle_loads_transformers_explicitly(tiny_model_dir, tmp_path):
    from bot.run import load_scorer
    from risk_core.artifacts import ArtifactConfig, Bundle
    from risk_core.features import frame_text
    from risk_core.probe import ProbeConfig, RiskProbe
    from risk_core.sae import SaeConfig, SparseCoder

    sae = SparseCoder(64, SaeConfig(expansion_factor=4, k=8))
    cfg = ArtifactConfig(model_name="tiny", model_sha256=None, d_model=64, layer=2, framing="review")
    Bundle(cfg, sae, RiskProbe(ProbeConfig(n_features=sae.num_latents))).save(tmp_path / "bundle")
    scorer, _, _ = load_scorer(str(tiny_model_dir), str(tmp_path / "bundle"), "cpu")
    assert scorer.loaded.engine == "transformers"
    with pytest.raises(UsageError, match="needs the transformers engine"):
        load_scorer(str(tiny_model_dir), str(tmp_path / "bundle"), "cpu", engine="torch")
    with pytest.raises(UsageError, match="chat template"):
        frame_text("x = 1\n", "python", "review", FastTokenizer.qwen2(tiny_model_dir))


# --------------------------------------------------------------------------------------------------
# The real model


@pytest.mark.integration
def test_the_real_model_states_at_layer_16_equal_transformers():
    from risk_core import models

    spec = models.REGISTRY[models.DEFAULT_MODEL]
    models.installed_part_files(spec)
    path = models.prepare(spec.name)
    lean = load_model(spec.name, device="cpu", up_to_layer=16)
    ref = load_model(spec.name, device="cpu", up_to_layer=16, engine="transformers")
    assert (lean.engine, ref.engine, lean.sha256) == ("torch", "transformers", spec.sha256)
    source = (ROOT / "risk_core" / "candidates.py").read_text()[:3000]
    texts = [source, *TEXTS[1:]]
    for got, want in zip(_states(lean, 16, texts), _states(ref, 16, texts)):
        torch.testing.assert_close(got.states, want.states, rtol=0, atol=1e-4)
        assert torch.equal(got.token_lines, want.token_lines)
    _check_tokenizer_equals_transformers(path, texts)
