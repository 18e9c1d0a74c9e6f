"""`pttrust bind`: train the risk probe on labeled lines and write the artifact bundle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from bot.cli.defaults import DEFAULT_L1, DEFAULT_LAYER
from risk_core.errors import UsageError
from risk_core.models import DEFAULT_MODEL


def progress_printer(what: str = "encoded", steps: int = 10):
    """A ``progress(done, total)`` callback that prints about ``steps`` lines to stderr."""
    last = [-1]

    def report(done: int, total: int) -> None:
        bucket = done * steps // max(total, 1)
        if bucket != last[0]:
            last[0] = bucket
            click.echo(f"  {what} {done}/{total}", err=True)

    return report


def _languages(value: str | None) -> list[str]:
    return [x.strip().lower() for x in value.split(",") if x.strip()] if value else []


@click.command("bind")
@click.option(
    "--data",
    "data_paths",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    multiple=True,
    help="Labeled JSONL (pttrust data ...); repeat to combine sources.",
)
@click.option(
    "--sae",
    "sae_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Trained SAE directory (cfg.json + sae.safetensors).",
)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True, help="Bundle directory.")
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
    default=None,
    help="hidden_states index [default: the SAE's layer, else the shipped bundle's].",
)
@click.option("--pooling", type=click.Choice(["mean", "last", "max"]), default="mean", show_default=True)
@click.option(
    "--framing",
    type=click.Choice(["bare", "review", "auto"]),
    default="bare",
    show_default=True,
    help="Encode code alone, inside a code-review chat prompt, or try both and keep the better.",
)
@click.option(
    "--reading",
    type=click.Choice(["plain", "echo"]),
    default="plain",
    show_default=True,
    help="Read each sample once, or twice in one pass and take the second reading (every line has seen "
    "the whole sample; twice the tokens).",
)
@click.option("--features", type=click.Choice(["sae", "sae+surprise"]), default="sae", show_default=True)
@click.option("--probe", "kind", type=click.Choice(["logistic", "mlp"]), default="logistic", show_default=True)
@click.option("--l1", type=float, default=DEFAULT_L1, show_default=True, help="[default: the shipped bundle's]")
@click.option("--hidden", type=int, default=64, show_default=True, help="MLP hidden width.")
@click.option("--epochs", type=int, default=200, show_default=True)
@click.option("--lr", type=float, default=1e-2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--languages", default=None, help="Comma-separated languages to bind on (default: all in the data).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Share of source paths held out.")
@click.option("--no-raw-probe", is_flag=True, help="Skip the raw-state baseline probe.")
@click.option(
    "--label-latents",
    type=int,
    default=32,
    show_default=True,
    help="Label this many heavy latents into latents.json (0 = skip).",
)
@click.option("--max-samples", type=int, default=0, help="Use at most this many samples of each --data file (0 = all).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Windows per forward pass.")
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
def bind_cmd(
    data_paths,
    sae_dir,
    out,
    model_name,
    layer,
    pooling,
    framing,
    reading,
    features,
    kind,
    l1,
    hidden,
    epochs,
    lr,
    seed,
    languages,
    val_fraction,
    no_raw_probe,
    label_latents,
    max_samples,
    batch_size,
    device,
    quantize,
):
    """Train the risk probe on --data's labeled lines through --sae and write the bundle to --out.

    \b
    Example:
      pttrust bind --data mutants.jsonl --data humaneval.jsonl --sae sae/ --out bundle/   # the SAE's layer
    """
    from risk_core.bind import BindConfig, bind
    from risk_core.data.jsonl import file_sha256, read_jsonl
    from risk_core.encode import EncodeConfig
    from risk_core.model_loading import load_model
    from risk_core.probe import ProbeConfig
    from risk_core.sae import SparseCoder

    if not 0 < val_fraction < 1:
        raise UsageError("--val-fraction must lie in (0, 1)")
    samples, sources = [], []
    for path in data_paths:
        sha = file_sha256(path)  # hashed before reading: what the run used, not what is there after it
        part = read_jsonl(path)
        part = part[:max_samples] if max_samples else part
        samples += part
        sources.append({"path": str(path), "sha256": sha, "samples": len(part)})
    data_sha256 = (
        sources[0]["sha256"]
        if len(sources) == 1
        else hashlib.sha256("\n".join(s["sha256"] for s in sources).encode()).hexdigest()
    )
    if layer is None:
        try:
            layer = int(json.loads((sae_dir / "cfg.json").read_text()).get("layer", DEFAULT_LAYER))
        except (OSError, ValueError, TypeError):
            layer = DEFAULT_LAYER
    loaded = load_model(model_name, device=device, quantize=quantize)
    if not 0 <= layer <= loaded.num_layers:
        raise UsageError(f"--layer {layer} is out of range for {loaded.name} (0..{loaded.num_layers})")
    sae = SparseCoder.load(sae_dir, device=str(loaded.device), expected_d_in=loaded.d_model)
    cfg = BindConfig(
        layer=layer,
        pooling=pooling,
        framing=framing,
        reading=reading,
        features=features,
        probe=ProbeConfig(kind=kind, l1=l1, hidden=hidden, epochs=epochs, lr=lr, seed=seed),
        val_fraction=val_fraction,
        seed=seed,
        languages=_languages(languages),
        raw_probe=not no_raw_probe,
        label_latents=label_latents,
    )
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    bundle = bind(
        loaded,
        sae,
        samples,
        cfg,
        data_sha256=data_sha256,
        enc_cfg=EncodeConfig(layer=layer, pooling=pooling, batch_size=batch_size),
        log=log,
        progress=progress_printer(),
    )
    assert bundle.metrics is not None  # bind() always records the metrics
    bundle.metrics["data"] = sources
    bundle.sae_source = sae_dir
    bundle.save(out)
    val = bundle.metrics["val"]
    parts = [f"{name}: AUROC {m['auroc']}, top-1 {m['top1']}, ECE {m['ece']}" for name, m in val.items()]
    click.echo(f"bundle -> {out} (framing {bundle.cfg.framing}; validation " + "; ".join(parts) + ")")


@click.command("sweep-layers")
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Labeled JSONL (pttrust data ...).",
)
@click.option("--layers", default="4,8,12,16,20", show_default=True, help="Comma-separated hidden_states indices.")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON report here (it is printed as a table either way).",
)
@click.option(
    "--model",
    "-m",
    "model_name",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Registry name or local model directory.",
)
@click.option("--pooling", type=click.Choice(["mean", "last", "max"]), default="mean", show_default=True)
@click.option("--l1", type=float, default=DEFAULT_L1, show_default=True, help="[default: the shipped bundle's]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Share of source paths held out.")
@click.option("--max-samples", type=int, default=0, help="Use at most this many samples (0 = all).")
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
def sweep_layers_cmd(
    data_path, layers, out, model_name, pooling, l1, seed, val_fraction, max_samples, device, quantize
):
    """Choose the layer to train the SAE on: raw-state probe validation metrics per layer, one pass."""
    from risk_core.bind import sweep_layers
    from risk_core.data.jsonl import file_sha256, read_jsonl
    from risk_core.model_loading import load_model
    from risk_core.probe import ProbeConfig

    try:
        wanted = [int(x) for x in layers.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--layers must be comma-separated integers, got {layers!r}") from None
    if not wanted:
        raise UsageError("--layers is empty")
    samples, data_sha256 = read_jsonl(data_path), file_sha256(data_path)  # hashed as read, not after the run
    if max_samples:
        samples = samples[:max_samples]
    loaded = load_model(model_name, device=device, quantize=quantize)
    report = sweep_layers(
        loaded, samples, wanted, pooling, ProbeConfig(l1=l1, seed=seed), val_fraction, seed, progress=progress_printer()
    )
    report["data"], report["data_sha256"], report["model"] = str(data_path), data_sha256, loaded.name
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    click.echo("layer  auroc   top1   top3")
    for layer, m in report["layers"].items():
        click.echo(f"{layer:>5}  {m['auroc']:.3f}  {m['top1']:.3f}  {m['top3']:.3f}")
    click.echo(f"best layer: {report['best_layer']}")


COMMANDS = [bind_cmd, sweep_layers_cmd]
