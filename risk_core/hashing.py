"""The one file hash: sha256 of a file's bytes, recorded beside every dataset, shard and converted model."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    """Hex sha256 of the file at ``path``, read ``block`` bytes at a time (memory stays bounded)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
