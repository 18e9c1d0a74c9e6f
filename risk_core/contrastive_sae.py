"""The paper's second SAE phase: reconstruction plus a margin term that pushes a buggy line's latents
away from its fix's.

PtTrust pre-trains its compressive SAE on reconstruction alone for the first epochs, then adds a
contrastive term between the latents of a line and its mutant, so that the few latents there are spend
some of their capacity on what tells a line from a near-identical wrong one. Here the pairs are real:
a mined bug fix's buggy lines in the parent version against the lines that replaced them in the fixed
version (the fixed versions mined beside the bugs). A line's latents are the mean of its tokens'
latents, as the probe reads them; the distance is the two means' Euclidean distance relative to their
norms, and pairs closer than ``margin`` are pushed apart (a squared hinge), while the reconstruction
term keeps the dictionary a dictionary.

    d = |z_buggy - z_fixed| / mean(|z_buggy|, |z_fixed|)
    loss = FVU(token batch) + weight * mean(relu(margin - d)^2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from risk_core.data.from_git.diff import line_opcodes
from risk_core.errors import UsageError
from risk_core.sae import SparseCoder


@dataclass
class ContrastiveConfig:
    steps: int = 2000
    """Optimiser steps of the contrastive phase (it starts from a reconstruction-trained SAE)."""
    batch_tokens: int = 1024
    """Token states per step for the reconstruction term."""
    batch_pairs: int = 64
    """Buggy / fixed line pairs per step for the margin term."""
    weight: float = 1.0
    """The margin term's weight against the reconstruction's FVU (0: reconstruction alone)."""
    margin: float = 0.3
    """Relative distance (``pair_distance``, in (0, 2]) under which a bug's latents and its fix's are pushed apart."""
    lr: float = 1e-3
    """Adam learning rate (a fine-tuning rate: the SAE starts trained)."""
    seed: int = 0
    """Seeds the batch order."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_tokens < 1 or self.batch_pairs < 1:
            raise UsageError("steps, batch_tokens and batch_pairs must be >= 1")
        if self.weight < 0:
            raise UsageError(f"weight must be >= 0 (got {self.weight})")
        if not 0 < self.margin <= 2:
            raise UsageError(f"margin is a relative distance: in (0, 2] (got {self.margin})")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0 (got {self.lr})")


@dataclass
class FixPairs:
    """Token indices of each pair's buggy lines and of its fixed lines (rows of one states tensor)."""

    buggy: list[Tensor]
    """Per pair: the tokens of the lines the fix changed, in the parent version."""
    fixed: list[Tensor]
    """Per pair: the tokens of the lines that replaced them, in the fixed version."""

    def __len__(self) -> int:
        return len(self.buggy)

    def subset(self, keep: list[int]) -> FixPairs:
        return FixPairs([self.buggy[i] for i in keep], [self.fixed[i] for i in keep])


def replaced_lines(buggy_code: str, fixed_code: str, buggy_lines: list[int]) -> list[int]:
    """1-based lines of the fixed version that replaced the labeled ``buggy_lines`` of the parent
    (difflib's replace blocks that touch a labeled line; a fix that only deletes has none)."""
    labeled = set(buggy_lines)
    out: list[int] = []
    for tag, i1, i2, j1, j2 in line_opcodes(buggy_code, fixed_code):
        if tag == "replace" and labeled & set(range(i1 + 1, i2 + 1)):
            out += range(j1 + 1, j2 + 1)
    return out


def line_pool(sae: SparseCoder, states: Tensor, groups: list[Tensor]) -> Tensor:
    """[len(groups), num_latents]: each group's mean token latents (differentiable in the SAE)."""
    toks = torch.cat(groups)
    seg = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor([len(g) for g in groups]))
    z = sae.encode_dense(states[toks].float())
    total = torch.zeros(len(groups), z.shape[1], dtype=z.dtype).index_add(0, seg, z)
    return total / torch.bincount(seg, minlength=len(groups)).clamp_min(1).unsqueeze(1).to(z.dtype)


def pair_distance(sae: SparseCoder, states: Tensor, pairs: FixPairs, which: Tensor | None = None) -> Tensor:
    """Relative distance between each pair's buggy and fixed mean latents, |zb - zf| / mean(|zb|, |zf|)
    in [0, 2] (pairs ``which``, default all). Not the cosine distance: near 0 that is quadratic in the
    difference, so its gradient vanishes for the near-identical pairs a one-line fix makes."""
    idx = range(len(pairs)) if which is None else which.tolist()
    zb = line_pool(sae, states, [pairs.buggy[i] for i in idx])
    zf = line_pool(sae, states, [pairs.fixed[i] for i in idx])
    return (zb - zf).norm(dim=1) / ((zb.norm(dim=1) + zf.norm(dim=1)) / 2).clamp_min(1e-8)


@torch.no_grad()
def validation_metrics(
    sae: SparseCoder, states: Tensor, val_tokens: Tensor, val_pairs: FixPairs, margin: float
) -> dict:
    """Validation FVU on ``val_tokens`` and the pairs' distances (median, share at least ``margin``)."""
    d = pair_distance(sae, states, val_pairs) if len(val_pairs) else torch.zeros(0)
    return {
        "fvu": float(sae(states[val_tokens].float()).fvu) if len(val_tokens) else float("nan"),
        "pair_distance_median": float(d.median()) if len(d) else float("nan"),
        "pairs_beyond_margin": float((d >= margin).float().mean()) if len(d) else float("nan"),
    }


def train_contrastive(
    sae: SparseCoder,
    states: Tensor,
    train_tokens: Tensor,
    train_pairs: FixPairs,
    val_tokens: Tensor,
    val_pairs: FixPairs,
    cfg: ContrastiveConfig,
    log: Callable[[dict], None] = lambda rec: None,
    eval_every: int = 500,
) -> dict:
    """Fine-tune ``sae`` in place on reconstruction + the margin term; returns the metrics document
    (config, validation before and after, history)."""
    if len(train_tokens) == 0 or (cfg.weight > 0 and len(train_pairs) == 0):
        raise UsageError("contrastive phase needs training tokens and, with weight > 0, training pairs")
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    before = validation_metrics(sae, states, val_tokens, val_pairs, cfg.margin)
    history = [{"step": 0, **before}]
    log(history[-1])
    for step in range(1, cfg.steps + 1):
        x = states[train_tokens[torch.randint(len(train_tokens), (cfg.batch_tokens,), generator=g)]].float()
        fvu = sae(x).fvu
        hinge = fvu.new_zeros(())
        if cfg.weight > 0:
            which = torch.randint(len(train_pairs), (cfg.batch_pairs,), generator=g)
            d = pair_distance(sae, states, train_pairs, which)
            hinge = F.relu(cfg.margin - d).pow(2).mean()
        (fvu + cfg.weight * hinge).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
        if step % eval_every == 0 or step == cfg.steps:
            history.append(
                {
                    "step": step,
                    "train_fvu": float(fvu.detach()),
                    "train_hinge": float(hinge.detach()),
                    **validation_metrics(sae, states, val_tokens, val_pairs, cfg.margin),
                }
            )
            log(history[-1])
    return {"config": asdict(cfg), "before": before, "after": history[-1], "history": history}
