"""Shared fixtures: a tiny randomly initialised Qwen2 model saved with ``save_pretrained``, so that the
real loading code runs in every unit test in seconds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

TINY_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, x):\n        self.items.append(x)\n",
    "public static int max(int a, int b) { return a > b ? a : b; }\n",
    "function f(x) { return x <= 0 ? -x : x; }\n",
    'fn main() { let v: Vec<i32> = vec![1, 2, 3]; println!("{:?}", v); }\n',
    "while (n > 0 && k < len) { n -= 1; k += 2; }\n",
]
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _needs_isolation() -> pytest.MarkDecorator:
    from risk_core.data.humaneval import isolation_problem

    problem = isolation_problem()
    return pytest.mark.skipif(problem is not None, reason=f"no isolation: {problem}")


needs_isolation = _needs_isolation()
"""Tests that run HumanEval programs: they run only isolated (bubblewrap, installed by scripts/test-deps
where it can be); without it they skip, and run_sandboxed's one-line refusal is tested on its own."""


def load_script(name: str):
    """A ``scripts/`` file (no .py suffix) imported as a module, for tests of its functions."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(SCRIPTS / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def build_tiny_model(out_dir: Path, num_layers: int = 4, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny Qwen2ForCausalLM + byte-level BPE fast tokenizer to ``out_dir``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TINY_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out_dir)

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def real_model_cache(tmp_path_factory) -> Path:
    """One cache for every integration test of a run: the embedded model is prepared (~1 min) once."""
    return tmp_path_factory.mktemp("real-model-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path, monkeypatch):
    """Keep every test's model cache out of the user's real cache."""
    if request.node.get_closest_marker("integration"):
        cache = request.getfixturevalue("real_model_cache")
    else:
        cache = tmp_path / "cache"
    monkeypatch.setenv("PTTRUST_CACHE_DIR", str(cache))


# Property tests (tests/test_properties.py): a bounded example count by default (CI), a longer profile
# for local runs (HYPOTHESIS_PROFILE=dev), and a deep one for a fuzzing session (HYPOTHESIS_PROFILE=fuzz).
try:
    import os as _os

    from hypothesis import HealthCheck as _HealthCheck
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile(
        "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=[_HealthCheck.too_slow]
    )
    _hypothesis_settings.register_profile("dev", max_examples=1_000, deadline=None)
    _hypothesis_settings.register_profile("fuzz", max_examples=20_000, deadline=None)
    _hypothesis_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is in the `test` extra; without it only test_properties.py is skipped
    pass


GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
    "PATH": "/usr/bin:/bin",
    "GIT_CONFIG_NOSYSTEM": "1",
}
"""A git that reads no user or system config and commits as a fixed author."""


def git(repo: Path, *args: str) -> str:
    """``git -C repo ARGS`` under ``GIT_ENV`` (HOME in the repository): its stdout."""
    env = {**GIT_ENV, "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout
