"""The one labeled-data format of Stage 2, shared by mutants, HumanEval samples and bug-fix history.

One JSON object per line::

    {"id": str, "language": str, "path": str, "code": str, "buggy_lines": [1-based ints],
     "operator": str (optional), "passed": bool (optional)}

``buggy_lines == []`` with ``passed`` set means "sample-level label only" (HumanEval failures: we
know the program fails, not which line is wrong).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from risk_core.errors import UsageError
from risk_core.hashing import file_sha256  # noqa: F401  (the data hash bot/cli and scripts record)


@dataclass
class Sample:
    id: str
    """Unique id of the sample within its file (source path + function + operator + counter)."""
    language: str
    """Lower-case language name: python, java, javascript, go, ..."""
    path: str
    """Where the code came from (source file path, HumanEval task id, repo:path@commit)."""
    code: str
    """The program text, as scored (lines are 1-based indices into ``code.splitlines()``)."""
    buggy_lines: list[int] = field(default_factory=list)
    """1-based lines that hold the bug; [] = none known (clean code or sample-level label)."""
    operator: str | None = None
    """Mutation operator / source of the bug, for breakdowns."""
    passed: bool | None = None
    """Whether the program passed its tests, where tests were run."""

    def to_json(self) -> dict:
        out = {
            "id": self.id,
            "language": self.language,
            "path": self.path,
            "code": self.code,
            "buggy_lines": list(self.buggy_lines),
        }
        if self.operator is not None:
            out["operator"] = self.operator
        if self.passed is not None:
            out["passed"] = bool(self.passed)
        return out

    @classmethod
    def from_json(cls, obj: dict, where: str = "") -> Sample:
        if not isinstance(obj, dict):
            raise UsageError(f"{where}: not a labeled sample (expected a JSON object, got {type(obj).__name__})")
        try:
            lines = [int(x) for x in obj.get("buggy_lines", [])]
            return cls(
                id=str(obj["id"]),
                language=str(obj["language"]).lower(),
                path=str(obj.get("path", "")),
                code=str(obj["code"]),
                buggy_lines=lines,
                operator=obj.get("operator"),
                passed=None if obj.get("passed") is None else bool(obj["passed"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"{where}: not a labeled sample ({err!s})") from None


def write_jsonl(path: str | Path, samples: Iterable[Sample]) -> int:
    """Write samples (one per line); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
            f.flush()  # samples may come slowly (generation): a killed run keeps what it wrote
            n += 1
    return n


def iter_jsonl(path: str | Path) -> Iterator[Sample]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such data file")
    with path.open(encoding="utf-8") as f:
        lines = enumerate(f, 1)
        while True:
            try:
                i, line = next(lines)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise UsageError(f"{path}: not UTF-8 text (JSONL must be UTF-8)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{path}:{i}: invalid JSON ({err.msg})") from None
            yield Sample.from_json(obj, where=f"{path}:{i}")


def read_jsonl(path: str | Path) -> list[Sample]:
    return list(iter_jsonl(path))


def split_by_path(
    samples: list[Sample], test_fraction: float, holdout_languages: Iterable[str] = (), seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(train, test): every sample of a source path falls on one side, chosen by a hash of the path
    alone, so membership is stable as the data grows; ``holdout_languages`` go wholly to test (the
    cross-language check). ``seed`` only shuffles the order within each side."""
    import random

    held = {lang.lower() for lang in holdout_languages}

    def in_test(s: Sample) -> bool:
        bucket = int(hashlib.sha256(f"split:{s.path}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return s.language in held or bucket < test_fraction

    train = [s for s in samples if not in_test(s)]
    test = [s for s in samples if in_test(s)]
    random.Random(seed).shuffle(train)
    random.Random(seed).shuffle(test)
    return train, test
