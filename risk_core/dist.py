"""The little torch.distributed glue harvest and training need under ``torchrun``.

Everything here is plain torch.distributed (nccl on GPUs, gloo on CPU); without torchrun's
environment variables it is a no-op single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    """Global rank of this process."""
    world: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Rank on this node: picks the GPU."""

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init() -> DistInfo:
    """Join the process group torchrun set up (if any). Idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # These modules (transformers imports them) bind group.WORLD into defaults at import time.
        # Imported after the group exists, they keep it and its gloo threads alive past
        # destroy_process_group, and the process then aborts at exit ("terminate called ...").
        import torch.distributed.checkpoint  # noqa: F401
        import torch.distributed.fsdp  # noqa: F401

        use_cuda = torch.cuda.is_available() and os.environ.get("PTTRUST_DIST_BACKEND", "") != "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local)


def device(info: DistInfo, requested: str = "auto") -> str:
    """Each rank drives its own GPU; ``requested`` other than auto is respected as given."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return f"cuda:{info.local_rank}" if info.enabled else "cuda"
    return "cpu"


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce(t: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: T, info: DistInfo) -> T:
    """``obj`` of rank 0 on every rank (itself when not distributed)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
