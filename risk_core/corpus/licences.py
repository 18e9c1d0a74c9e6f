"""Which licence a source tree or archive is under (SPDX tags, licence files, package.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

LICENCE_FILES = (
    "LICENSE",
    "LICENCE",
    "COPYING",
    "LICENSE.txt",
    "LICENSE.md",
    "LICENCE.txt",
    "COPYING.txt",
    "LICENSE-MIT",
    "LICENSE-APACHE",
)
# First match wins; patterns are checked against a licence text's first few KiB.
_LICENCE_PATTERNS = [
    ("Apache-2.0", rb"Apache License,?\s+Version 2\.0"),
    ("LGPL", rb"GNU LESSER GENERAL PUBLIC LICENSE|GNU Library General Public"),
    ("AGPL-3.0", rb"GNU AFFERO GENERAL PUBLIC LICENSE"),
    ("GPL-3.0", rb"GNU GENERAL PUBLIC LICENSE\s+Version 3"),
    ("GPL-2.0", rb"GNU GENERAL PUBLIC LICENSE\s+Version 2"),
    ("MPL-2.0", rb"Mozilla Public License,? (?:Version|v\.) ?2\.0"),
    ("PSF-2.0", rb"PYTHON SOFTWARE FOUNDATION LICENSE"),
    ("BSL-1.0", rb"Boost Software License"),
    ("ISC", rb"ISC License|Permission to use, copy, modify, and(/or)? distribute this software for any"),
    ("MIT", rb"Permission is hereby granted, free of charge"),
    ("BSD-3-Clause", rb"Neither the name of"),
    ("BSD-2-Clause", rb"Redistribution and use in source and binary forms"),
    ("Unlicense", rb"This is free and unencumbered software"),
]
_SPDX = re.compile(rb"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-() ]+)")


def classify_licence(text: bytes) -> str | None:
    head = text[:8192]
    m = _SPDX.search(head)
    if m:
        return m.group(1).decode("ascii", "replace").strip()
    for name, pat in _LICENCE_PATTERNS:
        if re.search(pat, head, re.IGNORECASE):
            return name
    return None


class LicenceFinder:
    """Walks up from a file's directory to its source root looking for a licence file or package
    metadata; results are cached per directory, so a tree costs one look per directory."""

    def __init__(self):
        self._cache: dict[Path, str | None] = {}

    def find(self, start: Path, root: Path) -> str | None:
        chain, d = [], start
        result = None
        while True:
            if d in self._cache:
                result = self._cache[d]
                break
            chain.append(d)
            result = self._here(d)
            if result is not None or d == root or d.parent == d or root not in d.parents:
                break
            d = d.parent
        for c in chain:
            self._cache[c] = result
        return result

    @staticmethod
    def _here(d: Path) -> str | None:
        for name in LICENCE_FILES:
            p = d / name
            if p.is_file():
                try:
                    lic = classify_licence(p.read_bytes()[:8192])
                except OSError:
                    continue
                return lic or f"see {p.name}"
        pkg = d / "package.json"
        if pkg.is_file():
            try:
                lic = json.loads(pkg.read_text(errors="replace")).get("license")
                if isinstance(lic, str):
                    return lic
            except (OSError, ValueError):
                pass
        cargo = d / "Cargo.toml"
        if cargo.is_file():
            try:
                m = re.search(r'^license\s*=\s*"([^"]+)"', cargo.read_text(errors="replace"), re.M)
                if m:
                    return m.group(1)
            except OSError:
                pass
        copyright_ = d / "debian" / "copyright"
        if copyright_.is_file():
            return "see debian/copyright"
        return None
