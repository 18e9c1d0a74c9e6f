"""`pttrust pretrain`: Stage 1 — harvest one layer's activations over a corpus, then train an SAE.

Both subcommands run unchanged under ``torchrun --nproc-per-node N $(which pttrust) pretrain ...``:
each rank takes its share and rank 0 writes the shared files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.defaults import DEFAULT_LAYER
from risk_core.choices import SAE_ACTIVATIONS, SaeActivation
from risk_core.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from rich.progress import TaskID


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


@click.group("pretrain")
def pretrain_group() -> None:
    """Stage 1: pre-train a sparse autoencoder on a code LLM's hidden states."""


@pretrain_group.command("harvest")
@click.option(
    "--corpus",
    "corpus_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Corpus directory from `pttrust corpus build` (its train and validation splits are read).",
)
@click.option(
    "--model",
    "-m",
    "model_name",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Registry name or local model directory.",
)
@click.option(
    "--layer",
    "-l",
    type=int,
    default=DEFAULT_LAYER,
    show_default=True,
    help="hidden_states index (0 = embeddings) [default: the shipped bundle's].",
)
@click.option("--tokens", type=int, default=10_000_000, show_default=True, help="Train activation tokens to harvest.")
@click.option("--val-tokens", type=int, default=131_072, show_default=True, help="Validation activation tokens.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Output directory (resumable).")
@click.option("--ctx-len", type=int, default=1024, show_default=True, help="Tokens per chunk the model runs on.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Chunks per forward pass.")
@click.option("--shard-tokens", type=int, default=131_072, show_default=True, help="Approximate tokens per shard.")
@click.option(
    "--skip-first",
    type=int,
    default=1,
    show_default=True,
    help="Leading positions of each chunk not stored (the attention sink).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
@click.option(
    "--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True
)
def harvest_cmd(
    corpus_dir: Path,
    model_name: str,
    layer: int,
    tokens: int,
    val_tokens: int,
    out: Path,
    ctx_len: int,
    batch_size: int,
    shard_tokens: int,
    skip_first: int,
    seed: int,
    device: str,
    quantize: str,
    dtype: str,
) -> None:
    """Run the model to --layer over the corpus and write fp16 activation shards to --out.

    Rerun the same command after an interruption: finished shards are kept, the rest rebuilt."""
    from risk_core.harvest import HarvestConfig, harvest

    cfg = HarvestConfig(
        layer=layer,
        tokens=tokens,
        val_tokens=val_tokens,
        ctx_len=ctx_len,
        batch_size=batch_size,
        shard_tokens=shard_tokens,
        skip_first=skip_first,
        seed=seed,
    )
    with _TokenProgress(enabled=_is_main()) as progress:
        doc = harvest(
            corpus_dir, model_name, out, cfg, device=device, quantize=quantize, dtype=dtype, progress=progress
        )
    if _is_main():
        n = doc["n_tokens"]
        click.echo(
            f"harvested {n['train']:,} train + {n['val']:,} validation tokens of layer {layer} "
            f"(d={doc['d_model']}) into {out}"
        )


@pretrain_group.command("train")
@click.option("--acts", "acts_dir", required=True, type=click.Path(path_type=Path), help="Harvest directory.")
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Output directory: cfg.json, sae.safetensors, metrics.json, checkpoints/.",
)
@click.option("--expansion-factor", type=int, default=16, show_default=True, help="Latents = this x d_model.")
@click.option("--num-latents", type=int, default=0, show_default=True, help="Overrides --expansion-factor when > 0.")
@click.option(
    "--k",
    type=int,
    default=32,
    show_default=True,
    help="Latents active per token (on average over a batch with --activation batchtopk).",
)
@click.option(
    "--activation",
    type=click.Choice(SAE_ACTIVATIONS),
    default="topk",
    show_default=True,
    help="topk: k latents per token; batchtopk: k per token on average over each batch, a learned threshold in use.",
)
@click.option("--batch-size", type=int, default=4096, show_default=True, help="Tokens per step (global).")
@click.option(
    "--lr",
    type=float,
    default=0.0,
    show_default=True,
    help="Learning rate after warm-up; 0 = 2e-4 / sqrt(num_latents / 2**14).",
)
@click.option("--lr-warmup-steps", type=int, default=1000, show_default=True)
@click.option("--auxk-alpha", type=float, default=1 / 32, show_default=True)
@click.option(
    "--dead-tokens",
    type=int,
    default=10_000_000,
    show_default=True,
    help="A latent not fired for this many training tokens counts as dead.",
)
@click.option("--max-tokens", type=int, default=0, show_default=True, help="0 = --epochs passes over the shards.")
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--shards-in-memory", type=int, default=4, show_default=True, help="Memory bound / shuffle window.")
@click.option("--val-every", type=int, default=1000, show_default=True, help="Steps between validations.")
@click.option("--val-tokens", type=int, default=65_536, show_default=True)
@click.option("--ce-chunks", type=int, default=8, show_default=True, help="Validation chunks for dCE.")
@click.option("--no-delta-ce", is_flag=True, help="Skip dCE (no model needed).")
@click.option("--model", "-m", "model_name", default=None, help="Model for dCE (default: the one the harvest used).")
@click.option("--checkpoint-every", type=int, default=1000, show_default=True)
@click.option("--log-every", type=int, default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--no-resume", is_flag=True, help="Ignore checkpoints in --out and start over.")
@click.option(
    "--save-dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default="float32",
    show_default=True,
    help="dtype of the final sae.safetensors (float16 halves a shipped SAE).",
)
def train_cmd(
    acts_dir: Path,
    out: Path,
    expansion_factor: int,
    num_latents: int,
    k: int,
    activation: SaeActivation,
    batch_size: int,
    lr: float,
    lr_warmup_steps: int,
    auxk_alpha: float,
    dead_tokens: int,
    max_tokens: int,
    epochs: int,
    shards_in_memory: int,
    val_every: int,
    val_tokens: int,
    ce_chunks: int,
    no_delta_ce: bool,
    model_name: str | None,
    checkpoint_every: int,
    log_every: int,
    seed: int,
    device: str,
    no_resume: bool,
    save_dtype: str,
) -> None:
    """Train a TopK sparse autoencoder on the activations in --acts (resumes from --out's checkpoints)."""
    from risk_core.sae import SaeConfig
    from risk_core.train_sae import TrainConfig, train

    sae_cfg = SaeConfig(expansion_factor=expansion_factor, k=k, num_latents=num_latents, activation=activation)
    cfg = TrainConfig(
        batch_size=batch_size,
        lr=lr,
        lr_warmup_steps=lr_warmup_steps,
        auxk_alpha=auxk_alpha,
        dead_feature_threshold=dead_tokens,
        max_tokens=max_tokens,
        epochs=epochs,
        shards_in_memory=shards_in_memory,
        seed=seed,
        log_every=log_every,
        val_every=val_every,
        val_tokens=val_tokens,
        delta_ce=not no_delta_ce,
        ce_chunks=ce_chunks,
        checkpoint_every=checkpoint_every,
        save_dtype=save_dtype,
    )

    def show(rec: dict) -> None:
        if rec["event"] == "train":
            click.echo(
                f"step {rec['step']:>7}/{rec['total_steps']}  tokens {rec['tokens']:>12,}  "
                f"fvu {rec['fvu']:.4f}  auxk {rec['auxk_loss']:.4f}  dead {rec['dead_fraction']:.3f}  "
                f"{rec['tokens_per_s']:,.0f} tok/s",
                err=True,
            )
        else:
            parts = [f"{k} {rec[k]:.4f}" for k in ("fvu", "l0", "dead_fraction", "delta_ce") if k in rec]
            click.echo(f"[val] step {rec['step']}  " + "  ".join(parts), err=True)

    final = train(acts_dir, out, sae_cfg, cfg, model=model_name, device=device, resume=not no_resume, log_fn=show)
    if _is_main():
        summary = ", ".join(f"{k}={final[k]:.4f}" for k in ("fvu", "l0", "dead_fraction", "delta_ce") if k in final)
        click.echo(f"saved SAE to {out} ({summary})")


class _TokenProgress:
    """A rich progress bar per split showing tokens, tokens/s and ETA; silent on non-main ranks."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]} tok/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.__enter__()
        return self

    def __call__(self, split: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if split not in self.tasks:
            self.tasks[split] = self.bar.add_task(f"harvest {split}", total=total, rate="-")
        task = self.tasks[split]
        self.bar.update(task, completed=done, total=total)
        speed = self.bar.tasks[task].speed
        self.bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


COMMANDS = [pretrain_group]
