"""Harvest one layer's per-token hidden states over a corpus into activation shards (SAE training data).

The train (or validation) split's files, in a fixed seeded order, are tokenized and concatenated with
an EOS token after each file; the stream is cut into chunks of ``ctx_len`` tokens and the model is run
on batches of chunks only up to the layer read (``risk_core.encode``'s early-stopping hook). The first
``skip_first`` positions of every chunk are not stored: a chunk's first token is the model's attention
sink, whose state has a norm orders of magnitude above the rest and would dominate the SAE's loss.

Output: a harvest directory as ``risk_core.shards`` describes it (harvest.json, train/ and val/
shards, val_chunks.safetensors), plus ``state.r<rank>.json``, the shards finished so far (resume
bookkeeping).

Shard i holds chunks [i*c, (i+1)*c) of the stream whatever the number of processes, so a resumed or a
multi-process run writes exactly the shards of a single uninterrupted one. Every file is written under
a temporary name and renamed: a kill never leaves a half-written shard under a shard's name.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from risk_core import dist
from risk_core.atomic import write_atomic_json
from risk_core.corpus import Corpus
from risk_core.errors import PttrustError, UsageError
from risk_core.harvest_stream import layer_states, model_fingerprint, token_stream  # noqa: F401  (bench, tests)
from risk_core.hashing import file_sha256
from risk_core.shards import (  # noqa: F401  (re-exported: the harvest's file names and shard checks)
    FORMAT_VERSION,
    HARVEST_FILE,
    VAL_CHUNKS_FILE,
    check_shard,
    load_shard,
    shard_rows,
    write_atomic_safetensors,
)

log = logging.getLogger(__name__)


@dataclass
class HarvestConfig:
    layer: int = 12
    """hidden_states index read (0 = embeddings, L = output of block L), as in EncodeConfig."""
    tokens: int = 10_000_000
    """Activation tokens to harvest from the train split (the budget; stops earlier if the split ends)."""
    val_tokens: int = 131_072
    """Activation tokens to harvest from the validation split."""
    ctx_len: int = 1024
    """Tokens per chunk (the sequence length the model is run on)."""
    batch_size: int = 8
    """Chunks per forward pass."""
    shard_tokens: int = 131_072
    """Approximate activation tokens per shard (rounded to whole batches)."""
    skip_first: int = 1
    """Positions at the start of each chunk whose states are not stored (the attention sink)."""
    val_ce_chunks: int = 16
    """Validation chunks saved whole for the dCE evaluation during training."""
    seed: int = 0
    """Seeds the file order of the stream."""

    @property
    def acts_per_chunk(self) -> int:
        return self.ctx_len - self.skip_first

    @property
    def chunks_per_shard(self) -> int:
        n = max(1, round(self.shard_tokens / self.acts_per_chunk / self.batch_size))
        return n * self.batch_size

    def check(self) -> None:
        if self.ctx_len < 2 or not 0 <= self.skip_first < self.ctx_len:
            raise UsageError(f"need ctx_len >= 2 and 0 <= skip_first < ctx_len (got {self.ctx_len}, {self.skip_first})")
        if self.batch_size < 1 or self.tokens < 1 or self.val_tokens < 0 or self.shard_tokens < 1:
            raise UsageError("batch size, tokens and shard tokens must be positive")


# ---------------------------------------------------------------------------------------------
# Harvest


Progress = Callable[[str, int, int], None]
"""progress(split, tokens_done, tokens_total)"""


def _fingerprint(cfg: HarvestConfig, model: str, model_sha: str | None, manifest_sha: str, d_model: int) -> dict:
    return {
        "format": FORMAT_VERSION,
        "config": asdict(cfg),
        "model": model,
        "model_sha256": model_sha,
        "corpus_manifest_sha256": manifest_sha,
        "d_model": d_model,
    }


def _read_states(out: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    for p in sorted(out.glob("state.r*.json")):
        try:
            done.update(json.loads(p.read_text()).get("shards", {}))
        except (OSError, ValueError):
            log.warning("ignoring unreadable state file %s", p)
    return done


def harvest(
    corpus_dir: str | Path,
    model: str,
    out: str | Path,
    cfg: HarvestConfig,
    device: str = "auto",
    quantize: str = "auto",
    dtype: str = "auto",
    progress: Progress | None = None,
    loaded=None,
) -> dict:
    """Harvest train and validation activations into ``out``; returns the harvest.json document.

    Resumable: shards already complete (recorded in a state file, or whose header and size check out)
    are skipped; anything else at a shard's name is rebuilt. Under torchrun each rank writes the shards
    whose index equals its rank modulo the world size."""
    cfg.check()
    info = dist.init()
    out = Path(out)
    corpus = Corpus(corpus_dir)
    if loaded is None:
        from risk_core.model_loading import load_model

        loaded = load_model(model, device=dist.device(info, device), quantize=quantize, dtype=dtype)
    if not 0 <= cfg.layer <= loaded.num_layers:
        raise UsageError(f"layer {cfg.layer} is out of range: the model has layers 0..{loaded.num_layers}")
    if Path(model).is_dir():  # record where it is, so training can find it from any directory
        model = str(Path(model).resolve())
    model_sha = dist.broadcast_object(model_fingerprint(model, loaded) if info.is_main else None, info)
    fp = _fingerprint(cfg, model, model_sha, corpus.manifest_sha256, loaded.d_model)

    if info.is_main:
        try:
            for sub in ("train", "val"):
                (out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PttrustError(f"cannot create {out}: {err.strerror}") from None
        fp_path = out / "fingerprint.json"
        if fp_path.exists():
            old = json.loads(fp_path.read_text())
            if old != fp:
                diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
                raise UsageError(
                    f"{out} holds a harvest with different settings ({', '.join(diff)}); use another --out or delete it"
                )
        else:
            need = (cfg.tokens + cfg.val_tokens) * loaded.d_model * 2 * 1.05
            free = shutil.disk_usage(out).free
            if need > free:
                raise PttrustError(
                    f"not enough disk space in {out}: the harvest needs about {need / 2**30:.1f} GiB, "
                    f"{free / 2**30:.1f} GiB free"
                )
            write_atomic_json(fp, fp_path)
    dist.barrier(info)

    state_path = out / f"state.r{info.rank}.json"
    done = _read_states(out)
    # Carry over this rank's earlier records: the state file is rewritten whole after each shard.
    mine: dict[str, dict] = {}
    if state_path.exists():
        try:
            mine.update(json.loads(state_path.read_text()).get("shards", {}))
        except (OSError, ValueError):
            pass

    def record(name: str, path: Path, n: int) -> None:
        mine[name] = {"sha256": file_sha256(path), "n_tokens": n, "bytes": path.stat().st_size}
        write_atomic_json({"fingerprint": fp, "shards": mine}, state_path)

    summary: dict = {}
    for split, sub, budget in (("train", "train", cfg.tokens), ("validation", "val", cfg.val_tokens)):
        if budget <= 0:
            continue
        summary[sub] = _harvest_split(
            corpus,
            split,
            out / sub,
            sub,
            loaded,
            cfg,
            budget,
            info,
            done,
            record,
            progress,
            out if split == "validation" else None,
        )

    dist.barrier(info)
    doc = None
    if info.is_main:
        states = _read_states(out)
        shards = {}
        for sub in ("train", "val"):
            for name in sorted(states):
                if name.startswith(sub + "/"):
                    shards[name] = states[name]
        expected = summary.get("train", {}).get("names", []) + summary.get("val", {}).get("names", [])
        missing = [n for n in expected if n not in shards]
        if missing:
            raise PttrustError(f"harvest incomplete, shards missing: {', '.join(missing[:5])}")
        shards = {n: shards[n] for n in expected}
        doc = {
            **fp,
            "n_tokens": {
                sub: sum(s["n_tokens"] for n, s in shards.items() if n.startswith(sub + "/"))
                for sub in ("train", "val")
            },
            "num_layers": loaded.num_layers,
            "shards": shards,
            "corpus_dir": str(Path(corpus_dir).resolve()),
            "val_chunks": summary.get("val", {}).get("val_chunks"),
        }
        write_atomic_json(doc, out / HARVEST_FILE)
    doc = dist.broadcast_object(doc, info)
    if doc is None:  # rank 0 always sends the document it wrote
        raise PttrustError("the harvest summary was not received from the first process")
    # A gloo group left alive at interpreter exit can abort the process ("terminate called ...").
    dist.shutdown(info)
    return doc


class _ShardBuffer:
    """The shard this process is filling: its chunks' ids (stored at once) and activations (filled a
    batch of chunks at a time, by the truncated forward)."""

    def __init__(self, capacity: int, d_model: int):
        self.acts = torch.empty(capacity, d_model, dtype=torch.float16)
        self.token_ids = torch.empty(capacity, dtype=torch.int32)
        self.file_ids = torch.empty(capacity, dtype=torch.int32)
        self.line_ids = torch.empty(capacity, dtype=torch.int32)
        self.fill = 0
        """Rows stored so far (activations of the pending chunks are still to be computed)."""
        self.pending: list[Tensor] = []
        """Chunks whose ids are stored but whose activations are not (the next batch)."""

    def add_chunk(self, ids: Tensor, files: Tensor, lines: Tensor, skip_first: int) -> None:
        n = ids.shape[0] - skip_first
        rows = slice(self.fill, self.fill + n)
        self.token_ids[rows] = ids[skip_first:]
        self.file_ids[rows] = files[skip_first:]
        self.line_ids[rows] = lines[skip_first:]
        self.pending.append(ids)
        self.fill += n

    def flush(self, loaded: Any, cfg: HarvestConfig) -> None:
        """Run the pending chunks through the model and store their activations."""
        if not self.pending:
            return
        h = layer_states(loaded, torch.stack(self.pending), cfg.layer)[:, cfg.skip_first :]
        n = h.shape[0] * h.shape[1]
        self.acts[self.fill - n : self.fill] = h.reshape(n, -1).to(device="cpu", dtype=torch.float16)
        self.pending = []

    def tensors(self) -> dict[str, Tensor]:
        return {
            "acts": self.acts[: self.fill],
            "token_ids": self.token_ids[: self.fill],
            "file_ids": self.file_ids[: self.fill],
            "line_ids": self.line_ids[: self.fill],
        }


def _harvest_split(
    corpus,
    split,
    shard_dir: Path,
    sub: str,
    loaded,
    cfg: HarvestConfig,
    budget: int,
    info,
    done: dict,
    record,
    progress: Progress | None,
    val_chunks_dir: Path | None,
) -> dict:
    per_chunk = cfg.acts_per_chunk
    n_chunks_wanted = math.ceil(budget / per_chunk)
    cps = cfg.chunks_per_shard
    d = loaded.d_model

    def shard_name(i: int) -> str:
        return f"{sub}/shard_{i:05d}.safetensors"

    def is_done(i: int) -> bool:
        path = shard_dir.parent / shard_name(i)
        if not path.exists():
            return False
        rec = done.get(shard_name(i))
        if rec is not None and path.stat().st_size == rec["bytes"]:
            return True
        problem = check_shard(path, d)
        if problem:
            log.warning("rebuilding damaged shard %s: %s", path, problem)
            return False
        # Complete but unrecorded (killed between the rename and the state write): adopt it.
        record(shard_name(i), path, shard_rows(path))
        return True

    names: list[str] = []
    tokens_done = 0
    t0 = time.perf_counter()
    ce_chunks: list[Tensor] = []
    shard = 0
    chunk_in_shard = 0
    chunks_seen = 0
    current: _ShardBuffer | None = None  # None: this process does not compute the current shard

    def finish_shard() -> None:
        nonlocal shard, chunk_in_shard, current
        if current is not None:
            current.flush(loaded, cfg)
            path = shard_dir.parent / shard_name(shard)
            write_atomic_safetensors(
                current.tensors(),
                path,
                # One metadata key: safetensors does not keep key order, and identical runs must
                # give byte-identical shards.
                metadata={"pttrust": json.dumps({"layer": cfg.layer, "shard": shard, "split": split}, sort_keys=True)},
            )
            record(shard_name(shard), path, current.fill)
            current = None
        shard += 1
        chunk_in_shard = 0

    for ids, files, lines in token_stream(corpus, split, loaded.tokenizer, cfg):
        if chunks_seen >= n_chunks_wanted:
            break
        if val_chunks_dir is not None and len(ce_chunks) < cfg.val_ce_chunks:
            ce_chunks.append(ids)
        if chunk_in_shard == 0:
            # Start of a new shard: decide whether this process computes it.
            names.append(shard_name(shard))
            if shard % info.world == info.rank and not is_done(shard):
                current = _ShardBuffer(min(cps, n_chunks_wanted - chunks_seen) * per_chunk, d)
        chunks_seen += 1
        chunk_in_shard += 1
        if current is not None:
            current.add_chunk(ids, files, lines, cfg.skip_first)
            # Batches never straddle shards, so the batch shapes (and the float results) are the
            # same however the run is split across processes or restarts.
            if len(current.pending) == cfg.batch_size:
                current.flush(loaded, cfg)
        tokens_done += per_chunk
        last_of_shard = chunk_in_shard == cps or chunks_seen == n_chunks_wanted
        if last_of_shard:
            finish_shard()
        if progress and (last_of_shard or chunks_seen % cfg.batch_size == 0):
            progress(sub, tokens_done, n_chunks_wanted * per_chunk)
    if chunk_in_shard > 0:  # the split ended inside a shard: keep what there is
        finish_shard()
    if chunks_seen == 0:
        raise UsageError(f"the {split} split of the corpus is shorter than one chunk of {cfg.ctx_len} tokens")
    if chunks_seen < n_chunks_wanted:
        log.warning("%s split ran out after %d tokens (budget %d)", split, chunks_seen * per_chunk, budget)
    result: dict = {"names": names, "tokens": chunks_seen * per_chunk, "elapsed_s": time.perf_counter() - t0}
    if val_chunks_dir is not None and ce_chunks and info.is_main:
        write_atomic_safetensors({"input_ids": torch.stack(ce_chunks)}, val_chunks_dir / VAL_CHUNKS_FILE)
        result["val_chunks"] = {
            "file": VAL_CHUNKS_FILE,
            "n": len(ce_chunks),
            "sha256": file_sha256(val_chunks_dir / VAL_CHUNKS_FILE),
        }
    return result
