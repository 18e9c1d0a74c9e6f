"""Harvest and SAE training end to end on the tiny model (seconds each)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from risk_core import harvest as hv
from risk_core.corpus import CorpusConfig, build_corpus
from risk_core.errors import PttrustError, UsageError
from risk_core.sae import SaeConfig, SparseCoder
from risk_core.train_sae import ShardData, TrainConfig, delta_ce, train

HCFG = dict(layer=2, tokens=3000, val_tokens=500, ctx_len=64, batch_size=2, shard_tokens=600, val_ce_chunks=4)


def make_code_dir(root: Path, n: int = 40, seed: int = 0) -> Path:
    """Synthetic Python files: varied enough to fill every split."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = ["alpha", "beta", "gamma", "items", "total", "node", "value", "count"]
    for i in range(n):
        lines = []
        for j in range(rng.randint(4, 12)):
            a, b = rng.sample(names, 2)
            lines.append(
                rng.choice(
                    [
                        f"def {a}_{j}({b}):\n    return {b} + {rng.randint(0, 99)}\n",
                        f"for {a} in range({rng.randint(1, 50)}):\n    {b} += {a}\n",
                        f"class {a.title()}{j}:\n    def __init__(self):\n        self.{b} = []\n",
                        f"if {a} > {b}:\n    print({a}, {b})\n",
                    ]
                )
            )
        (root / f"mod_{i}.py").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("corpus")
    src = make_code_dir(base / "src")
    build_corpus([str(src)], base / "corpus", CorpusConfig(validation_fraction=0.25, reserved_fraction=0.1))
    return base / "corpus"


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from risk_core.model_loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def acts_dir(tmp_path_factory, corpus_dir, loaded, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("acts")
    hv.harvest(corpus_dir, str(tiny_model_dir), out, hv.HarvestConfig(**HCFG), loaded=loaded)
    return out


def _shard_bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.glob("*/shard_*.safetensors"))}


def test_harvest_layout_and_contents(acts_dir, loaded):
    doc = json.loads((acts_dir / hv.HARVEST_FILE).read_text())
    assert doc["d_model"] == 64 and doc["config"]["layer"] == 2 and doc["model_sha256"]
    assert doc["n_tokens"]["train"] >= 3000 and doc["n_tokens"]["val"] > 0
    assert len([n for n in doc["shards"] if n.startswith("train/")]) > 1
    shard = load_file(str(acts_dir / "train" / "shard_00000.safetensors"))
    assert shard["acts"].dtype == torch.float16 and shard["acts"].shape[1] == 64
    n = shard["acts"].shape[0]
    assert all(shard[k].shape == (n,) for k in ("token_ids", "file_ids", "line_ids"))
    # The stored states are the model's hidden_states[2] of the stored tokens (chunk = 64, skip 1).
    vc = load_file(str(acts_dir / hv.VAL_CHUNKS_FILE))["input_ids"]
    assert vc.shape == (4, 64)
    eos = loaded.tokenizer.eos_token_id
    assert ((shard["token_ids"] == eos) == (shard["line_ids"] == -1)).all()
    assert not list(acts_dir.glob("**/*.tmp*"))


def test_harvest_states_match_full_forward(acts_dir, corpus_dir, loaded):
    cfg = hv.HarvestConfig(**HCFG)
    from risk_core.corpus import Corpus

    ids, _, _ = next(hv.token_stream(Corpus(corpus_dir), "train", loaded.tokenizer, cfg))
    with torch.no_grad():
        ref = loaded.model(input_ids=ids.long()[None], output_hidden_states=True).hidden_states[2][0, 1:]
    shard = load_file(str(acts_dir / "train" / "shard_00000.safetensors"))
    torch.testing.assert_close(shard["acts"][:63].float(), ref.half().float(), atol=2e-3, rtol=1e-2)
    assert (shard["token_ids"][:63] == ids[1:]).all()


