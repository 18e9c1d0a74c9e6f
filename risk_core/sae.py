"""A TopK sparse autoencoder over one layer's per-token hidden states, after EleutherAI `sparsify`.

Layout and names follow sparsify (``encoder``, ``W_dec [num_latents, d_in]``, ``b_dec``, ``cfg.json`` +
``sae.safetensors``) so a sparsify/SAELens user recognises the files. Two differences, both on purpose:

* ``input_scale`` (a buffer, fitted from data) multiplies inputs so that they have unit mean norm. The
  SAE's weights, biases and losses then live in a scale-free space, and the learning rate and AuxK
  normalisation do not depend on the model's activation magnitude. ``decode`` undoes the scaling, so
  callers only ever see the original space.
* ``forward`` accepts the total variance of the *global* batch, so that data-parallel ranks that each
  see a slice of it compute exactly the single-process loss (see ``train_sae``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from risk_core.atomic import atomic_path, write_atomic
from risk_core.choices import SAE_ACTIVATIONS, SaeActivation, check_choice
from risk_core.errors import UsageError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"


@dataclass
class SaeConfig:
    d_in: int = 0
    """Width of the hidden states the SAE reads (the model's d_model); 0 = taken from the data."""
    expansion_factor: int = 16
    """num_latents = d_in * expansion_factor when num_latents is 0."""
    k: int = 32
    """Number of latents kept per token (TopK activation): L0 is at most k."""
    num_latents: int = 0
    """Dictionary size; 0 = d_in * expansion_factor."""
    normalize_decoder: bool = True
    """Keep decoder rows at unit norm, so latent activations measure magnitude along a direction."""
    activation: SaeActivation = "topk"
    """topk: exactly k latents per token. batchtopk (Bussmann et al. 2024): in training the k x N
    largest activations of a batch of N tokens, so a token may use more or fewer than k; in use, every
    latent above a threshold learned in training (at most 4k per token)."""

    def __post_init__(self) -> None:
        check_choice("SAE activation", self.activation, SAE_ACTIVATIONS)


class EncoderOutput(NamedTuple):
    top_acts: Tensor
    """[N, k] activations of the selected latents (ReLU'd, in the scaled space)."""
    top_indices: Tensor
    """[N, k] indices of the selected latents."""
    pre_acts: Tensor
    """[N, num_latents] ReLU'd encoder outputs before TopK (AuxK picks dead latents from these)."""


class ForwardOutput(NamedTuple):
    sae_out: Tensor
    """[N, d_in] reconstruction in the original (unscaled) space."""
    latent_acts: Tensor
    """[N, k] activations of the selected latents."""
    latent_indices: Tensor
    """[N, k] indices of the selected latents."""
    fvu: Tensor
    """Fraction of variance unexplained: sum of squared errors / total variance of the batch."""
    auxk_loss: Tensor
    """AuxK loss: how well the top dead latents predict the residual error (0 when none is dead)."""


class SparseCoder(nn.Module):
    input_scale: Tensor
    """Buffer (scalar): inputs are multiplied by it so that they have unit mean norm."""
    threshold: Tensor
    """Buffer (scalar, batchtopk only): a latent is active in use when its pre-activation exceeds it."""

    def __init__(
        self, d_in: int, cfg: SaeConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        if d_in <= 0:
            raise UsageError(f"SAE input width must be positive, got {d_in}")
        if cfg.k <= 0:
            raise UsageError(f"SAE k must be positive, got {cfg.k}")
        self.cfg = SaeConfig(**{**asdict(cfg), "d_in": d_in})
        self.d_in = d_in
        self.num_latents = cfg.num_latents or d_in * cfg.expansion_factor
        if cfg.k > self.num_latents:
            raise UsageError(f"SAE k={cfg.k} exceeds num_latents={self.num_latents}")
        self.cfg.num_latents = self.num_latents

        self.encoder = nn.Linear(d_in, self.num_latents, device=device, dtype=dtype)
        self.encoder.bias.data.zero_()
        # Tied initialisation (decoder = encoder transposed, unit rows) as in sparsify: starts near an
        # orthogonal-ish projection, so the first steps are not spent undoing a random decoder.
        self.W_dec = nn.Parameter(self.encoder.weight.data.clone())
        if cfg.normalize_decoder:
            self.set_decoder_norm_to_unit_norm()
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device, dtype=dtype))
        self.register_buffer("input_scale", torch.ones((), device=device, dtype=dtype))
        # Only a batchtopk SAE has a threshold, so the files of topk SAEs keep their tensors.
        if self.cfg.activation == "batchtopk":
            self.register_buffer("threshold", torch.zeros((), device=device, dtype=dtype))
        # The width of top_acts: k for topk; for batchtopk the most latents one token may keep.
        self.max_active = min(self.num_latents, 4 * cfg.k) if cfg.activation == "batchtopk" else cfg.k

    # -- data-dependent initialisation ---------------------------------------------------------

    @torch.no_grad()
    def fit_to_data(self, x: Tensor) -> None:
        """Set ``input_scale`` so ``x`` has unit mean norm, and ``b_dec`` to its (scaled) geometric
        median, as sparsify does: the bias then starts at the centre of the data, robust to outliers."""
        x = x.to(self.W_dec.dtype)
        mean_norm = x.norm(dim=-1).mean()
        self.input_scale.fill_(1.0 / float(mean_norm.clamp_min(1e-8)))
        self.b_dec.data.copy_(geometric_median(x * self.input_scale))

    # -- core ------------------------------------------------------------------------------------

    def pre_acts(self, x: Tensor) -> Tensor:
        sae_in = x.to(self.W_dec.dtype) * self.input_scale - self.b_dec
        return F.relu(self.encoder(sae_in))

    def encode(self, x: Tensor, *, batch_select: bool = False) -> EncoderOutput:
        """The active latents of each token of ``x`` [N, d_in]. ``batch_select`` (training only) makes a
        batchtopk SAE choose over the whole batch and move its threshold toward the batch's; otherwise
        it keeps the latents above its threshold. A topk SAE ignores it. Inactive slots of ``top_acts``
        hold zeros."""
        pre = self.pre_acts(x)
        if self.cfg.activation == "topk":
            top_acts, top_indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
            return EncoderOutput(top_acts, top_indices, pre)
        if batch_select:
            vals, flat = pre.flatten().topk(min(self.cfg.k * pre.shape[0], pre.numel()), sorted=False)
            kept = torch.zeros_like(pre).flatten().scatter(0, flat, vals).view_as(pre)
            self._track_threshold(vals.detach())
        else:
            kept = pre * (pre > self.threshold)
        top_acts, top_indices = kept.topk(self.max_active, dim=-1, sorted=False)
        return EncoderOutput(top_acts, top_indices, pre)

    @torch.no_grad()
    def _track_threshold(self, selected: Tensor) -> None:
        # The inference threshold is a running mean of the smallest activation a batch kept (Bussmann
        # et al.): in use, a latent is then active about as often as batch selection made it.
        # Tensor ops only: a step on a GPU never waits for the device to read the threshold back.
        if selected.numel() == 0:
            return
        smallest = torch.where(selected > 0, selected, torch.inf).min().to(self.threshold.dtype)
        updated = torch.where(self.threshold == 0, smallest, torch.lerp(self.threshold, smallest, 0.01))
        # A batch that kept no positive activation (smallest = inf) leaves the threshold as it was.
        self.threshold.copy_(torch.where(torch.isfinite(smallest), updated, self.threshold))

    def encode_dense(self, x: Tensor) -> Tensor:
        """[N, num_latents] with the top-k activations in place and zeros elsewhere."""
        out = self.encode(x)
        dense = torch.zeros(out.pre_acts.shape, dtype=out.top_acts.dtype, device=out.top_acts.device)
        return dense.scatter_(-1, out.top_indices, out.top_acts)

    def _decode_scaled(self, acts: Tensor, indices: Tensor) -> Tensor:
        # embedding_bag sums the selected decoder rows weighted by their activations without ever
        # materialising an [N, k, d_in] tensor; gradients flow to both W_dec and the activations.
        return F.embedding_bag(indices, self.W_dec, per_sample_weights=acts.to(self.W_dec.dtype), mode="sum")

    def decode(self, top_acts: Tensor, top_indices: Tensor) -> Tensor:
        """[N, d_in] reconstruction in the original (unscaled) space."""
        return (self._decode_scaled(top_acts, top_indices) + self.b_dec) / self.input_scale

    def forward(
        self,
        x: Tensor,
        *,
        dead_mask: Tensor | None = None,
        total_variance: Tensor | None = None,
        batch_select: bool = False,
    ) -> ForwardOutput:
        """Reconstruct ``x`` [N, d_in]. ``dead_mask`` [num_latents] bool enables the AuxK loss.
        ``total_variance`` overrides the batch's own (sum of squared deviations from the mean, in the
        scaled space), for data-parallel ranks that hold a slice of a larger batch. ``batch_select``:
        a training step (see ``encode``)."""
        y = x.to(self.W_dec.dtype) * self.input_scale  # scaled target
        top_acts, top_indices, pre = self.encode(x, batch_select=batch_select)
        out_scaled = self._decode_scaled(top_acts, top_indices) + self.b_dec
        e = y - out_scaled
        if total_variance is None:
            total_variance = (y - y.mean(0)).pow(2).sum()

        # AuxK (sparsify / Gao et al. 2024): the k_aux most active *dead* latents try to predict the
        # residual error of the live ones; this gives dead latents a gradient and revives them.
        # k_aux = d_in / 2, loss scaled down when fewer latents are dead than k_aux.
        num_dead = int(dead_mask.sum()) if dead_mask is not None else 0
        if dead_mask is not None and num_dead > 0:
            k_aux = self.d_in // 2
            scale = min(num_dead / k_aux, 1.0)
            k_aux = min(k_aux, num_dead)
            auxk_latents = torch.where(dead_mask[None], pre, -torch.inf)
            auxk_acts, auxk_indices = auxk_latents.topk(k_aux, sorted=False)
            # The residual e carries no bias, so its prediction is the bare decoder sum.
            e_hat = self._decode_scaled(auxk_acts.clamp_min(0), auxk_indices)
            auxk_loss = scale * (e_hat - e.detach()).pow(2).sum() / total_variance
        else:
            auxk_loss = out_scaled.new_zeros(())

        fvu = e.pow(2).sum() / total_variance
        return ForwardOutput(out_scaled / self.input_scale, top_acts, top_indices, fvu, auxk_loss)

    # -- decoder constraints ---------------------------------------------------------------------

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        eps = torch.finfo(self.W_dec.dtype).eps
        norm = torch.norm(self.W_dec.data, dim=1, keepdim=True)
        self.W_dec.data /= norm + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out the gradient component along each (unit) decoder row: with renormalisation
        after every step that component would only change the norm, which is then undone anyway."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec.data).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data

    # -- persistence -----------------------------------------------------------------------------

    def save(self, path: str | Path, extra: dict | None = None, dtype: torch.dtype | None = None) -> None:
        """Write ``path/cfg.json`` (SaeConfig fields at top level, as sparsify does, plus ``extra``)
        and ``path/sae.safetensors``, weights cast to ``dtype`` if given (fp16 halves a shipped SAE;
        ``load`` casts back). Each file is written then renamed: never a half-written one."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {name: t.detach().to(dtype or t.dtype).contiguous().cpu() for name, t in self.state_dict().items()}
        doc = {**asdict(self.cfg), **(extra or {})}
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        write_atomic(path / CFG_FILE, json.dumps(doc, indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", expected_d_in: int | None = None
    ) -> SparseCoder:
        """Load a saved SAE. ``expected_d_in`` (the model's d_model) guards against pairing an SAE
        with the wrong model: a mismatch is a UsageError, not a shape error deep in a matmul."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        cfg_path, w_path = path / CFG_FILE, path / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise UsageError(f"{path} is not a saved SAE (needs {CFG_FILE} and {WEIGHTS_FILE})")
        try:
            doc = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read {cfg_path}: {err}") from None
        known = {f.name for f in fields(SaeConfig)}
        cfg = SaeConfig(**{k: v for k, v in doc.items() if k in known})
        if cfg.d_in <= 0:
            raise UsageError(f"{cfg_path} has no valid d_in")
        if expected_d_in is not None and cfg.d_in != expected_d_in:
            raise UsageError(
                f"SAE at {path} was trained on d_in={cfg.d_in} states but the model has d_model={expected_d_in}"
            )
        try:
            state = load_file(str(w_path))
        except (SafetensorError, OSError) as err:
            raise UsageError(f"cannot read SAE weights {w_path}: {err}") from None
        sae = cls(cfg.d_in, cfg, device="cpu")
        try:
            sae.load_state_dict(state)
        except RuntimeError as err:
            raise UsageError(f"SAE weights {w_path} do not match {cfg_path}: {str(err).splitlines()[0]}") from None
        return sae.to(device)


@torch.no_grad()
def geometric_median(x: Tensor, iters: int = 50, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of x."""
    x = x.float()
    guess = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - guess).norm(dim=1).clamp_min(eps)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - guess).norm() < eps * max(1.0, float(guess.norm())):
            guess = new
            break
        guess = new
    return guess


def default_lr(num_latents: int) -> float:
    """sparsify's learning-rate rule: 2e-4 at 2**14 latents, scaled by 1/sqrt(num_latents / 2**14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)
