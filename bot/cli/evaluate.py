"""`pttrust eval` (all scorers on labeled data), `pttrust explain` (the latents behind one line) and
`pttrust label-latents` (learn the latents' descriptions from data into a bundle's latents.json).

All three default to the bundle shipped for the embedded model, like `pttrust review`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from risk_core.errors import UsageError
from risk_core.models import DEFAULT_MODEL

_MODEL_HELP = "Registry name or local model directory [default: the bundle's model, else the embedded one]."


_BUNDLE_HELP = "Artifact bundle from `pttrust bind` [default: the one shipped for --model, else the embedded model]."


def _bundle_dir(bundle_dir: Path | None, model_name: str | None) -> Path:
    """--bundle, or the bundle packaged for the model (as `pttrust review` does)."""
    if bundle_dir is not None:
        return bundle_dir
    from bot.run import default_bundle

    found = default_bundle(model_name or DEFAULT_MODEL)
    if found is None:
        raise UsageError(f"no bundle is shipped for model {model_name or DEFAULT_MODEL!r}: pass --bundle DIR")
    return found


def _load(bundle_dir: Path | None, model_name: str | None, device: str, quantize: str):
    from risk_core.artifacts import Bundle
    from risk_core.model_loading import load_model

    bundle = Bundle.load(_bundle_dir(bundle_dir, model_name))
    loaded = load_model(model_name or bundle.cfg.model_name or DEFAULT_MODEL, device=device, quantize=quantize)
    bundle.check_compatible(loaded)
    bundle.sae.to(loaded.device)
    return loaded, bundle


@click.command("eval")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--bundle",
    "-b",
    "bundle_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_BUNDLE_HELP,
)
@click.option("--model", "-m", "model_name", default=None, help=_MODEL_HELP)
@click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="markdown", show_default=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report here instead of stdout.",
)
@click.option("--languages", default=None, help="Comma-separated languages to evaluate (default: all).")
@click.option("--max-samples", type=int, default=0, help="Evaluate at most this many samples (0 = all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random baseline.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
def eval_cmd(data, bundle_dir, model_name, fmt, out, languages, max_samples, seed, batch_size, device, quantize):
    """Score labeled DATA with every method (random, surprise, entropy, raw-probe, pttrust); report metrics."""
    from risk_core.data.jsonl import file_sha256, read_jsonl
    from risk_core.evaluate import evaluate, to_markdown

    samples, data_sha256 = read_jsonl(data), file_sha256(data)  # hashed as read, not after the run
    if languages:
        keep = {x.strip().lower() for x in languages.split(",")}
        samples = [s for s in samples if s.language in keep]
    if max_samples:
        samples = samples[:max_samples]
    if not samples:
        raise UsageError(f"{data}: no samples to evaluate")
    loaded, bundle = _load(bundle_dir, model_name, device, quantize)
    enc = bundle.cfg.encode_config(surprise=True, batch_size=batch_size)
    from bot.cli.bind import progress_printer

    report = evaluate(loaded, bundle, samples, enc, seed=seed, progress=progress_printer())
    report["data"] = {"path": str(data), "sha256": data_sha256, "max_samples": max_samples or None}
    text = json.dumps(report, indent=2) if fmt == "json" else to_markdown(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        click.echo(f"report -> {out}", err=True)
    else:
        click.echo(text)


@click.command("explain")
@click.argument("target")
@click.option(
    "--bundle",
    "-b",
    "bundle_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_BUNDLE_HELP,
)
@click.option("--model", "-m", "model_name", default=None, help=_MODEL_HELP)
@click.option("--language", default=None, help="Language of FILE [default: from its extension].")
@click.option("--top", type=int, default=8, show_default=True, help="Latents to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
def explain_cmd(target, bundle_dir, model_name, language, top, as_json, device, quantize):
    """Show the latents behind the risk of one line, given as FILE:LINE."""
    from risk_core.data.mutate import language_of
    from risk_core.evaluate import explain_line

    path_s, sep, line_s = target.rpartition(":")
    if not sep or not line_s.isdigit():
        raise UsageError(f"{target}: expected FILE:LINE")
    path = Path(path_s)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    lang = language or language_of(path) or "python"
    code = path.read_text(encoding="utf-8", errors="replace")
    line = int(line_s)
    if not 1 <= line <= len(code.splitlines()):
        raise UsageError(f"{path} has {len(code.splitlines())} lines; line {line} does not exist")
    loaded, bundle = _load(bundle_dir, model_name, device, quantize)
    enc = bundle.cfg.encode_config()
    res = explain_line(loaded, bundle, code, lang, line, enc, top=top)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{path}:{line}  risk {res['risk']:.3f}  | {res['text'].strip()}")
    for text in explain_rows(res):
        click.echo(text)


def explain_rows(res: dict) -> list[str]:
    """One line per SAE latent behind the risk, then one per kind of the bundle's other inputs (raw
    states, surprise) with their summed contribution and largest members: a raw state never reads as
    a latent, and hundreds of them never crowd the latents out."""
    rows = []
    for lat in res["latents"]:
        label = f"  {lat['label']}" if lat["label"] else ""
        rows.append(
            f"  latent {lat['index']:>6}  act {lat['activation']:+.4f}  contrib {lat['contribution']:+.4f}{label}"
        )
    for group in res.get("inputs", []):
        largest = ", ".join(f"{x['index']} {x['contribution']:+.4f}" for x in group["largest"])
        rows.append(
            f"  {group['kind']} ({group['count']}): contrib {group['contribution']:+.4f} in all; largest {largest}"
        )
    return rows


@click.command("label-latents")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL samples (corpus code and real bug fixes; repeatable). Known bug lines give buggy_share.",
)
@click.option(
    "--bundle",
    "-b",
    "bundle_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_BUNDLE_HELP,
)
@click.option("--model", "-m", "model_name", default=None, help=_MODEL_HELP)
@click.option("--latents", "n_latents", type=int, default=32, show_default=True, help="Heaviest latents to describe.")
@click.option("--max-files", type=int, default=400, show_default=True, help="Samples read (0 = all).")
@click.option("--top-tokens", type=int, default=64, show_default=True, help="Top activations summarised per latent.")
@click.option("--min-lift", type=float, default=2.0, show_default=True, help="Over-representation a term needs.")
@click.option("--min-clarity", type=float, default=0.5, show_default=True, help="Coverage a description needs.")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write [default: the bundle's latents.json].",
)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
def label_latents_cmd(
    data,
    bundle_dir,
    model_name,
    n_latents,
    max_files,
    top_tokens,
    min_lift,
    min_clarity,
    out,
    batch_size,
    device,
    quantize,
):
    """(Re)label a bundle's latents: describe each heavy latent by the tokens and constructs most
    over-represented in its top activations (docs/latents.md); unclear latents get no label."""
    from risk_core.atomic import write_atomic_json
    from risk_core.data.jsonl import file_sha256, read_jsonl
    from risk_core.evaluate import LabelConfig, label_latents

    if n_latents < 1 or top_tokens < 1 or max_files < 0:
        raise UsageError("--latents and --top-tokens must be >= 1, --max-files >= 0")
    if not 0.0 <= min_clarity <= 1.0:
        raise UsageError(f"--min-clarity must be between 0 and 1, got {min_clarity}")
    samples, hashes = [], []
    for path in data:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        samples += read_jsonl(path)
        hashes.append({"path": str(path), "sha256": file_sha256(path)})
    if max_files:
        samples = samples[:max_files]
    if not samples:
        raise UsageError("no samples to label from")
    target = out or _bundle_dir(bundle_dir, model_name) / "latents.json"
    loaded, bundle = _load(bundle_dir, model_name, device, quantize)
    enc = bundle.cfg.encode_config(surprise=False, batch_size=batch_size)
    cfg = LabelConfig(top_tokens=top_tokens, min_lift=min_lift, min_clarity=min_clarity)
    labels = label_latents(
        loaded,
        bundle,
        [s.code for s in samples],
        [s.language for s in samples],
        enc,
        n_latents=n_latents,
        cfg=cfg,
        buggy_lines=[s.buggy_lines for s in samples],
    )
    if labels:
        labels["_method"]["data"] = hashes
    write_atomic_json(labels, target)
    clear = sum(1 for k, v in labels.items() if not k.startswith("_") and v.get("label"))
    click.echo(f"{clear} of {len(labels) - bool(labels)} latent(s) described -> {target}", err=True)


COMMANDS = [eval_cmd, explain_cmd, label_latents_cmd]
