"""What a harvest runs the model on, and how: the seeded token stream of a corpus split cut into
chunks, the truncated forward that reads one layer, and the fingerprint of the weights read."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from risk_core.errors import UsageError
from risk_core.hashing import file_sha256

if TYPE_CHECKING:
    from risk_core.corpus import Corpus
    from risk_core.harvest import HarvestConfig


def token_stream(
    corpus: Corpus, split: str, tokenizer, cfg: HarvestConfig, files_per_batch: int = 16
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield (token_ids, file_ids, line_ids) chunks of ``ctx_len`` from the split's files, concatenated
    in a seeded order with EOS after each file (line id -1 for EOS). The final partial chunk is dropped."""
    from risk_core.encode import token_line_indices

    files = sorted(corpus.split(split), key=lambda f: f.sha256)
    random.Random(cfg.seed).shuffle(files)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UsageError("the tokenizer has no EOS token to separate files")
    T = cfg.ctx_len
    buf_ids: list[int] = []
    buf_files: list[int] = []
    buf_lines: list[int] = []
    for start in range(0, len(files), files_per_batch):
        group = files[start : start + files_per_batch]
        texts = [corpus.read_text(f) for f in group]
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        for f, text, ids, offsets in zip(group, texts, enc["input_ids"], enc["offset_mapping"]):
            lines, _ = token_line_indices(text, offsets)
            buf_ids.extend(ids)
            buf_ids.append(eos)
            buf_files.extend([f.id] * (len(ids) + 1))
            buf_lines.extend(lines.tolist())
            buf_lines.append(-1)
        n_full = len(buf_ids) // T
        for c in range(n_full):
            sl = slice(c * T, (c + 1) * T)
            yield (
                torch.tensor(buf_ids[sl], dtype=torch.int32),
                torch.tensor(buf_files[sl], dtype=torch.int32),
                torch.tensor(buf_lines[sl], dtype=torch.int32),
            )
        cut = n_full * T
        del buf_ids[:cut], buf_files[:cut], buf_lines[:cut]


def layer_states(loaded, input_ids: Tensor, layer: int) -> Tensor:
    """hidden_states[layer] of a full [B, T] batch (no padding), stopping the forward at that layer.

    Uses risk_core.encode's forward so that harvest and scoring read states exactly the same way."""
    from risk_core.encode import EncodeConfig, forward_states

    ids = input_ids.long()
    mask = torch.ones_like(ids)
    positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    with torch.inference_mode():
        h = forward_states(loaded, ids, mask, positions, EncodeConfig(layer=layer, surprise=False))[0][layer]
    return h


def model_fingerprint(name_or_path: str, loaded) -> str | None:
    """sha256 of the model's weights: the registry's GGUF hash, else a hash of the local weight files
    (sorted *.safetensors, name + content), so the trained SAE records exactly what it was fitted to."""
    if loaded.sha256:
        return loaded.sha256
    p = Path(name_or_path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(bytes.fromhex(file_sha256(f)))
    return h.hexdigest()
