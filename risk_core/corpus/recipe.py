"""The default multi-language corpus recipe: what this machine has or its registries provide."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

from risk_core.errors import UsageError

# The default multi-language corpus: only what this machine has or the registries it reaches provide
# (PyPI, Debian, npm). Each entry is optional: what is missing is reported and left out.
RECIPE_NPM = (
    "react",
    "react-dom",
    "lodash-es",
    "express",
    "axios",
    "rxjs",
    "vue",
    "commander",
    "chalk",
    "zod",
    "date-fns",
    "immer",
    "redux",
    "@angular/core",
    "typeorm",
    "yargs",
    "koa",
    "fastify",
    "@nestjs/core",
    "preact",
)
RECIPE_APT = (
    "golang-src",
    "golang-golang-x-net-dev",
    "golang-golang-x-text-dev",
    "golang-github-spf13-cobra-dev",
    "golang-github-stretchr-testify-dev",
    "golang-gopkg-yaml.v3-dev",
    "librust-serde-dev",
    "librust-regex-dev",
    "librust-clap-dev",
    "librust-rand-dev",
    "librust-syn-dev",
    "librust-tokio-dev",
    "libboost-dev",
    "openjdk-17-source",
)
RECIPE_DIRS = (
    ("go", "/usr/share/gocode/src"),
    ("rust", "/usr/share/cargo/registry"),
    ("c/c++", "/usr/include"),
)
RECIPE_GLOBS = (("java", "/usr/lib/jvm/*17*/lib/src.zip"), ("go", "/usr/share/go-*/src"))


def _run(cmd: list[str], notes: list[str], timeout: int = 1800) -> bool:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as err:
        notes.append(f"`{' '.join(cmd[:3])} ...` failed: {err}")
        return False
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        notes.append(f"`{' '.join(cmd[:3])} ...` exited {r.returncode}: {tail[0][:200]}")
    return r.returncode == 0


def recipe_sources(name: str, cache: Path, install: bool = False) -> tuple[list[str], list[str]]:
    """Sources of a predefined corpus and notes on what was found, installed or missing.

    ``python-stdlib``: the running Python's standard library. ``default``: that, plus the current
    environment's site-packages, JS/TS npm packages (``npm pack`` into ``cache/npm``), Go and Rust
    library sources and C/C++ headers from Debian packages, and the JDK's src.zip. With ``install``
    the recipe runs ``apt-get install`` / ``npm pack`` for what is missing (needs root and the
    registries); without it, only what is already on disk is used."""
    import sysconfig

    notes: list[str] = []
    stdlib = sysconfig.get_paths()["stdlib"]
    sources = [stdlib]
    if name == "python-stdlib":
        return sources, notes
    if name != "default":
        raise UsageError(f"unknown recipe {name!r} (default, python-stdlib)")
    purelib = sysconfig.get_paths()["purelib"]
    if purelib != stdlib and Path(purelib).is_dir():
        sources.append(purelib)

    if install:
        import shutil as _sh

        if _sh.which("apt-get"):
            _run(["apt-get", "update", "-qq"], notes, timeout=600)
            if not _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *RECIPE_APT], notes):
                for pkg in RECIPE_APT:  # one unknown name must not sink the others
                    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg], notes)
        else:
            notes.append("apt-get not found: Go/Rust/C++/Java sources limited to what is on disk")
    npm_dir = Path(cache) / "npm"
    if install:
        import shutil as _sh

        if _sh.which("npm"):
            npm_dir.mkdir(parents=True, exist_ok=True)
            for pkg in RECIPE_NPM:
                stem = pkg.lstrip("@").replace("/", "-")
                if not any(npm_dir.glob(f"{stem}-[0-9]*.tgz")):
                    _run(["npm", "pack", pkg, "--pack-destination", str(npm_dir), "--silent"], notes, timeout=300)
        else:
            notes.append("npm not found: no JavaScript/TypeScript packages")
    tgz = sorted(npm_dir.glob("*.tgz")) if npm_dir.is_dir() else []
    sources += [str(p) for p in tgz]
    if not tgz:
        notes.append(f"no npm packages in {npm_dir} (use --install)")

    for what, d in RECIPE_DIRS:
        if Path(d).is_dir():
            sources.append(d)
        else:
            notes.append(f"{what}: {d} missing" + ("" if install else " (use --install)"))
    for what, pattern in RECIPE_GLOBS:
        hits = sorted(glob.glob(pattern))
        if hits:
            sources.append(hits[0])
        else:
            notes.append(f"{what}: nothing matches {pattern}" + ("" if install else " (use --install)"))
    # Several of these overlap (a Go dir under /usr/share/gocode and /usr/lib/go); dedup by content
    # handles the files, this the paths.
    seen, unique = set(), []
    for s in sources:
        key = os.path.realpath(s)
        if key not in seen:
            seen.add(key)
            unique.append(s)
    return unique, notes
