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
