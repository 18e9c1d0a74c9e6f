"""The ``pttrust`` command line. Each subcommand lives in its own module and only parses flags and
wires pieces together; the work is done in ``risk_core`` and the other ``bot`` modules."""

from __future__ import annotations

import logging
import sys

import click

from risk_core.errors import PttrustError


class _OneLine(click.ClickException):
    """A click error (bad flag, missing option, unknown command) shown as one ``error:`` line with the
    same exit code (2 for usage errors), like every other failure of the CLI."""

    def __init__(self, err: click.ClickException):
        super().__init__(err.format_message())
        self._exit_code = err.exit_code
        ctx = getattr(err, "ctx", None)
        self.hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""

    @property
    def exit_code(self) -> int:  # click declares exit_code per class; this one takes the wrapped error's
        return self._exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}{self.hint}", err=True)


def _one_line(err: click.ClickException) -> click.ClickException:
    # `pttrust data` alone prints its help: that is not an error.
    return err if isinstance(err, (_OneLine, click.exceptions.NoArgsIsHelpError)) else _OneLine(err)


class _Group(click.Group):
    """Turns every PttrustError and click usage error into one line on stderr and its exit code,
    never a traceback or a usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as err:
            raise _one_line(err) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            raise _one_line(err) from None
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
    # Each retry of a failing GitHub call is logged by urllib3; the outcome is one `error:` line.
    logging.getLogger("urllib3").setLevel(level if verbose else logging.ERROR)


def _register() -> None:
    # Imported here so that `pttrust --help` stays fast and a broken optional piece names itself.
    from bot.cli import bind, corpus, data, encode, evaluate, models, pretrain, review

    for module in (models, encode, corpus, pretrain, data, bind, evaluate, review):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
