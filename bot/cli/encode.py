"""`pttrust encode`: per-line hidden states of one file, written as safetensors."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli.defaults import DEFAULT_LAYER
from risk_core.errors import UsageError
from risk_core.models import DEFAULT_MODEL


@click.command("encode")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--layer",
    "-l",
    type=int,
    default=DEFAULT_LAYER,
    show_default=True,
    help="hidden_states index (0 = embeddings) [default: the shipped bundle's].",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output .safetensors (tensors `states`, `line_numbers`; `blank_lines` in the metadata).",
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
@click.option("--surprise", is_flag=True, help="Also write per-line token NLL and entropy.")
@click.option("--max-bytes", type=int, default=1_000_000, show_default=True, help="Refuse files larger than this.")
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
def encode(
    file: Path,
    layer: int,
    out: Path,
    model_name: str,
    pooling: str,
    surprise: bool,
    max_bytes: int,
    device: str,
    quantize: str,
) -> None:
    """Encode FILE's lines at --layer and save them to --out."""
    import json

    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    size = file.stat().st_size
    if size > max_bytes:
        raise UsageError(f"{file}: skipped, {size:,} bytes is over the limit of {max_bytes:,} (--max-bytes)")
    if size == 0:
        raise UsageError(f"{file}: empty file, nothing to encode")
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        click.echo(f"warning: {file} is not valid UTF-8; undecodable bytes were replaced", err=True)

    from safetensors.torch import save_file

    from risk_core.encode import EncodeConfig, encode_lines
    from risk_core.model_loading import load_model

    loaded = load_model(model_name, device=device, quantize=quantize)
    cfg = EncodeConfig(layer=layer, pooling=pooling, surprise=surprise)
    result = encode_lines(loaded, [text], cfg)[0]
    import torch

    tensors = {
        "states": result.states.contiguous(),
        "line_numbers": torch.tensor(result.line_numbers, dtype=torch.long),
    }
    if surprise:
        assert result.surprise_mean is not None and result.surprise_max is not None and result.entropy_mean is not None
        tensors |= {
            "surprise_mean": result.surprise_mean,
            "surprise_max": result.surprise_max,
            "entropy_mean": result.entropy_mean,
        }
    metadata = {
        "model": loaded.name,
        "model_sha256": loaded.sha256 or "",
        "layer": str(layer),
        "pooling": pooling,
        "source": str(file),
        "blank_lines": json.dumps(result.blank_lines),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)
    click.echo(f"{file}: {len(result.line_numbers)} lines encoded at layer {layer} -> {out}")


COMMANDS = [encode]
