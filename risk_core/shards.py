"""Activation shards on disk: the one module that writes, checks and reads them (harvest writes, training reads).

A harvest directory::

    harvest.json                  settings, model + corpus fingerprints, every shard with its sha256
    train/shard_00000.safetensors acts [n, d] fp16, token_ids, file_ids, line_ids [n] int32
    val/shard_00000.safetensors   the same over the validation split
    val_chunks.safetensors        input_ids [n_chunks, ctx_len] of the first validation chunks (for dCE)

Every file is written under a temporary name, flushed and renamed (``risk_core.atomic``), and read back
against the sha256 harvest.json records, so damage is one named error, never a silent wrong batch.
``ShardData`` is the reading side: a finished harvest and the deterministic batch schedule over it.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from risk_core.atomic import atomic_path
from risk_core.errors import PttrustError, UsageError

HARVEST_FILE = "harvest.json"
VAL_CHUNKS_FILE = "val_chunks.safetensors"
SHARD_KEYS = ("acts", "token_ids", "file_ids", "line_ids")
FORMAT_VERSION = 1

_REBUILD_HINT = "rerun `pttrust pretrain harvest` with the same arguments to rebuild it"


def write_atomic_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` as safetensors, flushed to disk before the rename."""
    from safetensors.torch import save_file

    # fsync: the rename must never expose a shard whose bytes are not on disk
    with atomic_path(path, fsync=True) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def _header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header and the size the file must have according to it."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError("file shorter than the safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ValueError("implausible header length")
        head = f.read(n)
        if len(head) < n:
            raise ValueError("header truncated")
        meta = json.loads(head)
    end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
    return meta, 8 + n + end


def check_shard(path: Path, d_model: int | None = None) -> str | None:
    """Why ``path`` is not a complete activation shard, or None if it is (cheap: header and size)."""
    try:
        meta, size = _header(path)
        actual = path.stat().st_size
    except (OSError, ValueError) as err:
        return f"unreadable ({err})"
    if actual != size:
        return f"truncated or padded ({actual} bytes, header says {size})"
    missing = [k for k in SHARD_KEYS if k not in meta]
    if missing:
        return f"missing tensors {', '.join(missing)}"
    n, d = meta["acts"]["shape"]
    if d_model is not None and d != d_model:
        return f"acts width {d}, expected {d_model}"
    if any(meta[k]["shape"] != [n] for k in SHARD_KEYS[1:]):
        return "inconsistent tensor lengths"
    return None


def shard_rows(path: Path) -> int:
    """Number of activation rows of a complete shard (read from its header)."""
    meta, _ = _header(path)
    return int(meta["acts"]["shape"][0])


