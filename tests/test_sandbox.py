"""The HumanEval sandbox against the escape probes of issue 14 item 8 (run as root, 8 of 10 escaped):
writes outside the temp dir, a root-only file, os.system via posix / ctypes / importlib.reload, a raw
socket to a host listener, a forked setsid grandchild outliving the run. Each probe is judged by its
effect on the host, not by the program's exit status."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from conftest import needs_isolation

from risk_core.data import humaneval
from risk_core.data.humaneval import SandboxUnavailable, run_sandboxed


@pytest.fixture
def host_dir():
    """A host directory outside the sandbox's temp dir (not under /tmp, which the sandbox replaces)."""
    path = (
        Path(os.environ.get("PTTRUST_SANDBOX_PROBE_DIR", Path(__file__).resolve().parent))
        / f".probe-{uuid.uuid4().hex}"
    )
    path.mkdir()
    os.chmod(path, 0o777)  # writable by anyone: only the sandbox's read-only root may stop a write
    yield path
    for p in path.iterdir():
        p.unlink()
    path.rmdir()


@needs_isolation
@pytest.mark.parametrize(
    "how",
    [
        "open({target!r}, 'w').write('x')",
        "import posix; posix.system('touch {target}')",
        "import ctypes; ctypes.CDLL(None).system(b'touch {target}')",
        "import importlib, os; importlib.reload(os); os.system('touch {target}')",
        "import posix; pid = posix.posix_spawn('/bin/sh', ['sh', '-c', 'touch {target}'], {{}}); posix.waitpid(pid, 0)",
    ],
    ids=["open", "posix.system", "ctypes", "reload", "posix_spawn"],
)
def test_no_write_outside_the_private_tmp(host_dir, how):
    target = str(host_dir / "escaped")
    run_sandboxed(how.format(target=target) + "\n")
    assert not Path(target).exists()


@needs_isolation
def test_a_root_only_file_cannot_be_read(host_dir):
    secret = host_dir / "secret"
    secret.write_text("top secret\n")
    os.chmod(secret, 0o600)  # the test runs as root (or as the file's owner): the sandbox must not be
    r = run_sandboxed(f"print(open({str(secret)!r}).read())\n")
    # Refused, or not even visible (a host folder under /tmp is hidden by the sandbox's private /tmp).
    assert not r.passed and ("Permission" in r.detail or "No such file" in r.detail)
    assert "top secret" not in r.detail
    r = run_sandboxed("open('/etc/shadow').read()\n")
    assert not r.passed


@needs_isolation
def test_no_network_not_even_a_raw_socket_to_the_host(host_dir):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        r = run_sandboxed(f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n")
        assert not r.passed
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


@needs_isolation
def test_a_setsid_grandchild_does_not_outlive_the_run():
    marker = f"31{uuid.uuid4().int % 10**6}"
    program = (
        "import posix, time\n"
        "if posix.fork() == 0:\n"
        "    posix.setsid()\n"
        "    if posix.fork() == 0:\n"
        f"        posix.execv('/bin/sleep', ['sleep', '{marker}'])\n"
        "    posix._exit(0)\n"
        "time.sleep(0.3)\n"
    )
    run_sandboxed(program, timeout=5)
    time.sleep(0.3)
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            survivors.append(pid)
    assert survivors == []


@needs_isolation
def test_runs_as_nobody_when_started_as_root():
    r = run_sandboxed("import os\nassert os.getuid() != 0 and os.geteuid() != 0, os.getuid()\n")
    assert r.passed, r.detail


def test_without_isolation_nothing_runs_unless_unsafe_local_exec(monkeypatch):
    monkeypatch.setattr(humaneval, "isolation_problem", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxUnavailable, match="--unsafe-local-exec"):
        run_sandboxed("print(1)\n")
    assert run_sandboxed("assert 1 + 1 == 2\n", unsafe_local_exec=True).passed


def test_the_cli_refuses_before_loading_a_model(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from bot.cli import main

    monkeypatch.setattr(humaneval, "isolation_problem", lambda: "bubblewrap (bwrap) is not installed")
    result = CliRunner().invoke(main, ["data", "humaneval", "--out", str(tmp_path / "o.jsonl"), "-m", "no-such"])
    assert result.exit_code == 1
    assert "cannot isolate the HumanEval programs" in result.output and "--unsafe-local-exec" in result.output
