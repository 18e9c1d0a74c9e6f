"""Reading a corpus directory: its manifest rows and the content-addressed blobs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from risk_core.errors import PttrustError, UsageError

MANIFEST = "manifest.jsonl"
SUMMARY = "corpus.json"
SPLITS = ("train", "validation", "reserved")


@dataclass
class CorpusFile:
    id: int
    path: str
    language: str
    sha256: str
    split: str


class Corpus:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        mf = self.root / MANIFEST
        if not mf.is_file():
            raise UsageError(f"{self.root} is not a corpus (no {MANIFEST}); build one with `pttrust corpus build`")
        raw = mf.read_bytes()
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        try:
            self.files = [
                CorpusFile(r["id"], r["path"], r["language"], r["sha256"], r["split"])
                for r in map(json.loads, raw.decode().splitlines())
                if r
            ]
        except (ValueError, KeyError) as err:
            raise UsageError(f"malformed manifest {mf}: {err}") from None

    def split(self, name: str) -> list[CorpusFile]:
        if name not in SPLITS:
            raise UsageError(f"unknown split {name!r} (one of {', '.join(SPLITS)})")
        return [f for f in self.files if f.split == name]

    def read_text(self, f: CorpusFile) -> str:
        p = self.root / "blobs" / f.sha256[:2] / f.sha256
        try:
            return p.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise PttrustError(f"corpus blob {p} for {f.path} is missing or unreadable: {err}") from None
