"""Where mutants come from: source files, manifests and corpus directories, mutated file by file."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path

from risk_core.data.jsonl import Sample
from risk_core.data.mutate.driver import mutate_snippet, snippets_for
from risk_core.errors import UsageError
from risk_core.languages import MUTATION_LANGUAGES
from risk_core.languages import language_of as _language_of

MIN_CODE_LINES = 4
"""Candidate lines a function needs to be mutated (one that is mostly docstring locates nothing)."""


def language_of(path: str | Path) -> str | None:
    """The file's language when the mutation operators handle it, else None."""
    lang = _language_of(path)
    return lang if lang in MUTATION_LANGUAGES else None


def collect_sources(sources: Iterable[str | Path], languages: set[str] | None = None) -> list[Path]:
    """Files from paths and directories (recursive), or a JSON/JSONL list of file paths (rows may carry a
    ``split``: only ``reserved`` rows are used). A corpus directory is read by ``load_sources``."""
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and language_of(f)))
        elif p.is_file() and p.suffix in (".json", ".jsonl") and p.name != "package.json":
            out.extend(_manifest_files(p))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    if languages:
        out = [f for f in out if language_of(f) in languages]
    return out


def load_sources(sources: Iterable[str | Path], languages: set[str] | None = None) -> list[tuple[str, str, str]]:
    """(path label, language, text) of every source. A ``pttrust corpus build`` directory (it holds
    manifest.jsonl) contributes its ``reserved`` split only: files the SAE never trained on."""
    out: list[tuple[str, str, str]] = []
    plain: list[str | Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir() and (p / "manifest.jsonl").is_file():
            from risk_core.corpus import Corpus

            corpus = Corpus(p)
            for f in corpus.split("reserved"):
                if f.language in MUTATION_LANGUAGES and (not languages or f.language in languages):
                    try:
                        out.append((f.path, f.language, corpus.read_text(f)))
                    except Exception:  # an unreadable blob is skipped like an undecodable file
                        continue
        else:
            plain.append(src)
    for f in collect_sources(plain, languages) if plain else []:
        lang = language_of(f)
        if lang is None:  # a file named explicitly, in a language without operators
            continue
        try:
            out.append((f.as_posix(), lang, f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out


def _manifest_files(path: Path) -> list[Path]:
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)
        if isinstance(records, dict):
            records = records.get("files", records.get("reserved", []))
    except json.JSONDecodeError:
        records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    files: list[Path] = []
    for r in records:
        if isinstance(r, str):
            files.append(Path(r))
        elif isinstance(r, dict) and r.get("split", "reserved") == "reserved":
            name = r.get("path") or r.get("file")
            if name:  # a row without a path names no file
                files.append(Path(name))
    base = path.parent
    return [f if f.is_absolute() else base / f for f in files if f.is_file() or (base / f).is_file()]


def mutate_sources(
    items: list[tuple[str, str, str]],
    per_file: int,
    seed: int,
    per_snippet: int = 1,
    operators: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Mutants of the functions in (path, language, text) items: up to ``per_file`` per file,
    ``per_snippet`` per function. Deterministic for a seed: each file gets its own RNG seeded from
    (seed, path), so adding files does not reshuffle the others' mutants."""
    from risk_core.candidates import candidate_mask

    samples: list[Sample] = []
    for i, (path, lang, source) in enumerate(items):
        digest = hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()
        rng = random.Random(int(digest[:16], 16))
        # A function that is mostly docstring has too few candidate lines to locate anything in.
        snips = [sn for sn in snippets_for(source, lang) if sum(candidate_mask(sn.code, lang)) >= MIN_CODE_LINES]
        rng.shuffle(snips)
        made = 0
        for sn in snips:
            if made >= per_file:
                break
            for k, (code, lines, op) in enumerate(
                mutate_snippet(sn, lang, rng, min(per_snippet, per_file - made), operators)
            ):
                samples.append(
                    Sample(
                        id=f"{path}:{sn.first_line}:{sn.name}:{op}:{k}",
                        language=lang,
                        path=path,
                        code=code,
                        buggy_lines=lines,
                        operator=op,
                    )
                )
                made += 1
        if progress:
            progress(i + 1, len(items))
    return samples


def mutate_files(
    files: list[Path],
    per_file: int,
    seed: int,
    per_snippet: int = 1,
    operators: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """``mutate_sources`` over files on disk (language from the extension; unreadable files skipped)."""
    items: list[tuple[str, str, str]] = []
    for f in files:
        lang = language_of(f)
        if lang is None:
            continue
        try:
            items.append((f.as_posix(), lang, f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return mutate_sources(items, per_file, seed, per_snippet, operators, progress)
