"""`pttrust data mutate|humaneval|from-git`: labeled Stage 2 data, all in one JSONL format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from risk_core.errors import UsageError
from risk_core.models import DEFAULT_MODEL


def _summary(out: Path, samples) -> str:
    by = Counter(s.language for s in samples)
    ops = Counter(s.operator for s in samples if s.operator)
    langs = ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
    top = ", ".join(f"{k} {v}" for k, v in ops.most_common(12))
    return f"{len(samples)} samples -> {out} ({langs}; {top})"


def _languages(value: str | None) -> set[str] | None:
    return {x.strip().lower() for x in value.split(",") if x.strip()} if value else None


@click.group("data")
def data() -> None:
    """Make labeled Stage 2 data (mutants, HumanEval samples, bug fixes from git history) and split it."""


@data.command("mutate")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output JSONL.")
@click.option("--per-file", type=int, default=5, show_default=True, help="Mutants per source file at most.")
@click.option("--per-function", type=int, default=1, show_default=True, help="Mutants per function at most.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--languages", default=None, help="Comma-separated: python,java,javascript,go (default: all).")
@click.option("--operators", default=None, help="Comma-separated subset of the operators (default: all).")
@click.option("--max-files", type=int, default=0, help="Use at most this many source files (0 = all).")
def mutate_cmd(sources, out, per_file, per_function, seed, languages, operators, max_files):
    """Write labeled mutants of SOURCES: function-sized snippets, each with one realistic one-line bug.

    SOURCES are files, directories, or a `pttrust corpus build` directory (only its `reserved` split is
    read, which the SAE never saw)."""
    from risk_core.data.jsonl import write_jsonl
    from risk_core.data.mutate import OPERATORS, load_sources, mutate_sources

    if per_file < 1 or per_function < 1:
        raise UsageError("--per-file and --per-function must be at least 1")
    ops = None
    if operators:
        ops = [o.strip() for o in operators.split(",") if o.strip()]
        bad = [o for o in ops if o not in OPERATORS]
        if bad:
            raise UsageError(f"unknown operator {bad[0]!r}; choose from {', '.join(OPERATORS)}")
    files = load_sources(sources, _languages(languages))
    if max_files:
        files = files[:max_files]
    if not files:
        raise UsageError("no source files of a supported language (.py .java .js .go) found")
    samples = mutate_sources(files, per_file=per_file, seed=seed, per_snippet=per_function, operators=ops)
    if not samples:
        raise UsageError(f"no mutants: none of the {len(files)} files has a 6-40 line function to mutate")
    write_jsonl(out, samples)
    click.echo(_summary(out, samples))


@data.command("humaneval")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output JSONL.")
@click.option(
    "--model",
    "-m",
    "model_name",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Registry name or local model directory.",
)
@click.option(
    "--samples",
    "n_samples",
    type=int,
    default=4,
    show_default=True,
    help="Completions per problem: greedy + (N-1) at --temperature.",
)
@click.option("--temperature", type=float, default=0.8, show_default=True)
@click.option("--max-new-tokens", type=int, default=384, show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per test run.")
@click.option("--memory-mb", type=int, default=1024, show_default=True, help="Address-space limit per test run.")
@click.option("--limit", type=int, default=0, help="Only the first N problems (0 = all 164).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Problems generated together.")
@click.option(
    "--max-bug-lines",
    type=int,
    default=3,
    show_default=True,
    help="Label a failing completion's lines only when it is this close to a passing one.",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "nf4", "int8", "none"]), default="auto", show_default=True)
@click.option(
    "--unsafe-local-exec",
    is_flag=True,
    help="Run the model's programs even where bubblewrap cannot isolate them (only in a throwaway VM).",
)
def humaneval_cmd(
    out,
    model_name,
    n_samples,
    temperature,
    max_new_tokens,
    timeout,
    memory_mb,
    limit,
    seed,
    batch_size,
    max_bug_lines,
    device,
    quantize,
    unsafe_local_exec,
):
    """Sample HumanEval completions from the model, run their tests in a sandbox, record `passed`.

    A failing completion within --max-bug-lines of a passing one (or of the canonical solution) is
    labeled at the lines where they differ; other failures keep a sample-level label."""
    from risk_core.data.humaneval import humaneval_samples, require_isolation
    from risk_core.data.jsonl import write_jsonl
    from risk_core.model_loading import load_model

    if n_samples < 1 or batch_size < 1:
        raise UsageError("--samples and --batch-size must be at least 1")
    from bot.cli.bind import progress_printer

    if not require_isolation(unsafe_local_exec):  # checked before the model loads
        click.echo("warning: --unsafe-local-exec: the model's programs run unisolated on this machine", err=True)
    loaded = load_model(model_name, device=device, quantize=quantize)
    passed, located = [], []

    def recorded(samples):
        for sample in samples:
            passed.append(bool(sample.passed))
            located.append(bool(sample.buggy_lines))
            yield sample

    # Written as they come: generation is slow on a CPU, and a killed run keeps what it finished.
    write_jsonl(
        out,
        recorded(
            humaneval_samples(
                loaded,
                n_samples=n_samples,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                timeout=timeout,
                memory_mb=memory_mb,
                limit=limit,
                seed=seed,
                batch_size=batch_size,
                max_bug_lines=max_bug_lines,
                progress=progress_printer("problems done", steps=100),
                unsafe_local_exec=unsafe_local_exec,
            )
        ),
    )
    click.echo(
        f"{len(passed)} samples, {sum(passed)} passed, {sum(located)} failing ones labeled at their lines -> {out}"
    )


@data.command("from-git")
@click.argument("repo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output JSONL.")
@click.option("--max-commits", type=int, default=2000, show_default=True, help="Commits to look at (newest first).")
@click.option(
    "--max-changed-lines",
    type=int,
    default=3,
    show_default=True,
    help="Skip fixes that change more code lines of the function than this.",
)
@click.option(
    "--fixed/--no-fixed",
    default=True,
    show_default=True,
    help="Also write each fixed function (same window) as a clean negative, id '<id>:fixed'.",
)
@click.option("--languages", default=None, help="Comma-separated languages (default: all supported).")
@click.option("--rev", default="HEAD", show_default=True, help="Walk history back from this revision.")
def from_git_cmd(repo, out, max_commits, max_changed_lines, languages, rev, fixed):
    """Label bug-fix commits of REPO (a work tree or a bare git dir) at the lines each fix changed, in
    the parent version of the one function it touched (see risk_core/data/from_git.py for the rules)."""
    from risk_core.data.from_git import fix_samples
    from risk_core.data.jsonl import write_jsonl

    samples = fix_samples(
        repo,
        max_commits=max_commits,
        max_changed_lines=max_changed_lines,
        languages=_languages(languages),
        rev=rev,
        with_fixed=fixed,
    )
    write_jsonl(out, samples)
    click.echo(_summary(out, samples))


@data.command("split")
@click.argument("data_path", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--train",
    "train_out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output JSONL for binding.",
)
@click.option(
    "--test",
    "test_out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output JSONL held out for evaluation (never bound on).",
)
@click.option("--test-fraction", type=float, default=0.25, show_default=True, help="Share of source paths held out.")
@click.option("--hold-out-languages", default=None, help="Comma-separated languages kept wholly for test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffles the order within each side.")
def split_cmd(data_path, train_out, test_out, test_fraction, hold_out_languages, seed):
    """Split labeled data by source file (and optionally whole languages) into bind and eval sets."""
    from risk_core.data.jsonl import read_jsonl, split_by_path, write_jsonl

    if not 0 <= test_fraction < 1:
        raise UsageError("--test-fraction must lie in [0, 1)")
    train, test = split_by_path(read_jsonl(data_path), test_fraction, _languages(hold_out_languages) or (), seed)
    write_jsonl(train_out, train)
    write_jsonl(test_out, test)
    click.echo(_summary(train_out, train))
    click.echo(_summary(test_out, test))


COMMANDS = [data]
