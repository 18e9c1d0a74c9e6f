"""`pttrust review`: score the added lines of a diff (or, with ``--github``, a pull request).

This module only parses flags and wires pieces: `bot.review` does the work, `bot.publish` writes.

Hook for the GitHub half: ``--github OWNER/REPO#N [--dry-run]`` calls
``bot.github_source.open_pull_request(spec, dry_run=..., cfg=..., env=..., fmt=..., out=...)``,
which returns ``(bot.review.ReviewSource, publisher)``. Nothing else here knows about GitHub.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from bot.cli.config_options import config_option
from bot.formats import FORMATS
from risk_core.errors import UsageError
from risk_core.model_loading import QUANTIZE_CHOICES

CONFIG_NAME = ".pttrust.yml"


def _progress(quiet: bool):
    """Progress lines on stderr (stdout may be the report itself)."""
    start = time.monotonic()

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.monotonic() - start:6.1f}s] {message}", err=True)

    return say


def _find_config(explicit: str | None, repo: str) -> str | None:
    if explicit:
        return explicit
    candidate = Path(repo) / CONFIG_NAME
    return str(candidate) if candidate.is_file() else None


@click.command("review")
@click.option("--diff", "diff_path", metavar="PATH|-", help="Unified diff to review ('-' = stdin).")
@click.option(
    "--repo",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Working tree the diff applies to (new-side contents, git blame).",
)
@click.option("--model", "-m", default=None, help="Model registry name or path (default: the embedded model).")
@click.option(
    "--bundle",
    "-b",
    default=None,
    type=click.Path(file_okay=False),
    help="Artifact bundle (SAE + probe) from `pttrust bind` [default: the one packaged for --model].",
)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N].")
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE_CHOICES),
    default="auto",
    show_default=True,
    help="Model weights: auto (nf4 on CUDA, none on CPU) | int8 (on CPU: dynamic int8 linear layers).",
)
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "bfloat16"]),
    default="auto",
    show_default=True,
    help="What the model computes in: auto (bfloat16 on CUDA and on CPUs that multiply it in hardware, "
    "AMX or AVX-512 BF16; else float32).",
)
@config_option("threshold")
@config_option("max_comments")
@config_option("authored_by")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--out", "-o", default=None, type=click.Path(dir_okay=False), help="Write the report here.")
@config_option("fail_above")
@config_option("on_skip")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"Settings file (default: {CONFIG_NAME} in --repo when present).",
)
@click.option(
    "--templates",
    default=None,
    type=click.Path(file_okay=False),
    help="Directory of jinja2 templates overriding the packaged ones.",
)
@click.option(
    "--github",
    "github_spec",
    default=None,
    metavar="OWNER/REPO#N",
    help="Review a pull request instead of a local diff (token: $GITHUB_TOKEN or $GH_TOKEN).",
)
@click.option("--staged", is_flag=True, help="Review the staged changes (git diff --cached; the pre-commit hook).")
@click.option(
    "--base", "base_ref", default=None, metavar="REF", help="Review HEAD's changes since REF (git diff REF...HEAD)."
)
@click.option("--dry-run", is_flag=True, help="With --github: render everything, post nothing.")
@config_option("marker")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def review(
    diff_path,
    repo,
    model,
    bundle,
    device,
    quantize,
    dtype,
    threshold,
    max_comments,
    authored_by,
    fmt,
    out,
    fail_above,
    on_skip,
    config_path,
    templates,
    github_spec,
    staged,
    base_ref,
    dry_run,
    marker,
    quiet,
):
    """Flag the riskiest added lines of a diff, with the latents behind each score.

    \b
    Examples:
      pttrust review --diff my.diff
      git diff main | pttrust review --diff - --format html --out report.html
      pttrust review --github OWNER/REPO#123 --dry-run
      pttrust review --diff my.diff --bundle bundle/ --fail-above 0.9
      pttrust review --staged --fail-above 0.9      # what the pre-commit hook runs
      pttrust review --base origin/main --format html --out report.html

    \b
    Exit status: 0 done, 1 --fail-above exceeded (or a failure), 2 usage error.
    """
    from bot.config import load_config
    from bot.diff import read_diff
    from bot.publish.local import LocalPublisher
    from bot.render import make_environment
    from bot.review import local_source
    from bot.run import gate_skip_problem, score_source

    given = [diff_path is not None, github_spec is not None, staged, base_ref is not None]
    if sum(given) != 1:
        raise UsageError("give exactly one of --diff PATH|-, --staged, --base REF or --github OWNER/REPO#N")
    if dry_run and github_spec is None:
        raise UsageError("--dry-run only applies to --github")
    for name, value in (("--threshold", threshold), ("--fail-above", fail_above)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UsageError(f"{name} must be between 0 and 1, got {value}")
    if github_spec is None and not Path(repo).is_dir():
        raise UsageError(f"--repo is not a directory: {repo}")

    cfg = load_config(_find_config(config_path, repo)).replace(
        threshold=threshold,
        max_comments=max_comments,
        authored_by=authored_by,
        fail_above=fail_above,
        on_skip=on_skip,
        templates=templates,
        model=model,
        bundle=bundle,
        marker=marker,
    )
    env = make_environment(cfg.templates)
    say = _progress(quiet)

    if github_spec is not None:
        try:
            from bot.github_client import DEFAULT_SETTINGS
            from bot.github_source import open_pull_request
        except ImportError:
            raise UsageError("--github is not available in this installation") from None
        import dataclasses

        # A dry run only reads: on a public repository it needs no token (GITHUB_TOKEN or GH_TOKEN).
        settings = dataclasses.replace(DEFAULT_SETTINGS, anonymous=dry_run)
        source, publisher = open_pull_request(
            github_spec, dry_run=dry_run, cfg=cfg, env=env, fmt=fmt, out=out, settings=settings
        )
    else:
        want_ai = (cfg.authored_by or "all") == "ai"
        if staged or base_ref is not None:
            from bot.git_local import base_diff, revision_reader, staged_diff

            data = staged_diff(repo) if staged else base_diff(repo, base_ref)
            name = "staged changes" if staged else f"{base_ref}...HEAD"
            source = local_source(data, repo, name=name, with_blame=want_ai)
            source.read_file = revision_reader(repo, "" if staged else "HEAD")
        else:
            assert diff_path is not None  # exactly one source is given, checked above
            data = read_diff(diff_path)
            source = local_source(data, repo, name=diff_path, with_blame=want_ai)
        publisher = LocalPublisher(fmt, env, out)

    report = score_source(source, cfg, device=device, quantize=quantize, dtype=dtype, progress=say)
    say(f"{report.summary.lines_scored} line(s) scored, {report.summary.findings} finding(s)")
    # Publish before gating: the report must exist even when the gate fails the run.
    publisher.publish(report)
    if cfg.fail_above is not None and report.exceeds(cfg.fail_above):
        click.echo(f"error: {report.gate_message(cfg.fail_above)}", err=True)
        sys.exit(1)
    problem = gate_skip_problem(report, cfg)
    if problem is not None:
        level, message = problem
        click.echo(f"{level}: {message}", err=True)
        if level == "error":
            sys.exit(1)


COMMANDS = [review]
