"""Context-aware binding: a small bidirectional GRU (or transformer) over a file's sequence of line features.

The model under the probe is causal, so line i's states know nothing of the lines after it; a bug is
often only visible against what follows (a bound used later, a value returned below). After LLMAO
(Yang et al., ICSE 2024: frozen LLM states + a few trained bidirectional layers locate buggy lines
without tests), this probe reads every candidate line of a window in order and scores each in the
light of the others. Inputs are the same pooled line features as ``probe.RiskProbe`` (SAE latents).

    standardise -> Linear(F, h) -> GELU -> BiGRU(h) -> Linear([local, context] -> 1) -> Platt scaling

``arch="transformer"`` puts LLMAO's own context layers in the GRU's place: a few pre-norm
self-attention layers over the window's lines (every line attends to every other; line order enters
as a sinusoidal position added to the projected features).

Trained with class-balanced BCE, a listwise softmax over each buggy file's lines, or both, and
optionally a pair term: given a bug's window and its fixed version's, the buggy lines' mean logit is
pushed above the mean logit of the lines that replaced them (logistic on the difference). The line
losses teach where fixes land; the pair term, what tells the bug from its own fix. Early
stopping keeps the epoch with the best validation top-1 (ties by AUROC). With ``members`` > 1 the
probe is several such GRUs, each seeded and early-stopped on its own, whose logits are averaged before
the one Platt scaling: on a few thousand labeled functions one GRU's ranking moves by ±0.015 top-1
with its seed alone, and the mean of several is steadier.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
from torch import Tensor, nn

from risk_core.errors import UsageError

LOSSES = ("bce", "listwise", "both")
ARCHS = ("gru", "transformer")


@dataclass
class ContextProbeConfig:
    arch: Literal["gru", "transformer"] = "gru"
    """What reads the window's lines: a bidirectional GRU, or bidirectional self-attention layers."""
    hidden: int = 64
    """Width of the projection and of the context state (the GRU's is split over the two directions)."""
    layers: int = 2
    """Self-attention layers (arch transformer)."""
    heads: int = 4
    """Attention heads per layer (arch transformer; they split hidden)."""
    dropout: float = 0.2
    """Dropout on the projected line features while training."""
    loss: Literal["bce", "listwise", "both"] = "both"
    """bce (per line, class-balanced) | listwise (softmax over a buggy file's lines) | both (summed)."""
    listwise_weight: float = 1.0
    """With loss both: the listwise term's weight against the BCE term's 1."""
    pair_weight: float = 0.0
    """Weight of the pair term (given pairs): a bug's labeled lines scored above the lines that fixed them."""
    epochs: int = 40
    """Passes over the training files (the best validation epoch is kept)."""
    lr: float = 2e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    batch_files: int = 32
    """Files per optimisation step."""
    seed: int = 0
    """Seeds initialisation and file order (member m uses seed + m)."""
    members: int = 1
    """GRUs trained independently (seeds seed, seed+1, ...) whose logits are averaged."""
    n_features: int = 0
    """Input width (set from the data)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r} ({' | '.join(LOSSES)})")
        if self.arch not in ARCHS:
            raise UsageError(f"unknown arch {self.arch!r} ({' | '.join(ARCHS)})")
        if self.hidden < 2 or self.hidden % 2:
            raise UsageError("hidden must be an even number >= 2")
        if self.layers < 1 or self.heads < 1 or self.hidden % self.heads:
            raise UsageError(f"layers and heads must be >= 1, heads a divisor of hidden ({self.layers}, {self.heads})")
        if self.members < 1:
            raise UsageError(f"members must be >= 1 (got {self.members})")
        if self.listwise_weight <= 0:
            raise UsageError(f"listwise_weight must be > 0 (got {self.listwise_weight})")
        if self.pair_weight < 0:
            raise UsageError(f"pair_weight must be >= 0 (got {self.pair_weight})")
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1 (got {self.epochs})")


class _ContextNet(nn.Module):
    """One member: the projection, the context layers (BiGRU or self-attention) and the head over
    [local, context]."""

    def __init__(self, cfg: ContextProbeConfig):
        super().__init__()
        h, self.arch = cfg.hidden, cfg.arch
        self.project = nn.Linear(cfg.n_features, h)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.arch == "gru":
            self.gru = nn.GRU(h, h // 2, batch_first=True, bidirectional=True)
        else:
            layer = nn.TransformerEncoderLayer(
                h, cfg.heads, 2 * h, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.attend = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Linear(2 * h, 1)

    def forward(self, z: Tensor, lengths: Tensor) -> Tensor:
        """z: [B, L, F] standardised, right-padded; returns [B, L] logits."""
        local = self.drop(nn.functional.gelu(self.project(z)))
        if self.arch == "gru":
            packed = nn.utils.rnn.pack_padded_sequence(local, lengths.cpu(), batch_first=True, enforce_sorted=False)
            ctx, _ = self.gru(packed)
            ctx, _ = nn.utils.rnn.pad_packed_sequence(ctx, batch_first=True, total_length=z.shape[1])
        else:
            padding = torch.arange(z.shape[1], device=z.device)[None] >= lengths.to(z.device)[:, None]
            ctx = self.attend(local + _positions(z.shape[1], local.shape[-1], z.device), src_key_padding_mask=padding)
        return self.head(torch.cat([local, ctx], dim=-1)).squeeze(-1)


def _positions(n: int, width: int, device: torch.device) -> Tensor:
    """Sinusoidal encoding of line order [n, width] (the transformer's only view of it)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device) * (-math.log(10000.0) / width))
    out = torch.zeros(n, width, device=device)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class ContextProbe(nn.Module):
    """Scores every line of a file from all of the file's line features (see module doc)."""

    sequence = True
    """risk() reads a whole window's lines in order (the scorer passes all of them)."""
    mean: Tensor
    std: Tensor
    calib_a: Tensor
    calib_b: Tensor

    def __init__(self, cfg: ContextProbeConfig):
        super().__init__()
        if cfg.n_features <= 0:
            raise UsageError("context probe needs n_features > 0")
        self.cfg = cfg
        f = cfg.n_features
        self.register_buffer("mean", torch.zeros(f))
        self.register_buffer("std", torch.ones(f))
        self.register_buffer("calib_a", torch.ones(()))
        self.register_buffer("calib_b", torch.zeros(()))
        self.nets = nn.ModuleList(_ContextNet(cfg) for _ in range(cfg.members))
        self._register_load_state_dict_pre_hook(_one_member_layout)

    def standardize(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std

    def _padded_logits(self, z: Tensor, lengths: Tensor) -> Tensor:
        """z: [B, L, F] standardised, right-padded; returns [B, L] logits (the members' mean)."""
        return torch.stack([net(z, lengths) for net in self.nets]).mean(0)

    def logits(self, x: Tensor) -> Tensor:
        """Uncalibrated logits [L] for one file's line features [L, F] (lines in file order)."""
        if x.shape[0] == 0:
            return torch.zeros(0)
        return self._padded_logits(self.standardize(x).unsqueeze(0), torch.tensor([x.shape[0]]))[0]

    def risk(self, x: Tensor) -> Tensor:
        """Calibrated probability per line [L] for one file's line features [L, F]."""
        return self._calibrated(self.logits(x))

    def risk_of_files(self, xs: list[Tensor]) -> list[Tensor]:
        """``risk`` of many files at once (padded batches; the same values as one file at a time)."""
        return [self._calibrated(z) for z in file_logits(self, xs)]

    def _calibrated(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(self.calib_a * logits + self.calib_b)

    def contributions(self, x: Tensor, rows: list[int] | None = None) -> Tensor:
        """Per-feature share of the logits of lines ``rows`` (default all) [len(rows), F]: gradient x
        input on each line's own standardised features (first order; what the other lines add through
        the context is in the gradient, not in these shares)."""
        z = self.standardize(x).detach()
        wanted = torch.tensor(list(range(z.shape[0])) if rows is None else rows, dtype=torch.long)
        out = [z.new_zeros((0, z.shape[1]))]
        # One copy of the window per wanted line, in one batch: the sum of each copy's own line's
        # logit has, in copy k, the gradient of line k's logit alone (copies do not interact), so one
        # backward replaces one per line.
        for part in torch.split(wanted, 64) if len(wanted) else ():
            with torch.enable_grad():
                zb = z.unsqueeze(0).repeat(len(part), 1, 1).requires_grad_(True)
                lengths = torch.full((len(part),), z.shape[0])
                logits = self._padded_logits(zb, lengths)
                picked = logits[torch.arange(len(part)), part].sum()
                (grad,) = torch.autograd.grad(picked, zb)
            out.append((grad[torch.arange(len(part)), part] * z[part]).detach())
        return torch.cat(out)

    def feature_weights(self) -> Tensor:
        """Importance of each input feature [F]: the L2 norm of its projection column (members' mean)."""
        return torch.stack([cast(_ContextNet, net).project.weight.detach().norm(dim=0) for net in self.nets]).mean(0)

    def save(self, path: str | Path) -> None:
        from risk_core.probe import save_probe_dir

        save_probe_dir(self, {"kind": "context", **asdict(self.cfg)}, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> ContextProbe:
        from risk_core.probe import load_probe_dir

        return load_probe_dir(path, ContextProbeConfig, cls, device, "context probe")


def _one_member_layout(state: dict, prefix: str, *args) -> None:
    """Probes saved before members existed hold one GRU at the top level (``project.weight``…): read
    them as member 0."""
    for name in ("project", "gru", "head"):
        for key in [k for k in state if k.startswith(f"{prefix}{name}.")]:
            state[f"{prefix}nets.0.{key[len(prefix) :]}"] = state.pop(key)


def _batch(files: list[tuple[Tensor, Tensor]], idx: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Right-padded batch of files ``idx``, built where the files are; ``lengths`` stays on the CPU (the
    packed GRU reads it there)."""
    lengths = torch.tensor([files[i][0].shape[0] for i in idx])
    x = nn.utils.rnn.pad_sequence([files[i][0] for i in idx], batch_first=True)
    y = nn.utils.rnn.pad_sequence([files[i][1] for i in idx], batch_first=True)
    mask = torch.arange(x.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]
    return x, y, mask, lengths


def _loss(
    logits: Tensor, y: Tensor, mask: Tensor, pos_weight: float, kind: str, listwise_weight: float = 1.0
) -> Tensor:
    total = logits.new_zeros(())
    if kind in ("bce", "both"):
        w = torch.where(y > 0, pos_weight, 1.0) * mask
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        total = total + (bce * w).sum() / w.sum()
    if kind in ("listwise", "both"):
        has_bug = (y * mask).sum(1) > 0
        if has_bug.any():
            lg = logits.masked_fill(~mask, -1e9)[has_bug]
            pos = lg.masked_fill(y[has_bug] <= 0, -1e9)
            listwise = (torch.logsumexp(lg, 1) - torch.logsumexp(pos, 1)).mean()
            total = total + (listwise_weight if kind == "both" else 1.0) * listwise
    return total


def file_logits(probe: ContextProbe, xs: list[Tensor], batch: int = 64) -> list[Tensor]:
    """Uncalibrated logits of each file's lines ``xs[i]`` [L_i, F], ``batch`` files to a padded pass:
    the packed GRU gives a file the logits it gets alone, at a fraction of the per-file overhead."""
    out: list[Tensor] = [torch.zeros(0) for _ in xs]
    nonempty = [i for i, x in enumerate(xs) if x.shape[0] > 0]
    device = probe.mean.device  # the files stay where they are; a batch goes to the probe's device
    with torch.no_grad():
        for b in range(0, len(nonempty), batch):
            idx = nonempty[b : b + batch]
            lengths = torch.tensor([xs[i].shape[0] for i in idx])
            padded = nn.utils.rnn.pad_sequence([probe.standardize(xs[i].to(device)) for i in idx], batch_first=True)
            logits = probe._padded_logits(padded, lengths).cpu()
            for r, i in enumerate(idx):
                out[i] = logits[r, : int(lengths[r])]
    return out


def _top1_auroc(probe: ContextProbe, files: list[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    from risk_core.evaluate import auroc

    hits = n = 0
    scores, labels = [], []
    for (_, y), s in zip(files, file_logits(probe, [x for x, _ in files])):
        scores.append(s.numpy())
        labels.append(y.numpy())
        if y.sum() > 0:
            n += 1
            hits += bool(y[int(s.argmax())] > 0)
    a = auroc(np.concatenate(scores), np.concatenate(labels)) if scores else None
    return (hits / n if n else 0.0), (a or 0.0)


@dataclass(frozen=True)
class LinePair:
    """A bug and its own fix among the training files: the buggy lines of file ``bug_file`` and the lines
    that replaced them in file ``fix_file`` (positions in each file's line list)."""

    bug_file: int
    bug_lines: Tensor
    fix_file: int
    fix_lines: Tensor


def train_context_probe(
    files: list[tuple[Tensor, Tensor]],
    cfg: ContextProbeConfig,
    val_files: list[tuple[Tensor, Tensor]],
    log=None,
    device: str | torch.device = "cpu",
    pairs: list[LinePair] | None = None,
) -> ContextProbe:
    """Train on files given as (line features [L, F], 0/1 labels [L]); early-stop and Platt-calibrate
    on ``val_files`` (split them by repository: lines and files of one project are correlated). The
    training files are copied to ``device`` once (a batch's copy every step would cost a GPU more than
    its step); the validation files stay where they are; the probe comes back on the CPU. ``pairs``
    (indices into ``files``) feed the pair term when ``cfg.pair_weight`` > 0."""
    pairs = _checked_pairs(files, pairs or [], cfg.pair_weight, device)
    kept = [i for i, (x, _) in enumerate(files) if x.shape[0] > 0]
    renumber = {old: new for new, old in enumerate(kept)}
    pairs = [LinePair(renumber[p.bug_file], p.bug_lines, renumber[p.fix_file], p.fix_lines) for p in pairs]
    files = [(files[i][0].float().to(device), files[i][1].float().to(device)) for i in kept]
    val_files = [(x.float(), y.float()) for x, y in val_files if x.shape[0] > 0]
    if not files or not val_files:
        raise UsageError("context probe training needs training and validation files")
    cfg = ContextProbeConfig(**{**asdict(cfg), "n_features": files[0][0].shape[1]})
    probe = ContextProbe(cfg)
    allx = torch.cat([x for x, _ in files])
    ally = torch.cat([y for _, y in files])
    probe.mean.copy_(allx.mean(0).cpu())
    std = allx.std(0).cpu()
    probe.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
    n_pos = float(ally.sum())
    pos_weight = (ally.numel() - n_pos) / max(n_pos, 1.0)
    del allx
    for m in range(cfg.members):
        torch.manual_seed(cfg.seed + m)  # seeds the member's initialisation, then its dropout
        one = ContextProbe(ContextProbeConfig(**{**asdict(cfg), "members": 1, "seed": cfg.seed + m}))
        one.mean.copy_(probe.mean)
        one.std.copy_(probe.std)
        one.to(device)
        top1, auc = _train_member(one, files, val_files, pos_weight, log if cfg.members == 1 else None, pairs)
        probe.nets[m] = one.nets[0]
        if log and cfg.members > 1:
            log(f"member {m + 1}/{cfg.members} (seed {cfg.seed + m}): val top-1 {top1:.3f} AUROC {auc:.3f}")
    probe.to(device).eval()
    _calibrate(probe, val_files)
    return probe.cpu()


def _checked_pairs(files, pairs: list[LinePair], weight: float, device) -> list[LinePair]:
    """``pairs`` checked against ``files`` (a pair term needs pairs, each naming lines its files hold), their
    line positions on ``device``; none when the term's weight is 0."""
    if weight == 0:
        return []
    if not pairs:
        raise UsageError(f"pair_weight {weight:g} needs bug / fix pairs among the training files")
    out = []
    for p in pairs:
        for f, lines in ((p.bug_file, p.bug_lines), (p.fix_file, p.fix_lines)):
            n = files[f][0].shape[0] if 0 <= f < len(files) else 0
            if not len(lines) or int(lines.min()) < 0 or int(lines.max()) >= n:
                raise UsageError(f"a bug / fix pair names line(s) {lines.tolist()} of file {f}, which has {n}")
        out.append(LinePair(p.bug_file, p.bug_lines.long().to(device), p.fix_file, p.fix_lines.long().to(device)))
    return out


def _pair_loss(probe: ContextProbe, files, batch: list[LinePair]) -> Tensor:
    """Logistic loss on (mean logit of the buggy lines) - (mean logit of the lines that fixed them), each
    side scored in its own window."""
    x, _, _, lengths = _batch(files, [p.bug_file for p in batch] + [p.fix_file for p in batch])
    logits = probe._padded_logits(probe.standardize(x), lengths)
    n = len(batch)
    bug = torch.stack([logits[k, p.bug_lines].mean() for k, p in enumerate(batch)])
    fix = torch.stack([logits[n + k, p.fix_lines].mean() for k, p in enumerate(batch)])
    return nn.functional.softplus(fix - bug).mean()


def _train_member(
    probe: ContextProbe, files, val_files, pos_weight: float, log, pairs: list[LinePair]
) -> tuple[float, float]:
    """The training loop of a one-member probe, in place: the epoch with the best validation
    (top-1, AUROC) is kept; returns that validation (top-1, AUROC). Each step also takes the next
    batch of ``pairs`` (reshuffled every epoch, cycled) for the pair term."""
    cfg = probe.cfg
    gen = torch.Generator().manual_seed(cfg.seed)  # the file order
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_key = copy.deepcopy(probe.state_dict()), (-1.0, -1.0)
    for epoch in range(cfg.epochs):
        probe.train()
        order = torch.randperm(len(files), generator=gen).tolist()
        pair_order = torch.randperm(len(pairs), generator=gen).tolist() if pairs else []
        for b in range(0, len(order), cfg.batch_files):
            x, y, mask, lengths = _batch(files, order[b : b + cfg.batch_files])
            logits = probe._padded_logits(probe.standardize(x), lengths)
            loss = _loss(logits, y, mask, pos_weight, cfg.loss, cfg.listwise_weight)
            if pair_order:
                start = b % len(pair_order)
                picked = [pairs[i] for i in pair_order[start : start + cfg.batch_files]]
                loss = loss + cfg.pair_weight * _pair_loss(probe, files, picked)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(probe.parameters(), 1.0)
            opt.step()
        probe.eval()
        key = _top1_auroc(probe, val_files)
        if log:
            log(f"epoch {epoch + 1}: val top-1 {key[0]:.3f} AUROC {key[1]:.3f}")
        if key > best_key:
            best_key, best = key, copy.deepcopy(probe.state_dict())
    probe.load_state_dict(best)
    probe.eval()
    return best_key


def _calibrate(probe: ContextProbe, val_files: list[tuple[Tensor, Tensor]]) -> None:
    from risk_core.probe import _fit_platt

    logits = torch.cat(file_logits(probe, [x for x, _ in val_files]))
    labels = torch.cat([y for _, y in val_files])
    a, b = _fit_platt(logits, labels)
    if math.isfinite(a) and math.isfinite(b):
        probe.calib_a.fill_(a)
        probe.calib_b.fill_(b)
