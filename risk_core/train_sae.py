"""Train a SparseCoder on harvested activation shards: a ``Trainer`` with ``resume``, ``fit`` and ``save``.

Adam with a named learning-rate schedule (``get_lr``: linear warm-up, then constant, sparsify's rule by
default), the TopK reconstruction loss plus AuxK for dead latents, the decoder renormalised after every
step. The data and its batch order come from ``risk_core.shards.ShardData``: which batch comes at which
step is a pure function of (seed, step), so a resumed run sees exactly the data of an uninterrupted one.

Data parallel under torchrun: every rank reads the same global batch and trains on its slice of it
under DDP; the loss is normalised by the *global* batch variance so that the averaged gradient equals
the single-process gradient.

Output directory (the layout sparsify/SAELens users know)::

    cfg.json          SaeConfig fields + training config, model name/sha256, layer, data hashes
    sae.safetensors   encoder.weight, encoder.bias, W_dec, b_dec, input_scale
    metrics.json      final validation metrics, number of training tokens, history
    metrics.jsonl     one line per log/validation event during training
    checkpoints/step_XXXXXXXX/{state.safetensors,state.json}   the last two good checkpoints
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from risk_core import dist
from risk_core.atomic import write_atomic_json
from risk_core.errors import PttrustError, UsageError
from risk_core.sae import SaeConfig, SparseCoder, default_lr
from risk_core.sae_checkpoints import latest_checkpoint, restore_checkpoint, save_checkpoint
from risk_core.sae_metrics import delta_ce, evaluate_sae
from risk_core.shards import ShardData

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "Trainer", "ShardData", "delta_ce", "evaluate_sae", "get_lr", "train"]

SAVE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class TrainConfig:
    batch_size: int = 4096
    """Tokens per optimiser step (global, over all ranks)."""
    lr: float = 0.0
    """Adam learning rate; 0 = sparsify's rule 2e-4 / sqrt(num_latents / 2**14)."""
    lr_warmup_steps: int = 1000
    """Steps of linear warm-up from 0 to lr."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss (sparsify's default)."""
    dead_feature_threshold: int = 10_000_000
    """A latent is dead when it has not fired for this many training tokens."""
    max_tokens: int = 0
    """Stop after this many training tokens; 0 = `epochs` passes over the harvested shards."""
    epochs: int = 1
    """Passes over the harvested shards (when max_tokens is 0)."""
    shards_in_memory: int = 4
    """Shards loaded and shuffled together: the memory bound and the shuffle window."""
    seed: int = 0
    """Seeds the SAE init and the data order."""
    log_every: int = 50
    """Steps between training-loss log lines."""
    val_every: int = 1000
    """Steps between validation passes (and one at the end)."""
    val_tokens: int = 65_536
    """Validation activation tokens used for FVU / L0 / dead fraction."""
    delta_ce: bool = True
    """Measure dCE: the LM loss increase when the SAE reconstruction replaces the layer's output."""
    ce_chunks: int = 8
    """Validation chunks used for dCE."""
    checkpoint_every: int = 1000
    """Steps between checkpoints."""
    init_tokens: int = 16_384
    """Tokens used to fit input_scale and the b_dec geometric median at the start."""
    save_dtype: str = "float32"
    """dtype of the final sae.safetensors: float16 halves a shipped SAE (checkpoints stay float32)."""

    def __post_init__(self) -> None:
        if self.save_dtype not in SAVE_DTYPES:
            raise UsageError(f"save dtype must be one of {', '.join(SAVE_DTYPES)} (got {self.save_dtype!r})")


def get_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """The learning rate of 0-based ``step``: linear warm-up over ``warmup_steps`` steps (the first step
    already takes base_lr / warmup_steps), then constant at ``base_lr`` (sparsify's schedule)."""
    return base_lr * min(1.0, (step + 1) / max(1, warmup_steps))


