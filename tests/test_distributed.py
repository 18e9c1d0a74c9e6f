"""Harvest and training under torchrun (2 CPU processes, gloo) equal the single-process runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_harvest_train import HCFG, make_code_dir

from risk_core import harvest as hv
from risk_core.corpus import CorpusConfig, build_corpus
from risk_core.sae import SaeConfig
from risk_core.train_sae import TrainConfig, train


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    pttrust = shutil.which("pttrust") or str(Path(sys.executable).parent / "pttrust")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PTTRUST_DIST_BACKEND": "gloo", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", pttrust, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("dist-corpus")
    build_corpus(
        [str(make_code_dir(base / "src"))],
        base / "corpus",
        CorpusConfig(validation_fraction=0.25, reserved_fraction=0.1),
    )
    return base / "corpus"


def test_two_process_harvest_and_train_match_single_process(tmp_path, corpus_dir, tiny_model_dir):
    from risk_core.model_loading import load_model

    loaded = load_model(str(tiny_model_dir), device="cpu")
    single = tmp_path / "single"
    hv.harvest(corpus_dir, str(tiny_model_dir), single, hv.HarvestConfig(**HCFG), loaded=loaded)

    flags = [
        "--layer",
        str(HCFG["layer"]),
        "--tokens",
        str(HCFG["tokens"]),
        "--val-tokens",
        str(HCFG["val_tokens"]),
        "--ctx-len",
        str(HCFG["ctx_len"]),
        "--batch-size",
        str(HCFG["batch_size"]),
        "--shard-tokens",
        str(HCFG["shard_tokens"]),
    ]
    r = _torchrun(
        [
            "pretrain",
            "harvest",
            "--corpus",
            str(corpus_dir),
            "--model",
            str(tiny_model_dir),
            *flags,
            "--out",
            str(tmp_path / "multi"),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    names = sorted(p.relative_to(single) for p in single.glob("*/shard_*.safetensors"))
    assert len(names) > 2
    for n in names:  # rank r wrote shards r, r+2, ...: together, exactly the single-process shards
        a, b = load_file(str(single / n)), load_file(str(tmp_path / "multi" / n))
        for k in a:
            # acts are stored in fp16: another batch layout may round a value to the neighbouring fp16
            # number, one unit in the last place (2**-10 relative); ids must match exactly.
            torch.testing.assert_close(a[k], b[k], rtol=2**-10 if k == "acts" else 0, atol=1e-3 if k == "acts" else 0)

    tcfg = TrainConfig(
        batch_size=256,
        lr=3e-3,
        lr_warmup_steps=3,
        epochs=2,
        shards_in_memory=2,
        log_every=5,
        val_every=1000,
        val_tokens=400,
        delta_ce=False,
        checkpoint_every=1000,
        dead_feature_threshold=1500,
    )
    train(single, tmp_path / "sae1", SaeConfig(expansion_factor=4, k=8), tcfg, device="cpu")
    r = _torchrun(
        [
            "pretrain",
            "train",
            "--acts",
            str(single),
            "--out",
            str(tmp_path / "sae2"),
            "--expansion-factor",
            "4",
            "--k",
            "8",
            "--batch-size",
            "256",
            "--lr",
            "3e-3",
            "--lr-warmup-steps",
            "3",
            "--epochs",
            "2",
            "--shards-in-memory",
            "2",
            "--log-every",
            "5",
            "--val-every",
            "1000",
            "--val-tokens",
            "400",
            "--no-delta-ce",
            "--checkpoint-every",
            "1000",
            "--dead-tokens",
            "1500",
            "--device",
            "cpu",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    a = load_file(str(tmp_path / "sae1" / "sae.safetensors"))
    b = load_file(str(tmp_path / "sae2" / "sae.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    import json

    assert json.loads((tmp_path / "sae2" / "cfg.json").read_text())["training"]["world_size"] == 2


_SHUTDOWN_SCRIPT = """
import os, sys
from risk_core import dist
info = dist.init()
import transformers.modeling_utils  # what harvest and training import once the group exists
dist.shutdown(info)
alive = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
sys.exit(f"gloo threads outlived the group: {alive}" if any("gloo" in a for a in alive) else 0)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc")
def test_shutdown_leaves_no_gloo_threads(tmp_path):
    # A group that outlives shutdown aborts the process at exit only now and then; its threads
    # outliving it is the deterministic symptom.
    script = tmp_path / "shutdown.py"
    script.write_text(_SHUTDOWN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PTTRUST_DIST_BACKEND": "gloo", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
