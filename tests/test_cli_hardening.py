"""Bad input gives one bounded line (issue 14 items 10, 11): stdin closed, malformed diffs whose
error would carry raw diff text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.diff import parse_diff, printable_line
from risk_core.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], stdin=None, shell_redirect: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    boot = "'from bot.cli import main; main(prog_name=\"pttrust\")'"
    cmd = " ".join([sys.executable, "-c", boot, *args]) + shell_redirect
    return subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_review_with_stdin_closed_is_one_line():
    proc = _cli(["review", "--diff", "-", "-q"], shell_redirect=" <&-")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --diff -: standard input is closed; pipe a diff in or pass a path"
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "@@ -1,1 +1,1 @@\r\n\x1b[31mforged\x1b[0m\n",
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n" + "x" * 5000 + "\n\n\n",
        "--- a\n+++ b\n@@ -1,3 +1,3 @@\n+ok\r\nline\rwith\x00nul\n",
    ],
)
def test_malformed_diff_errors_are_one_printable_bounded_line(raw):
    try:
        parse_diff(raw)
    except UsageError as err:
        message = str(err)
    else:
        pytest.skip("parsed (not malformed for unidiff)")
    assert "\n" not in message and "\r" not in message and "\x1b" not in message and "\x00" not in message
    assert len(message) <= 200 and message.startswith("malformed diff: ")
    assert message.isprintable()


def test_printable_line():
    assert printable_line("a\nb\rc\td\x1b") == "a\\nb\\rc\\td\\x1b"
    assert len(printable_line("y" * 1000)) == 160 and printable_line("y" * 1000).endswith("…")


# -- 7. a gate does not pass what it did not look at --------------------------------------------------

BIG_DIFF = "diff --git a/big.py b/big.py\n--- a/big.py\n+++ b/big.py\n@@ -1,1 +1,4 @@\n x = 0\n+a = 1\n+b = 2\n+c = 3\n"


def _review(tmp_path, *args):
    from click.testing import CliRunner

    from bot.cli import main

    (tmp_path / "big.py").write_text("x = 0\na = 1\nb = 2\nc = 3\n")
    (tmp_path / "d.diff").write_text(BIG_DIFF)
    (tmp_path / ".pttrust.yml").write_text("max_added_lines: 2\n")
    return CliRunner().invoke(
        main, ["review", "--diff", str(tmp_path / "d.diff"), "--repo", str(tmp_path), "-q", *args]
    )


def test_a_gate_with_every_file_skipped_fails(tmp_path):
    result = _review(tmp_path, "--fail-above", "0")
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: the gate (fail-above 0) did not look at 1 file(s) with added lines: big.py (")
    assert "exceed the limit of 2 added lines" in last


def test_on_skip_warn_passes_with_a_warning(tmp_path):
    result = _review(tmp_path, "--fail-above", "0", "--on-skip", "warn")
    assert result.exit_code == 0, result.output
    assert "warning: the gate (fail-above 0) did not look at 1 file(s)" in result.output


def test_without_a_gate_a_skip_is_no_failure(tmp_path):
    assert _review(tmp_path).exit_code == 0


def test_on_skip_in_the_config_is_checked(tmp_path):
    from bot.config import load_config

    (tmp_path / "c.yml").write_text("on_skip: maybe\n")
    with pytest.raises(UsageError, match="on_skip must be 'fail' or 'warn'"):
        load_config(tmp_path / "c.yml")
