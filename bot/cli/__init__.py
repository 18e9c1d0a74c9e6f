"""The ``pttrust`` command line. Each subcommand lives in its own module and only parses flags and
wires pieces together; the work is done in ``risk_core`` and the other ``bot`` modules."""

from __future__ import annotations

import logging
import sys

import click

from risk_core.errors import PttrustError


class _Group(click.Group):
    """Turns every PttrustError into one line on stderr and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PttrustError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pttrust")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Flag risky lines in AI-written code from a code LLM's internal states.

    \b
    Quick start:
      pttrust models prepare            # assemble and convert the embedded model once
      pttrust review --diff examples/example.diff
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    # Imported here so that `pttrust --help` stays fast and a broken optional piece names itself.
    from bot.cli import models, encode, corpus, pretrain, data, bind, evaluate, review

    for module in (models, encode, corpus, pretrain, data, bind, evaluate, review):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
