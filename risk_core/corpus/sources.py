"""Enumerating candidate files of the sources: directories (git ls-files or a walk), globs, archives."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from risk_core.corpus.licences import LICENCE_FILES, classify_licence
from risk_core.errors import UsageError
from risk_core.languages import language_of


@dataclass
class Candidate:
    path: str  # shown in the manifest (relative to the source; "archive!member" in archives)
    source: str
    read: Callable[[], bytes]
    licence_dir: Path | None  # directory to start the licence search from (None inside archives)
    root: Path | None
    archive_licence: str | None = None


def _member_bytes(tf: tarfile.TarFile, member: tarfile.TarInfo, size: int = -1) -> bytes:
    """The bytes of a regular member (the only kind read here: links and directories have none)."""
    f = tf.extractfile(member)
    return f.read(size) if f is not None else b""


def _git_files(root: Path) -> list[str] | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(p for p in out.stdout.decode("utf-8", "replace").split("\0") if p)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        # Sorted, so the manifest order is reproducible; skip VCS and cache directories.
        # Nested installed-package trees are separate sources when wanted (the recipe adds them).
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d
            not in (
                ".git",
                ".hg",
                ".svn",
                "__pycache__",
                ".tox",
                ".mypy_cache",
                "site-packages",
                "dist-packages",
                "node_modules",
            )
        )
        for f in sorted(filenames):
            yield Path(dirpath) / f


def _archive_candidates(path: Path, source: str) -> Iterator[Candidate]:
    name = path.name
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        members = sorted(i.filename for i in zf.infolist() if not i.is_dir())
        lic = None
        for m in members:
            if os.path.basename(m) in LICENCE_FILES:
                lic = classify_licence(zf.read(m)[:8192])
                break
        for m in members:
            if language_of(m):
                yield Candidate(f"{name}!{m}", source, (lambda m=m: zf.read(m)), None, None, lic)
        return
    tf = tarfile.open(path)
    members = sorted((i for i in tf.getmembers() if i.isfile()), key=lambda i: i.name)
    by_name = {i.name: i for i in members}
    lic = None
    for i in members:
        base = os.path.basename(i.name)
        if i.name.count("/") <= 1 and base in LICENCE_FILES:
            lic = classify_licence(_member_bytes(tf, i, 8192))
        elif i.name.count("/") <= 1 and base == "package.json" and lic is None:
            try:
                v = json.loads(_member_bytes(tf, i)).get("license")
                lic = v if isinstance(v, str) else lic
            except ValueError:
                pass
    for i in members:
        if language_of(i.name):
            yield Candidate(
                f"{name}!{i.name}", source, (lambda i=i: _member_bytes(tf, by_name[i.name])), None, None, lic
            )


def _is_archive(p: Path) -> bool:
    s = p.name.lower()
    return s.endswith((".zip", ".jar", ".tgz", ".tar.gz", ".tar", ".tar.xz", ".crate"))


def iter_candidates(sources: list[str]) -> Iterator[Candidate]:
    for src in sources:
        p = Path(src).expanduser()
        if p.is_dir():
            root = p.resolve()
            files = _git_files(root) if (root / ".git").exists() else None
            paths = (root / f for f in files) if files is not None else _walk(root)
            for f in paths:
                if f.is_file() and not f.is_symlink() and language_of(f.name):
                    yield Candidate(str(f.relative_to(root)), src, f.read_bytes, f.parent, root)
        elif p.is_file() and _is_archive(p):
            try:
                yield from _archive_candidates(p, src)
            except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
                raise UsageError(f"cannot read archive {src}: {err}") from None
        elif p.is_file():
            if language_of(p.name):
                yield Candidate(p.name, src, p.read_bytes, p.resolve().parent, p.resolve().parent)
        elif any(ch in src for ch in "*?["):
            matches = sorted(glob.glob(os.path.expanduser(src), recursive=True))
            if not matches:
                raise UsageError(f"no file matches {src}")
            # Paths are shown relative to the pattern's fixed prefix ("src/**/*.py" -> "src").
            prefix = re.split(r"[*?\[]", os.path.expanduser(src), maxsplit=1)[0]
            base = Path(os.path.dirname(prefix) or ".").resolve()
            for m in matches:
                mp = Path(m)
                if mp.is_file() and language_of(mp.name):
                    rp = mp.resolve()
                    rel = os.path.relpath(rp, base)
                    yield Candidate(rel, src, rp.read_bytes, rp.parent, base)
        else:
            raise UsageError(f"source not found: {src}")