def test_harvest_resume_after_kill_gives_identical_shards(
    tmp_path, acts_dir, corpus_dir, loaded, tiny_model_dir, monkeypatch
):
    out = tmp_path / "acts"
    real = hv.write_atomic_safetensors
    calls = {"n": 0}

    def dying(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(str(path) + ".tmp999").write_bytes(b"half a shard")  # what a kill mid-write leaves
            raise KeyboardInterrupt
        real(tensors, path, metadata)

    monkeypatch.setattr(hv, "write_atomic_safetensors", dying)
    with pytest.raises(KeyboardInterrupt):
        hv.harvest(corpus_dir, str(tiny_model_dir), out, hv.HarvestConfig(**HCFG), loaded=loaded)
    monkeypatch.setattr(hv, "write_atomic_safetensors", real)
    assert len(list(out.glob("train/shard_*.safetensors"))) == 2
    assert not (out / hv.HARVEST_FILE).exists()
    # Damage one finished shard as a crash during a copy might: resume must rebuild it.
    p = out / "train" / "shard_00001.safetensors"
    p.write_bytes(p.read_bytes()[:-100])
    hv.harvest(corpus_dir, str(tiny_model_dir), out, hv.HarvestConfig(**HCFG), loaded=loaded)
    assert _shard_bytes(out) == _shard_bytes(acts_dir)
    a = json.loads((out / hv.HARVEST_FILE).read_text())["shards"]
    b = json.loads((acts_dir / hv.HARVEST_FILE).read_text())["shards"]
    assert a == b


def test_harvest_refuses_other_settings_in_same_dir(tmp_path, acts_dir, corpus_dir, loaded, tiny_model_dir):
    from risk_core.errors import UsageError

    with pytest.raises(UsageError, match="different settings"):
        hv.harvest(corpus_dir, str(tiny_model_dir), acts_dir, hv.HarvestConfig(**{**HCFG, "layer": 3}), loaded=loaded)


def test_truncated_shard_is_named(tmp_path, acts_dir):
    import shutil

    copy = tmp_path / "acts"
    shutil.copytree(acts_dir, copy)
    p = copy / "train" / "shard_00001.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    assert "truncated" in hv.check_shard(p)
    data = ShardData(copy, TrainConfig(batch_size=256))
    with pytest.raises(PttrustError, match="shard_00001"):
        data.load("train/shard_00001.safetensors")


def _train_cfg(**kw):
    base = dict(
        batch_size=256,
        lr=3e-3,
        lr_warmup_steps=3,
        epochs=2,
        shards_in_memory=2,
        log_every=1,
        val_every=8,
        val_tokens=400,
        ce_chunks=2,
        checkpoint_every=5,
        dead_feature_threshold=1500,
        init_tokens=1024,
    )
    return TrainConfig(**{**base, **kw})


SAE_CFG = SaeConfig(expansion_factor=4, k=8)


def test_train_end_to_end_and_resume_equals_uninterrupted(tmp_path, acts_dir, loaded):
    full = train(acts_dir, tmp_path / "full", SAE_CFG, _train_cfg(), loaded=loaded, device="cpu")
    for name in ("cfg.json", "sae.safetensors", "metrics.json", "metrics.jsonl"):
        assert (tmp_path / "full" / name).is_file()
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["training_tokens"] == metrics["steps"] * 256 and "trained on" in metrics["statement"]
    for key in ("fvu", "l0", "dead_fraction", "delta_ce", "ce_clean", "ce_spliced"):
        assert math.isfinite(full[key]), key
    assert 0 < full["l0"] <= 8 and full["fvu"] < 1.0
    cfg = json.loads((tmp_path / "full" / "cfg.json").read_text())
    assert cfg["layer"] == 2 and cfg["model"]["sha256"] and cfg["corpus_manifest_sha256"] and cfg["shards"]
    assert cfg["training"]["batch_size"] == 256
    sae = SparseCoder.load(tmp_path / "full", expected_d_in=64)
    assert sae.num_latents == 256

    def die_at(step):
        def log_fn(rec):
            if rec.get("event") == "train" and rec["step"] == step:
                raise KeyboardInterrupt

        return log_fn

    with pytest.raises(KeyboardInterrupt):
        train(acts_dir, tmp_path / "resumed", SAE_CFG, _train_cfg(), loaded=loaded, device="cpu", log_fn=die_at(12))
    assert (tmp_path / "resumed" / "checkpoints" / "step_00000010").is_dir()
    # A damaged newest checkpoint falls back to the previous good one.
    (tmp_path / "resumed" / "checkpoints" / "step_00000010" / "state.safetensors").write_bytes(b"junk")
    with pytest.raises(UsageError, match="other settings"):  # a setting that changes the weights
        train(acts_dir, tmp_path / "resumed", SAE_CFG, _train_cfg(lr=1e-3), loaded=loaded, device="cpu")
    # How often to log, validate or checkpoint may change on resume without changing the result.
    train(
        acts_dir,
        tmp_path / "resumed",
        SAE_CFG,
        _train_cfg(val_every=6, log_every=3, checkpoint_every=4),
        loaded=loaded,
        device="cpu",
    )
    a = load_file(str(tmp_path / "full" / "sae.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "sae.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_train_batchtopk_learns_and_saves_its_threshold(tmp_path, acts_dir, loaded):
    cfg = SaeConfig(expansion_factor=4, k=8, activation="batchtopk")
    final = train(acts_dir, tmp_path / "b", cfg, _train_cfg(epochs=1), loaded=loaded, device="cpu")
    sae = SparseCoder.load(tmp_path / "b", expected_d_in=64)
    assert sae.cfg.activation == "batchtopk" and float(sae.threshold) > 0
    # Validation reads the threshold, not the batch: its L0 is about k, not exactly k.
    assert 0 < final["l0"] <= 4 * 8 and final["fvu"] < 1.0
    assert json.loads((tmp_path / "b" / "cfg.json").read_text())["activation"] == "batchtopk"


def test_delta_ce_is_zero_for_a_perfect_reconstruction(acts_dir, loaded):
    class Identity(torch.nn.Module):
        W_dec = torch.zeros(1)

        def forward(self, x):
            return SimpleNamespace(sae_out=x)

    ids = load_file(str(acts_dir / hv.VAL_CHUNKS_FILE))["input_ids"][:2]
    res = delta_ce(loaded, Identity(), 2, ids)
    assert abs(res["delta_ce"]) < 1e-5 and res["ce_clean"] > 0

    class Zero(Identity):
        def forward(self, x):
            return SimpleNamespace(sae_out=torch.zeros_like(x))

    # (a random model may even predict better without the layer: only the change is checked)
    assert abs(delta_ce(loaded, Zero(), 2, ids)["delta_ce"]) > 1e-3


def test_cli_harvest_and_train(tmp_path, corpus_dir, tiny_model_dir):
    from bot.cli import main

    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "pretrain",
            "harvest",
            "--corpus",
            str(corpus_dir),
            "--model",
            str(tiny_model_dir),
            "--layer",
            "1",
            "--tokens",
            "1500",
            "--val-tokens",
            "300",
            "--ctx-len",
            "64",
            "--batch-size",
            "2",
            "--shard-tokens",
            "600",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        main,
        [
            "pretrain",
            "train",
            "--acts",
            str(tmp_path / "a"),
            "--out",
            str(tmp_path / "s"),
            "--expansion-factor",
            "2",
            "--k",
            "4",
            "--batch-size",
            "256",
            "--ce-chunks",
            "1",
            "--lr-warmup-steps",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "saved SAE" in r.output and (tmp_path / "s" / "sae.safetensors").is_file()
    r = runner.invoke(main, ["pretrain", "train", "--acts", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output
    r = runner.invoke(
        main,
        [
            "pretrain",
            "harvest",
            "--corpus",
            str(tmp_path / "nothing"),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "y"),
        ],
    )
    assert r.exit_code == 2 and "not a corpus" in r.output


def test_out_of_disk_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(PttrustError, match="out of disk space writing .*shard"):
        hv.write_atomic_safetensors({"a": torch.zeros(2)}, tmp_path / "shard_00000.safetensors")
    assert not list(tmp_path.iterdir())
    with pytest.raises(PttrustError, match="out of disk space writing .*sae.safetensors"):
        SparseCoder(8, SaeConfig(k=2)).save(tmp_path / "sae")


def test_lr_schedule_warms_up_linearly_then_holds():
    from risk_core.train_sae import get_lr

    assert [get_lr(s, 1.0, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert get_lr(0, 2e-3, 0) == 2e-3  # no warm-up: the full rate from the first step


def test_trainer_resume_picks_up_the_newest_checkpoint(tmp_path, acts_dir, loaded):
    from risk_core.train_sae import Trainer

    out = tmp_path / "run"
    cfg = _train_cfg(delta_ce=False, epochs=1)
    fresh = Trainer(acts_dir, out, SAE_CFG, cfg, loaded=loaded, device="cpu")
    assert fresh.resume() is False and fresh.step == 0

    def stop_at_7(rec):
        if rec.get("event") == "train" and rec["step"] == 7:
            raise KeyboardInterrupt

    killed = Trainer(acts_dir, out, SAE_CFG, cfg, loaded=loaded, device="cpu", log_fn=stop_at_7)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    again = Trainer(acts_dir, out, SAE_CFG, cfg, loaded=loaded, device="cpu")
    assert again.resume() is True
    assert again.step == 5 and again.tokens_seen == 5 * 256  # checkpoint_every=5
    assert [r["step"] for r in again.history if r["event"] == "train"] == [1, 2, 3, 4, 5]
    final = again.fit()
    again.save()
    assert final["step"] == again.data.total_steps and (out / "sae.safetensors").is_file()


def test_checkpoint_out_of_disk_is_one_clear_error(tmp_path, acts_dir, loaded, monkeypatch):
    import errno

    import safetensors.torch

    from risk_core.train_sae import Trainer

    trainer = Trainer(acts_dir, tmp_path / "run", SAE_CFG, _train_cfg(), loaded=loaded, device="cpu")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(PttrustError, match="out of disk space writing .*checkpoints"):
        trainer.save_checkpoint()


def test_damaged_validation_chunks_are_named(tmp_path, acts_dir):
    import shutil

    copy = tmp_path / "acts"
    shutil.copytree(acts_dir, copy)
    (copy / hv.VAL_CHUNKS_FILE).write_bytes(b"not the chunks")
    data = ShardData(copy, TrainConfig(batch_size=256))
    with pytest.raises(PttrustError, match=r"validation chunks .* \(sha256 mismatch\)"):
        data.val_chunks(2)
