"""`pttrust corpus build`: a deduplicated multi-language code corpus with a manifest and fixed splits."""

from __future__ import annotations

from pathlib import Path

import click

from risk_core.errors import UsageError


@click.group("corpus")
def corpus_group() -> None:
    """Build code corpora for SAE pre-training (Stage 1), with a reserved split for Stage 2 and evaluation."""


@corpus_group.command("build")
@click.argument("sources", nargs=-1)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Corpus directory to write.")
@click.option(
    "--recipe",
    type=click.Choice(["default", "python-stdlib"]),
    default=None,
    help="Build a predefined corpus instead of (or in addition to) SOURCES.",
)
@click.option(
    "--install/--no-install",
    default=False,
    show_default=True,
    help="Let the recipe install its sources (apt-get, npm pack) when missing.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the recipe keeps downloaded packages (default: OUT/.sources).",
)
@click.option("--language", "languages", multiple=True, help="Keep only this language (repeatable).")
@click.option("--max-bytes", type=int, default=512 * 1024, show_default=True, help="Skip larger files.")
@click.option(
    "--max-line-chars",
    type=int,
    default=1000,
    show_default=True,
    help="A longer line marks a file as minified/generated.",
)
@click.option("--validation-fraction", type=float, default=0.02, show_default=True)
@click.option(
    "--reserved-fraction",
    type=float,
    default=0.10,
    show_default=True,
    help="Share kept for Stage 2 and evaluation, never trained on.",
)
def build(
    sources: tuple[str, ...],
    out: Path,
    recipe: str | None,
    install: bool,
    cache: Path | None,
    languages: tuple[str, ...],
    max_bytes: int,
    max_line_chars: int,
    validation_fraction: float,
    reserved_fraction: float,
) -> None:
    """Scan SOURCES (directories, git repos, globs, files, zip/tar archives) into a corpus at --out.

    \b
    Examples:
      pttrust corpus build ~/src/myrepo 'vendor/**/*.go' --out corpus/
      pttrust corpus build --recipe python-stdlib --out corpus-py/
      pttrust corpus build --recipe default --install --out corpus/
    """
    from rich.console import Console
    from rich.table import Table

    from risk_core.corpus import LANGUAGES, CorpusConfig, build_corpus

    known = sorted(set(LANGUAGES.values()))
    bad = [lang for lang in languages if lang not in known]
    if bad:
        raise UsageError(f"unknown language {bad[0]!r} (known: {', '.join(known)})")
    srcs = list(sources)
    if recipe:
        from risk_core.corpus import recipe_sources

        found, notes = recipe_sources(recipe, cache or out / ".sources", install=install)
        for note in notes:
            click.echo(f"recipe: {note}", err=True)
        srcs += found
    if not srcs:
        raise UsageError("give at least one SOURCE or --recipe")
    cfg = CorpusConfig(
        max_bytes=max_bytes,
        max_line_chars=max_line_chars,
        validation_fraction=validation_fraction,
        reserved_fraction=reserved_fraction,
        languages=tuple(languages),
    )
    console = Console(stderr=True)
    with console.status("scanning...") as status:
        summary = build_corpus(
            srcs, out, cfg, progress=lambda seen, kept: status.update(f"scanning... {seen:,} files seen, {kept:,} kept")
        )
    table = Table("language", "files", "MB", "~tokens", box=None)
    for lang, v in summary.by_language.items():
        table.add_row(lang, f"{v['files']:,}", f"{v['bytes'] / 1e6:,.1f}", f"{v['approx_tokens']:,}")
    table.add_row("total", f"{summary.n_files:,}", f"{summary.n_bytes / 1e6:,.1f}", f"{summary.approx_tokens:,}")
    Console().print(table)
    splits = ", ".join(f"{k} {v['files']:,} files" for k, v in sorted(summary.by_split.items()))
    skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.skipped.items())) or "none"
    click.echo(f"splits: {splits}\nskipped: {skipped}\nwrote {out}/manifest.jsonl (~tokens = bytes / 3.5)")


COMMANDS = [corpus_group]