# How often to log, validate or checkpoint does not change the weights: a resumed run may differ there.
_BOOKKEEPING = {"log_every", "val_every", "val_tokens", "delta_ce", "ce_chunks", "checkpoint_every", "save_dtype"}


def _weights_settings(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a run's settings that must match for a checkpoint to be resumed."""
    if run is None:
        return None
    return {**run, "train": {k: v for k, v in run.get("train", {}).items() if k not in _BOOKKEEPING}}


def _harvest_fp(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc["shards"], sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The trainer


LogFn = Callable[[dict[str, Any]], None]


class Trainer:
    """One SAE training run over the harvest in ``acts_dir``, written to ``out``.

    ``resume()`` picks up the newest good checkpoint in ``out`` (if any), ``fit()`` trains to the end of
    the schedule (checkpointing on the way) and returns the final validation record, ``save()`` writes
    the SAE, its cfg.json and metrics.json. ``train`` below is the three in a row."""

    def __init__(
        self,
        acts_dir: str | Path,
        out: str | Path,
        sae_cfg: SaeConfig,
        cfg: TrainConfig,
        model: str | None = None,
        device: str = "auto",
        log_fn: LogFn | None = None,
        loaded: Any = None,
    ):
        self.info = info = dist.init()
        self.acts_dir, self.out = Path(acts_dir), Path(out)
        if cfg.batch_size % info.world:
            raise UsageError(f"batch size {cfg.batch_size} must be divisible by the number of processes {info.world}")
        self.cfg = cfg
        self.data = ShardData(self.acts_dir, cfg)
        doc = self.data.doc
        self.d_in = int(doc["d_model"])
        if sae_cfg.d_in and sae_cfg.d_in != self.d_in:
            raise UsageError(f"SAE d_in={sae_cfg.d_in} does not match the harvested states' width {self.d_in}")
        self.layer = int(doc["config"]["layer"])
        self.skip_first = int(doc["config"]["skip_first"])
        self.device = torch.device(dist.device(info, device))
        self.model_name = model
        self.loaded = loaded
        self.log_fn = log_fn

        torch.manual_seed(cfg.seed)
        self.sae = SparseCoder(self.d_in, sae_cfg, device=self.device)
        self.lr = cfg.lr or default_lr(self.sae.num_latents)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr)
        self.since_fired = torch.zeros(self.sae.num_latents, dtype=torch.long, device=self.device)
        self.run_fp: dict[str, Any] = {
            "sae": asdict(self.sae.cfg),
            "train": asdict(cfg),
            "harvest_sha256": _harvest_fp(doc),
        }
        self.step = 0
        """Optimiser steps done (a resumed run starts at its checkpoint's)."""
        self.tokens_seen = 0
        self.history: list[dict[str, Any]] = []
        self.final: dict[str, Any] = {}
        self._restored = False
        self._wall_s = 0.0
        self._ce_cache: dict[str, float] = {}

    # -- resume ----------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Restore the newest good checkpoint of ``out``; False when there is none (a fresh start).
        A checkpoint of a run whose weight-changing settings differ is refused."""
        ck = latest_checkpoint(self.out)
        if ck is None:
            return False
        path, meta, tensors = ck
        if _weights_settings(meta.get("run")) != _weights_settings(self.run_fp):
            raise UsageError(f"{self.out} holds a training run with other settings; use another --out or --no-resume")
        self.since_fired = restore_checkpoint(self.sae, self.opt, tensors).to(self.device)
        self.step, self.history, self.tokens_seen = meta["step"], meta["history"], meta["tokens_seen"]
        self._restored = True
        log.info("resuming from %s", path)
        return True

    # -- fit -------------------------------------------------------------------------------------

    def _start_log(self) -> None:
        if not self.info.is_main:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            # The log restarts from what the checkpoint knew: lines a killed run wrote after its last
            # checkpoint would otherwise appear twice.
            (self.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.history))
        except OSError as err:
            raise PttrustError(f"cannot write to {self.out}: {err.strerror}") from None

    def _emit(self, rec: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        self.history.append(rec)
        try:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as err:
            raise PttrustError(f"cannot write {self.out / 'metrics.jsonl'}: {err.strerror}") from None
        if self.log_fn:
            self.log_fn(rec)

    def _dce_inputs(self) -> tuple[Any, Tensor | None]:
        """(model, validation chunks) for dCE, or (None, None) when it is not measured here."""
        if not (self.cfg.delta_ce and self.info.is_main):
            return self.loaded, None
        ce_ids = self.data.val_chunks(self.cfg.ce_chunks)
        if ce_ids is None:
            log.warning("no validation chunks in the harvest: dCE skipped")
            return self.loaded, None
        loaded = self.loaded
        if loaded is None:
            from risk_core.model_loading import load_model

            name = self.model_name or self.data.doc["model"]
            loaded = load_model(name, device=str(self.device))
            if loaded.d_model != self.d_in:
                raise UsageError(f"model {name} has d_model={loaded.d_model}, the harvest {self.d_in}")
        return loaded, ce_ids

    def validate(self, val: Tensor | None, loaded: Any, ce_ids: Tensor | None) -> dict[str, Any]:
        """A validation record at the current step: dead fraction, FVU / L0 on ``val``, dCE on ``ce_ids``."""
        rec: dict[str, Any] = {
            "event": "val",
            "step": self.step,
            "tokens": self.tokens_seen,
            "dead_fraction": float((self.since_fired >= self.cfg.dead_feature_threshold).float().mean()),
        }
        if val is not None:
            rec.update(evaluate_sae(self.sae, val))
        if ce_ids is not None and loaded is not None:
            rec.update(delta_ce(loaded, self.sae, self.layer, ce_ids, self.skip_first, cache=self._ce_cache))
        return rec

    def fit(self) -> dict[str, Any]:
        """Train from the current step to the end of the schedule; returns the final validation record."""
        cfg, info, sae, dev = self.cfg, self.info, self.sae, self.device
        if not self._restored:
            sae.fit_to_data(self.data.init_sample().to(dev))
        self._start_log()
        ddp: torch.nn.Module = sae
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(sae, device_ids=[dev.index] if dev.type == "cuda" else None)
        val = self.data.val_acts()
        loaded, ce_ids = self._dce_inputs()

        B, W, R = cfg.batch_size, info.world, info.rank
        total_steps = self.data.total_steps
        t0 = t_last = time.perf_counter()
        last_step = self.step
        for step, batch in self.data.batches(self.step):
            # The whole global batch is on every rank: its variance normalises every rank's loss.
            x = batch.to(dev, torch.float32)
            y = x * sae.input_scale
            total_variance = (y - y.mean(0)).pow(2).sum()
            x_local = x[R * B // W : (R + 1) * B // W]

            for g in self.opt.param_groups:
                g["lr"] = get_lr(step, self.lr, cfg.lr_warmup_steps)
            dead_mask = self.since_fired >= cfg.dead_feature_threshold
            res = ddp(
                x_local,
                dead_mask=dead_mask if cfg.auxk_alpha > 0 else None,
                total_variance=total_variance,
                batch_select=True,
            )
            # DDP averages gradients over ranks; scaling by W turns that average into the sum of
            # the ranks' shares of the global loss, i.e. the single-process gradient.
            loss = (res.fvu + cfg.auxk_alpha * res.auxk_loss) * W
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            sae.set_decoder_norm_to_unit_norm()

            fired = torch.zeros(sae.num_latents, dtype=torch.long, device=dev)
            fired[res.latent_indices[res.latent_acts > 0]] = 1
            dist.all_reduce(fired, info, "max")
            self.since_fired += B
            self.since_fired[fired.bool()] = 0
            self.tokens_seen += B
            self.step = done = step + 1

            if done % cfg.log_every == 0 or done == total_steps:
                stats = torch.stack([res.fvu.detach(), res.auxk_loss.detach()])
                dist.all_reduce(stats, info)  # per-rank shares of the global fvu / auxk sum up
                now = time.perf_counter()
                self._emit(
                    {
                        "event": "train",
                        "step": done,
                        "tokens": self.tokens_seen,
                        "fvu": float(stats[0]),
                        "auxk_loss": float(stats[1]),
                        "lr": self.opt.param_groups[0]["lr"],
                        "dead_fraction": float(dead_mask.float().mean()),
                        "tokens_per_s": (done - last_step) * B / max(now - t_last, 1e-9),
                        "total_steps": total_steps,
                    }
                )
                t_last, last_step = now, done
            if done % cfg.val_every == 0 and done != total_steps and info.is_main:
                self._emit(self.validate(val, loaded, ce_ids))
            if done % cfg.checkpoint_every == 0 and done != total_steps:
                if info.is_main:
                    self.save_checkpoint()
                dist.barrier(info)

        self.step = total_steps
        if info.is_main:
            self.final = self.validate(val, loaded, ce_ids)
            self._emit(self.final)
        self._wall_s = time.perf_counter() - t0
        return self.final

    # -- save ------------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Write a resumable checkpoint of the current step (the last two are kept)."""
        meta = {"run": self.run_fp, "history": self.history, "tokens_seen": self.tokens_seen}
        save_checkpoint(self.out, self.step, self.sae, self.opt, self.since_fired, meta)

    def save(self) -> None:
        """Write the trained SAE (cfg.json + sae.safetensors) and metrics.json to ``out`` (main rank)."""
        if self.info.is_main:
            doc, cfg, layer, B = self.data.doc, self.cfg, self.layer, self.cfg.batch_size
            total_steps = self.data.total_steps
            metrics = {
                "training_tokens": self.tokens_seen,
                "statement": (
                    f"trained on {self.tokens_seen:,} activation tokens ({total_steps:,} steps of {B:,}) "
                    f"drawn from {self.data.train_tokens:,} harvested train tokens of layer {layer}"
                ),
                "steps": total_steps,
                "final": self.final,
                "history": self.history,
                "wall_s_this_session": self._wall_s,
            }
            extra = {
                "layer": layer,
                "hookpoint": f"layers.{layer - 1}"
                if 0 < layer < int(doc.get("num_layers", 10**9))
                else f"hidden_states.{layer}",
                "training": asdict(cfg) | {"lr_effective": self.lr, "world_size": self.info.world},
                "model": {"name": doc["model"], "sha256": doc.get("model_sha256"), "d_model": self.d_in},
                "corpus_manifest_sha256": doc["corpus_manifest_sha256"],
                "harvest": {"config": doc["config"], "sha256": _harvest_fp(doc)},
                "shards": {n: s["sha256"] for n, s in self.data.shards.items()},
            }
            self.sae.save(self.out, extra=extra, dtype=getattr(torch, cfg.save_dtype))
            write_atomic_json(metrics, self.out / "metrics.json")
        dist.barrier(self.info)


def train(
    acts_dir: str | Path,
    out: str | Path,
    sae_cfg: SaeConfig,
    cfg: TrainConfig,
    model: str | None = None,
    device: str = "auto",
    resume: bool = True,
    log_fn: LogFn | None = None,
    loaded: Any = None,
) -> dict[str, Any]:
    """Train an SAE on the harvest in ``acts_dir``; returns the final metrics document."""
    trainer = Trainer(acts_dir, out, sae_cfg, cfg, model=model, device=device, log_fn=log_fn, loaded=loaded)
    if resume:
        trainer.resume()
    final = trainer.fit()
    trainer.save()
    # A gloo group left alive at interpreter exit can abort the process ("terminate called ...").
    dist.shutdown(trainer.info)
    return final
