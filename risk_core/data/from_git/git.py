"""``git`` on one repository (work tree or bare), the only process the miner runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from risk_core.errors import UsageError

# --- git ---------------------------------------------------------------------------------------------


class Git:
    """``git`` on one repository (a work tree or a bare git dir), with a long-lived ``cat-file --batch``."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._batch: subprocess.Popen | None = None

    def run(self, *args: str, timeout: int = 600) -> str:
        try:
            res = subprocess.run(
                ["git", "-C", str(self.repo), *args], check=False, capture_output=True, timeout=timeout
            )
        except FileNotFoundError:
            raise UsageError("git is not installed") from None
        except subprocess.TimeoutExpired:
            raise UsageError(f"git {args[0]} timed out in {self.repo}") from None
        if res.returncode != 0:
            err = res.stderr.decode("utf-8", "replace").strip().splitlines()
            raise UsageError(f"git {args[0]} failed in {self.repo}: {err[-1] if err else res.returncode}")
        return res.stdout.decode("utf-8", "replace")

    def show(self, rev: str, path: str) -> str | None:
        """The text of ``rev:path``; None when it is missing or not a blob."""
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", "-C", str(self.repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(f"{rev}:{path}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().decode("utf-8", "replace").split()
        if len(header) != 3 or header[1] != "blob":
            if len(header) == 3:  # a tree or the like: drain its body
                self._batch.stdout.read(int(header[2]) + 1)
            return None
        data = self._batch.stdout.read(int(header[2]) + 1)[:-1]
        if b"\x00" in data[:8000]:
            return None
        return data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._batch is not None:
            assert self._batch.stdin is not None
            self._batch.stdin.close()
            self._batch.wait(timeout=30)
            self._batch = None


def open_repo(repo: str | Path) -> Git:
    """A repository to mine: the top of a work tree or a bare git dir (a UsageError otherwise)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise UsageError(f"{repo}: not a git repository")
    git = Git(repo)
    try:
        if git.run("rev-parse", "--is-bare-repository").strip() == "true":
            return git
        top = git.run("rev-parse", "--show-toplevel").strip()
    except UsageError:
        raise UsageError(f"{repo}: not a git repository") from None
    if Path(top).resolve() != repo.resolve():
        raise UsageError(f"{repo}: not a git repository (it lies inside {top})")
    return git


def mirror_repo(mirror: str | Path, repo: str) -> Path:
    """The git directory of ``owner/name`` in a mirror folder: ``owner+name/repo`` (as ``fetch`` brings
    it), or ``owner+name`` itself (bare or a work tree)."""
    base = Path(mirror) / repo.replace("/", "+")
    for cand in (base / "repo", base):
        if cand.is_dir():
            return cand
    raise UsageError(f"{repo}: no git directory under {base}")