def _read_verified(path: Path, sha256: str | None, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PttrustError(f"cannot read {what} {path}: {err.strerror}; {_REBUILD_HINT}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise PttrustError(f"{what} {path} is corrupted (sha256 mismatch); {_REBUILD_HINT}")
    return data


def load_shard(path: Path, sha256: str | None = None) -> dict[str, Tensor]:
    """Read a shard, verifying its hash when given; any damage is a PttrustError naming the file."""
    from safetensors.torch import load as st_load

    data = _read_verified(path, sha256, "activation shard")
    problem = check_shard(path)
    if problem:
        raise PttrustError(f"activation shard {path} is corrupted: {problem}; {_REBUILD_HINT}")
    try:
        return st_load(data)
    except Exception as err:  # safetensors raises its own error types
        raise PttrustError(f"activation shard {path} is corrupted: {err}; {_REBUILD_HINT}") from None


def load_val_chunks(path: Path, sha256: str) -> Tensor:
    """The validation chunks' input_ids [n_chunks, ctx_len], verified against their recorded hash."""
    from safetensors.torch import load as st_load

    data = _read_verified(path, sha256, "validation chunks")
    try:
        return st_load(data)["input_ids"]
    except Exception as err:  # safetensors raises its own error types; a missing key is damage too
        raise PttrustError(f"validation chunks {path} are corrupted: {err}; {_REBUILD_HINT}") from None


# ---------------------------------------------------------------------------------------------
# Reading a finished harvest for training


class BatchSchedule(Protocol):
    """The training settings that decide which activations make up which batch (``TrainConfig``)."""

    batch_size: int
    max_tokens: int
    epochs: int
    shards_in_memory: int
    seed: int
    init_tokens: int
    val_tokens: int


@dataclass
class _Group:
    epoch: int
    index: int
    shards: list[str]
    n_tokens: int
    first_step: int
    n_steps: int


class ShardData:
    """The harvested shards of one directory and a deterministic batch schedule over them.

    Batches are drawn from ``shards_in_memory`` shards at a time (bounded memory), shuffled with a
    fixed seed; which batch comes at which step is a pure function of (seed, step), so a resumed run
    sees exactly the data of an uninterrupted one."""

    def __init__(self, acts_dir: Path, cfg: BatchSchedule):
        self.dir = acts_dir
        doc_path = acts_dir / HARVEST_FILE
        if not doc_path.is_file():
            raise UsageError(
                f"{acts_dir} holds no finished harvest ({HARVEST_FILE} missing); "
                "run or resume `pttrust pretrain harvest` first"
            )
        try:
            self.doc: dict[str, Any] = json.loads(doc_path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read {doc_path}: {err}") from None
        self.shards: dict[str, dict[str, Any]] = dict(self.doc["shards"])
        self.train = [n for n in self.shards if n.startswith("train/")]
        self.val = [n for n in self.shards if n.startswith("val/")]
        if not self.train:
            raise UsageError(f"{acts_dir} has no training shards")
        self.cfg = cfg
        self.groups = self._plan()

    def load(self, name: str) -> dict[str, Tensor]:
        return load_shard(self.dir / name, self.shards[name]["sha256"])

    def _plan(self) -> list[_Group]:
        """Cut each epoch's seeded shard order into groups of ``shards_in_memory`` shards and give
        every group its range of global steps. Runs until max_tokens (or for ``epochs`` passes)."""
        cfg, B = self.cfg, self.cfg.batch_size
        budget_steps = math.ceil(cfg.max_tokens / B) if cfg.max_tokens else None
        groups: list[_Group] = []
        step, epoch = 0, 0
        per_epoch = sum(self.shards[s]["n_tokens"] for s in self.train) // B  # an upper bound
        while (step < budget_steps if budget_steps is not None else epoch < cfg.epochs) and per_epoch > 0:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            order = [self.train[i] for i in torch.randperm(len(self.train), generator=g).tolist()]
            step_at_epoch_start = step
            for gi in range(0, len(order), cfg.shards_in_memory):
                names = order[gi : gi + cfg.shards_in_memory]
                n = sum(self.shards[s]["n_tokens"] for s in names)
                n_steps = n // B  # a group's remainder is dropped, so every batch is full
                if budget_steps is not None:
                    n_steps = min(n_steps, budget_steps - step)
                if n_steps > 0:
                    groups.append(_Group(epoch, gi // cfg.shards_in_memory, names, n, step, n_steps))
                    step += n_steps
            epoch += 1
            if step == step_at_epoch_start:  # no group holds a full batch: more epochs would not help
                break
        if not groups:
            total = sum(self.shards[s]["n_tokens"] for s in self.train)
            raise UsageError(
                f"batch size {B} is larger than the harvested data a group of --shards-in-memory "
                f"shards holds ({total} tokens in all); lower --batch-size"
            )
        return groups

    @property
    def total_steps(self) -> int:
        return self.groups[-1].first_step + self.groups[-1].n_steps

    @property
    def train_tokens(self) -> int:
        """Activation tokens harvested from the train split."""
        return sum(self.shards[n]["n_tokens"] for n in self.train)

    def _group_order(self, grp: _Group) -> tuple[Tensor, Tensor]:
        acts = torch.cat([self.load(n)["acts"] for n in grp.shards])
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + 7919 * grp.epoch + grp.index + 1)
        return acts, torch.randperm(acts.shape[0], generator=g)

    def batches(self, start_step: int = 0) -> Iterator[tuple[int, Tensor]]:
        """(step, [batch_size, d] fp16 CPU batch) from ``start_step`` on; loads only what is needed."""
        B = self.cfg.batch_size
        for grp in self.groups:
            if grp.first_step + grp.n_steps <= start_step:
                continue
            acts, perm = self._group_order(grp)
            for i in range(max(0, start_step - grp.first_step), grp.n_steps):
                yield grp.first_step + i, acts[perm[i * B : (i + 1) * B]]
            del acts

    def init_sample(self) -> Tensor:
        """The first tokens of the first batches: what input_scale and b_dec are fitted on."""
        acts, perm = self._group_order(self.groups[0])
        return acts[perm[: self.cfg.init_tokens]].float()

    def val_acts(self) -> Tensor | None:
        """The first ``val_tokens`` validation activations (None when the harvest has none)."""
        parts: list[Tensor] = []
        n = 0
        for name in self.val:
            if n >= self.cfg.val_tokens:
                break
            a = self.load(name)["acts"]
            parts.append(a[: self.cfg.val_tokens - n])
            n += parts[-1].shape[0]
        return torch.cat(parts) if parts else None

    def val_chunks(self, n: int) -> Tensor | None:
        """The first ``n`` saved validation chunks (input_ids) for dCE, or None when the harvest has none."""
        vc = self.doc.get("val_chunks")
        if not vc:
            return None
        return load_val_chunks(self.dir / vc["file"], vc["sha256"])[:n]
