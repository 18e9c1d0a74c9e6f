"""Write-then-rename: a reader (or a resumed run) never sees half a file, and a full disk is one line."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from risk_core.errors import PttrustError


def write_error(err: OSError, path: Path) -> PttrustError:
    """The one-line error for an OSError while writing ``path``: a full disk is named as such."""
    if err.errno == errno.ENOSPC:
        return PttrustError(f"out of disk space writing {path}")
    return PttrustError(f"cannot write {path}: {err.strerror or err}")


@contextmanager
def atomic_path(path: Path, fsync: bool = False) -> Generator[Path, None, None]:
    """Yield a temporary path beside ``path``; once the block has written it, rename it into place.

    ``fsync`` flushes the bytes to disk before the rename, for files a crash must never expose half
    written (activation shards that a resumed harvest trusts)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


def write_atomic_json(obj: object, path: Path) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")
