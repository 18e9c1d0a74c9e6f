"""Stage 2 risk probe: line features (SAE latents pooled per line, optionally surprise) -> calibrated risk.

Design choices, and why:
- Features are standardised with buffers saved in the probe, so the scorer feeds raw pooled features.
- Default is a sparse logistic probe (L1, solved by FISTA: convex, deterministic, exact zeros): a few
  latents per line explain the score, which is what the review comments show.
- Training is class-balanced (buggy lines are ~1 in 20), so the raw logit is not a probability; a Platt
  scaling (risk = sigmoid(a * logit + b)) fit on a held-out split makes ``risk`` calibrated.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from risk_core.choices import PROBE_KINDS, ProbeKind, check_choice
from risk_core.errors import UsageError


@dataclass
class ProbeConfig:
    kind: ProbeKind = "logistic"
    """logistic (sparse linear) | mlp (one hidden layer)."""
    l1: float = 1e-3
    """L1 strength on the input weights (proximal step for logistic, penalty for mlp)."""
    hidden: int = 64
    """Hidden width of the mlp probe."""
    epochs: int = 200
    """logistic: FISTA iterations (full-batch); mlp: passes over the training lines."""
    lr: float = 1e-2
    """Adam learning rate (mlp; the logistic step size comes from the data's Lipschitz bound)."""
    seed: int = 0
    """Seed for initialisation, batching and the internal validation split."""
    n_features: int = 0
    """Input width (set by train_probe from the data)."""
    batch_size: int = 4096
    """Lines per optimisation step (full batch when the data is smaller)."""
    weight_decay: float = 1e-4
    """L2 on the mlp weights (ignored by logistic)."""

    def __post_init__(self) -> None:
        check_choice("probe kind", self.kind, PROBE_KINDS)


_EPS = 1e-6


class RiskProbe(nn.Module):
    """Standardise -> logistic or MLP -> Platt scaling. ``contributions`` explain the (uncalibrated) logit."""

    sequence = False
    """Each line is scored from its own features alone."""
    # Buffers (registered in __init__), declared so their type is Tensor rather than Module's getattr.
    mean: Tensor
    std: Tensor
    calib_a: Tensor
    calib_b: Tensor
    net: nn.Linear | nn.Sequential

    def __init__(self, cfg: ProbeConfig):
        super().__init__()
        if cfg.n_features <= 0:
            raise UsageError("probe needs n_features > 0")
        self.cfg = cfg
        f = cfg.n_features
        self.register_buffer("mean", torch.zeros(f))
        self.register_buffer("std", torch.ones(f))
        # Platt scaling: risk = sigmoid(calib_a * logit + calib_b); identity until calibrated.
        self.register_buffer("calib_a", torch.ones(()))
        self.register_buffer("calib_b", torch.zeros(()))
        if cfg.kind == "logistic":
            self.net = nn.Linear(f, 1)
        else:
            self.net = nn.Sequential(nn.Linear(f, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 1))

    @property
    def first_layer(self) -> nn.Linear:
        if isinstance(self.net, nn.Linear):
            return self.net
        first = self.net[0]
        if not isinstance(first, nn.Linear):  # __init__ builds Linear, GELU, Linear
            raise TypeError(f"probe network starts with {type(first).__name__}, not Linear")
        return first

    def standardize(self, features: Tensor) -> Tensor:
        return (features.float() - self.mean) / self.std

    def logits(self, features: Tensor) -> Tensor:
        """Uncalibrated logit per row [N] (higher = riskier)."""
        return self.net(self.standardize(features)).squeeze(-1)

    def risk(self, features: Tensor) -> Tensor:
        """Calibrated probability that the line is buggy [N] in [0, 1]."""
        return torch.sigmoid(self.calib_a * self.logits(features) + self.calib_b)

    def contributions(self, features: Tensor) -> Tensor:
        """Per-feature share of the logit [N, F].

        logistic: w_i * z_i, so that ``contributions(x).sum(1) + bias == logits(x)`` exactly.
        mlp: gradient x input on the standardised features (a first-order share).
        """
        z = self.standardize(features)
        if self.cfg.kind == "logistic":
            return (z * self.first_layer.weight[0]).detach()
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            out = self.net(z).squeeze(-1)
            (grad,) = torch.autograd.grad(out.sum(), z)
        return (grad * z).detach()

    def feature_weights(self) -> Tensor:
        """Importance of each input feature [F]: |w| (logistic) or the L2 norm of its first-layer column."""
        w = self.first_layer.weight.detach()
        return w[0].abs() if self.cfg.kind == "logistic" else w.norm(dim=0)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        save_probe_dir(self, asdict(self.cfg), path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> RiskProbe:
        return load_probe_dir(path, ProbeConfig, cls, device, "probe")


def save_probe_dir(module: nn.Module, cfg_doc: dict, path: str | Path) -> None:
    """A probe directory: cfg.json (``cfg_doc``) + probe.safetensors (the module's state)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg_doc, indent=2) + "\n")
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path / "probe.safetensors")
    )


def load_probe_dir(path: str | Path, cfg_cls, make, device: str | torch.device, what: str):
    """``make(cfg_cls(**cfg.json))`` with probe.safetensors loaded; any damage is one UsageError line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        raw = json.loads((path / "cfg.json").read_text())
        known = {f.name for f in fields(cfg_cls)}
        cfg = cfg_cls(**{k: v for k, v in raw.items() if k in known})
        state = load_file(str(path / "probe.safetensors"), device=str(device))
    except (OSError, ValueError, TypeError, SafetensorError) as err:
        raise UsageError(f"{path}: not a {what} directory ({err})") from None
    probe = make(cfg)
    try:
        probe.load_state_dict(state)
    except RuntimeError as err:
        raise UsageError(f"{path}: probe weights do not match its cfg.json ({str(err).splitlines()[0]})") from None
    return probe.to(device).eval()


def _fit_platt(logits: Tensor, labels: Tensor, iters: int = 200) -> tuple[float, float]:
    """Fit risk = sigmoid(a * logit + b) by maximum likelihood (unweighted: calibration must reflect the
    real base rate, not the balanced one used for training). Uses LBFGS on two parameters."""
    a = torch.ones((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")
    x, y = logits.detach().double(), labels.detach().double()

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(a.double() * x + b.double(), y)
        loss.backward()
        return loss

    opt.step(closure)
    av, bv = float(a.detach()), float(b.detach())
    if not (math.isfinite(av) and math.isfinite(bv)) or av <= 0:
        # A non-positive slope would invert the ranking; keep the ranking and fit only the offset.
        av, bv = 1.0, math.log(max(float(y.mean()), _EPS) / max(1 - float(y.mean()), _EPS))
    return av, bv


def _chunked_grad(lin: nn.Linear, z: Tensor, y: Tensor, wts: Tensor, bs: int) -> tuple[Tensor, Tensor, float]:
    """Gradient of the weighted mean BCE of a linear model, accumulated over row chunks (big data)."""
    gw = torch.zeros_like(lin.weight)
    gb = torch.zeros_like(lin.bias)
    loss = 0.0
    n = z.shape[0]
    for a in range(0, n, bs):
        zc = z[a : a + bs]
        out = zc @ lin.weight[0] + lin.bias[0]
        p = torch.sigmoid(out)
        r = wts[a : a + bs] * (p - y[a : a + bs]) / n
        gw[0] += zc.T @ r
        gb[0] += r.sum()
        loss += (
            float(
                (
                    wts[a : a + bs]
                    * nn.functional.binary_cross_entropy_with_logits(out, y[a : a + bs], reduction="none")
                ).sum()
            )
            / n
        )
    return gw, gb, loss


@torch.no_grad()
def _fit_logistic_fista(lin: nn.Linear, z: Tensor, y: Tensor, wts: Tensor, cfg: ProbeConfig) -> None:
    """L1-regularised logistic regression by FISTA (accelerated proximal gradient): a convex problem
    solved deterministically, with exact zeros from the soft-threshold. ``cfg.epochs`` iterations;
    the step is 1/L with L bounded from the largest singular value of the data (power iteration)."""
    n, f = z.shape
    bs = max(1, cfg.batch_size)
    v = torch.randn(f, generator=torch.Generator().manual_seed(cfg.seed)).to(z.device)
    for _ in range(30):
        u = torch.cat([z[a : a + bs] @ v for a in range(0, n, bs)])
        v = sum((z[a : a + bs].T @ u[a : a + bs] for a in range(0, n, bs)), torch.zeros_like(v))
        v = v / v.norm().clamp_min(1e-12)
    u = torch.cat([z[a : a + bs] @ v for a in range(0, n, bs)])
    sigma2 = float(u.pow(2).sum())  # ~ largest eigenvalue of z^T z
    lipschitz = 0.25 * float(wts.max()) * (sigma2 + n) / n  # + n for the bias column
    step = 1.0 / max(lipschitz, 1e-8)
    lin.weight.zero_()
    lin.bias.fill_(float(torch.log(y.mean() / (1 - y.mean()))))
    w_prev, b_prev = lin.weight.clone(), lin.bias.clone()
    t = 1.0
    yw, yb = lin.weight.clone(), lin.bias.clone()
    for _ in range(cfg.epochs):
        lin.weight.copy_(yw)
        lin.bias.copy_(yb)
        gw, gb, _ = _chunked_grad(lin, z, y, wts, bs)
        w_new = yw - step * gw
        w_new = torch.sign(w_new) * torch.clamp(w_new.abs() - step * cfg.l1, min=0.0)
        b_new = yb - step * gb
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        yw = w_new + (t - 1) / t_new * (w_new - w_prev)
        yb = b_new + (t - 1) / t_new * (b_new - b_prev)
        w_prev, b_prev, t = w_new, b_new, t_new
    lin.weight.copy_(w_prev)
    lin.bias.copy_(b_prev)


def _fit_mlp(
    net: nn.Module, first: nn.Linear, z: Tensor, y: Tensor, wts: Tensor, cfg: ProbeConfig, gen: torch.Generator
) -> None:
    """Adam on minibatches; L1 on the first layer's input columns (a soft feature selection)."""
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = z.shape[0]
    bs = min(cfg.batch_size, n)
    w1 = first.weight
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            out = net(z[idx]).squeeze(-1)
            loss = (wts[idx] * nn.functional.binary_cross_entropy_with_logits(out, y[idx], reduction="none")).mean()
            if cfg.l1 > 0:
                loss = loss + cfg.l1 * w1.abs().sum(0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def class_balanced_weights(labels: Tensor) -> Tensor:
    """Per-line loss weights for 0/1 ``labels``: buggy lines weigh n_clean / n_buggy, normalised to mean 1."""
    n_pos = float(labels.sum())
    n_neg = float(labels.numel() - n_pos)
    weights = torch.where(labels > 0, n_neg / max(n_pos, 1.0), 1.0)
    return weights / weights.mean()


def train_probe(
    features: Tensor,
    labels: Tensor,
    cfg: ProbeConfig,
    val_features: Tensor | None = None,
    val_labels: Tensor | None = None,
) -> RiskProbe:
    """Train a probe on line features [N, F] with 0/1 labels [N]; Platt-calibrate on the validation split.

    Without a validation split, 20% of the lines (seeded) are held out for calibration. Callers that know
    program boundaries should pass a split by program instead (lines of one program are correlated).
    """
    features = features.float()
    labels = labels.float().reshape(-1)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise UsageError(f"probe data shapes disagree: features {tuple(features.shape)}, labels {tuple(labels.shape)}")
    if features.shape[0] < 2 or labels.min() == labels.max():
        raise UsageError("probe training needs both buggy and clean lines")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if val_features is None or val_labels is None:
        perm = torch.randperm(features.shape[0], generator=gen)
        n_val = max(1, features.shape[0] // 5)
        vi, ti = perm[:n_val], perm[n_val:]
        val_features, val_labels = features[vi], labels[vi]
        features, labels = features[ti], labels[ti]
    val_features = val_features.float()
    val_labels = val_labels.float().reshape(-1)

    cfg = ProbeConfig(**{**asdict(cfg), "n_features": features.shape[1]})
    dev = features.device  # train where the features are (a GPU for the real data set)
    labels, val_features, val_labels = labels.to(dev), val_features.to(dev), val_labels.to(dev)
    probe = RiskProbe(cfg).to(dev)
    probe.mean.copy_(features.mean(0))
    # Constant features (e.g. latents never active in these lines) keep std 1 so they stay 0.
    std = features.std(0)
    probe.std.copy_(torch.where(std > _EPS, std, torch.ones_like(std)))

    weights = class_balanced_weights(labels).to(dev)
    z_all = probe.standardize(features)
    if cfg.kind == "logistic":
        _fit_logistic_fista(probe.first_layer, z_all, labels, weights, cfg)
    else:
        _fit_mlp(probe.net, probe.first_layer, z_all, labels, weights, cfg, gen)
    probe.eval()
    with torch.no_grad():
        val_logits = probe.logits(val_features)
    if val_labels.min() != val_labels.max():
        a, b = _fit_platt(val_logits.cpu(), val_labels.cpu())
    else:
        a, b = 1.0, 0.0
    probe.calib_a.fill_(a)
    probe.calib_b.fill_(b)
    return probe


def load_probe(path: str | Path, device: str | torch.device = "cpu"):
    """A bundle's probe directory, whichever kind its cfg.json names (logistic/mlp, or context)."""
    path = Path(path)
    try:
        kind = json.loads((path / "cfg.json").read_text()).get("kind")
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a probe directory ({err})") from None
    if kind == "context":
        from risk_core.context_probe import ContextProbe

        return ContextProbe.load(path, device=device)
    return RiskProbe.load(path, device=device)
